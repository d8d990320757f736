import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hitcodec.cli import main
from hitcodec.image import ImageError, from_pil, read_image


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_gray_is_coded_as_rgb_and_decoded_as_gray():
    img = from_pil(Image.new("L", (5, 4), 77))
    assert img.mode == "L" and img.rgb.shape == (4, 5, 3) and (img.rgb == 77).all() and img.alpha is None


def test_16_bit_gray_is_reduced_to_8_bit():
    arr = np.full((3, 3), 65535, dtype=np.uint16)
    arr[0, 0] = 257 * 10
    img = read_image(_png(Image.fromarray(arr)))
    assert img.mode == "L" and img.rgb[0, 0, 0] == 10 and img.rgb[1, 1, 0] == 255


def test_alpha_kept_and_opaque_alpha_dropped():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 128))
    assert from_pil(rgba).mode == "RGBA" and (from_pil(rgba).alpha == 128).all()
    assert from_pil(Image.new("RGBA", (4, 4), (1, 2, 3, 255))).mode == "RGB"
    assert from_pil(Image.new("LA", (4, 4), (9, 100))).mode == "LA"


def test_transparency_of_gray_and_premultiplied_alpha_are_kept():
    gray = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20)
    gray.info["transparency"] = 40
    img = from_pil(gray)  # gray with a transparent value: gray plus alpha, not RGBA
    assert img.mode == "LA" and img.alpha.tolist()[0] == [255, 255, 0, 255]
    assert (img.rgb[..., 0] == img.rgb[..., 2]).all()
    bilevel = gray.convert("1")
    bilevel.info["transparency"] = 0
    assert from_pil(bilevel).mode == "LA"
    rgba = Image.new("RGBA", (4, 4), (200, 100, 50, 128))
    img = from_pil(rgba.convert("RGBa"))  # premultiplied: un-premultiplied, alpha kept
    assert img.mode == "RGBA" and (img.alpha == 128).all() and abs(int(img.rgb[0, 0, 0]) - 200) <= 1
    img = from_pil(Image.new("LA", (4, 4), (200, 128)).convert("La"))
    assert img.mode == "LA" and (img.alpha == 128).all()


def test_a_transparent_colour_of_a_16_bit_rgb_png_is_kept():
    """Pillow reduces 16-bit RGB to its high byte but compares the 16-bit tRNS colour with the reduced pixels:
    the transparency was lost (or put on other colours). It is reduced the same way: the pixels whose high bytes
    equal its high bytes are transparent."""
    px = np.zeros((2, 4, 3), np.uint16)
    px[:, 0], px[:, 1], px[:, 2], px[:, 3] = 0x1234, 0x1200, 0x12FF, 0x5000

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in px)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 2, 16, 2, 0, 0, 0))
            + chunk(b"tRNS", struct.pack(">HHH", 0x1234, 0x1234, 0x1234)) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))
    for img in (read_image(data), from_pil(Image.open(io.BytesIO(data)))):
        assert img.mode == "RGBA" and img.alpha.tolist() == [[0, 0, 0, 255]] * 2
        assert img.rgb[0, :, 0].tolist() == [0x12, 0x12, 0x12, 0x50]


def test_palette_and_cmyk_become_rgb():
    assert from_pil(Image.new("RGB", (4, 4), (200, 10, 10)).convert("P")).mode == "RGB"
    assert from_pil(Image.new("CMYK", (4, 4), (0, 255, 255, 0))).mode == "RGB"


def _icc_profile(colorants, gamma) -> bytes:
    """A minimal ICC v4 RGB display profile: D50 white, D50-adapted XYZ colorants, one tone curve for every channel:
    a gamma, or a table of values in [0, 1]."""
    def s15(v):
        return struct.pack(">i", round(v * 65536))

    def xyz(x, y, z):
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    name = "test RGB".encode("utf-16-be")
    if isinstance(gamma, float):
        curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    else:
        curve = b"curv" + bytes(4) + struct.pack(f">I{len(gamma)}H", len(gamma), *(round(v * 65535) for v in gamma))
    tags = [(b"desc", b"mluc" + bytes(4) + struct.pack(">II", 1, 12) + b"enUS" + struct.pack(">II", len(name), 28)
             + name), (b"wtpt", xyz(0.9642, 1.0, 0.8249))]
    tags += [(sig, xyz(*c)) for sig, c in zip((b"rXYZ", b"gXYZ", b"bXYZ"), colorants)]
    tags += [(sig, curve) for sig in (b"rTRC", b"gTRC", b"bTRC")]
    table, data, start = b"", b"", 128 + 4 + 12 * len(tags)
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", start + len(data), len(body))
        data += body
    header = (struct.pack(">I", start + len(data)) + bytes(4) + struct.pack(">I", 0x04200000) + b"mntrRGB XYZ "
              + bytes(12) + b"acsp" + bytes(28) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + data


# sRGB's colorants, D50-adapted as in ICC sRGB profiles
SRGB_COLORANTS = [(0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)]
ADOBE_RGB = _icc_profile([(0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446)], 563 / 256)


def test_an_embedded_colour_profile_is_converted_to_srgb():
    pixels = np.array([[[90, 160, 60], [255, 0, 0], [128, 128, 128], [0, 255, 0]]], np.uint8)
    im = Image.fromarray(pixels)
    buf = io.BytesIO()
    im.save(buf, format="PNG", icc_profile=ADOBE_RGB)
    img = read_image(buf.getvalue())
    # Adobe RGB (1998) to sRGB, as littlecms gives with Adobe's own profile: a green far more saturated in sRGB
    assert img.mode == "RGB" and img.rgb.tolist() == [[[0, 161, 47], [255, 0, 0], [129, 129, 129], [0, 255, 0]]]
    assert read_image(buf.getvalue(), srgb=False).rgb.tolist() == pixels.tolist()  # the stored values (benchmarks)
    rgba = Image.fromarray(np.dstack([pixels, np.full((1, 4), 100, np.uint8)]))
    rgba.info["icc_profile"] = ADOBE_RGB
    img = from_pil(rgba)
    assert img.mode == "RGBA" and (img.alpha == 100).all() and img.rgb[0, 0].tolist() == [0, 161, 47]
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for profile in (srgb, b"not a profile", ADOBE_RGB[:100]):  # sRGB, or unreadable: the pixels as they are
        im.info["icc_profile"] = profile
        assert from_pil(im).rgb.tolist() == pixels.tolist()
    gray = Image.new("L", (2, 2), 77)
    gray.info["icc_profile"] = ADOBE_RGB  # a profile of another colour space: ignored
    assert (from_pil(gray).rgb == 77).all()


def test_a_cmyk_image_ignores_an_rgb_profile_and_an_srgb_like_profile_is_not_applied():
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    plain = from_pil(cmyk).rgb
    cmyk.info["icc_profile"] = ADOBE_RGB  # a malformed file: an RGB profile on CMYK pixels
    assert np.array_equal(from_pil(cmyk).rgb, plain)
    # sRGB's colorants with a plain gamma 2.2 instead of sRGB's curve: dark colours move by more than 1, so it applies
    gamma22 = _icc_profile(SRGB_COLORANTS, 2.2)
    im = Image.new("RGB", (2, 2), (10, 10, 10))
    im.info["icc_profile"] = gamma22
    assert from_pil(im).rgb[0, 0, 0] != 10
    im = Image.new("RGB", (2, 2), (200, 100, 50))
    im.info["icc_profile"] = _icc_profile(SRGB_COLORANTS, 2.4)
    assert from_pil(im).rgb[0, 0].tolist() != [200, 100, 50]
    # sRGB's own curve as a table, except at level 100, between any grid of a few levels: it applies to that level
    table = [v / 255 / 12.92 if v <= 10 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in range(256)]
    table[100] = 0.5
    im = Image.fromarray(np.array([[[100, 100, 100], [90, 90, 90], [200, 120, 50]]], np.uint8))
    im.info["icc_profile"] = _icc_profile(SRGB_COLORANTS, table)
    rgb = from_pil(im).rgb.astype(int)
    assert rgb[0, 0].min() > 180 and np.abs(rgb[0, 1:] - np.asarray(im)[0, 1:]).max() <= 1
    im = im.crop((1, 0, 3, 1))  # without that level the profile is sRGB's: the pixels as they are
    assert np.array_equal(from_pil(im).rgb, np.asarray(im))


def test_an_unreadable_exif_block_is_ignored(tiny_path):
    for fmt in ("PNG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (8, 6), (200, 100, 50)).save(buf, format=fmt, exif=b"Exif\x00\x00garbage-garbage-garbage",
                                                       **({"lossless": True} if fmt == "WEBP" else {}))
        img = read_image(buf.getvalue())
        assert img.rgb.shape == (6, 8, 3) and img.rgb[0, 0].tolist() == [200, 100, 50], fmt
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            assert from_pil(im).rgb.shape == (6, 8, 3)
    buf = io.BytesIO()  # a JPEG whose EXIF Pillow warns of ("Corrupt EXIF data"), on opening and in exif_transpose
    Image.new("RGB", (8, 6)).save(buf, format="JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f")
    with pytest.warns(UserWarning, match="Corrupt EXIF"):  # the library leaves Pillow's warning to its caller
        assert read_image(buf.getvalue()).rgb.shape == (6, 8, 3)
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            assert from_pil(im).rgb.shape == (6, 8, 3)
    with warnings.catch_warnings(record=True) as caught:  # the command line shows no Python warning of it
        warnings.simplefilter("always")
        r = CliRunner().invoke(main, ["compress", "-", "-q", "--model", str(tiny_path)], input=buf.getvalue())
    assert r.exit_code == 0 and not [w for w in caught if "EXIF" in str(w.message)], r.output


def test_a_camera_jpeg_with_a_preview_is_one_frame():
    im = Image.new("RGB", (64, 32), (90, 160, 60))
    buf = io.BytesIO()
    im.save(buf, format="MPO", save_all=True, append_images=[im.resize((16, 8))])
    with Image.open(io.BytesIO(buf.getvalue())) as opened:
        assert opened.format == "MPO" and opened.n_frames == 2  # Pillow counts the preview as a frame
    assert read_image(buf.getvalue()).frames == 1 and read_image(buf.getvalue()).frames_warning() is None


def test_16_bit_gray_and_alpha_stays_gray():
    gray = (np.arange(16, dtype=np.uint32) * 4369).astype(np.uint16).reshape(2, 8)  # 0 ... 65535
    alpha = np.full_like(gray, 30000)
    raw = b"".join(b"\x00" + np.stack([gray[y], alpha[y]], axis=-1).astype(">u2").tobytes() for y in range(2))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 2, 16, 4, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))  # colour type 4: gray and alpha, 16 bits
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "RGBA"  # as Pillow opens it
    img = read_image(png)
    assert img.mode == "LA" and img.rgb[0, :, 0].tolist() == [g >> 8 for g in gray[0].tolist()]
    assert (img.alpha == 30000 >> 8).all()
    with Image.open(io.BytesIO(png)) as im:  # a Pillow image as opened, given to the API or the plugin
        assert from_pil(im).mode == "LA"


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (6, 2), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    assert read_image(buf.getvalue()).rgb.shape[:2] == (6, 2)


@pytest.mark.parametrize("data, message", [(b"", "the file is empty"), (b"not an image at all", "not a format"),
                                           (_png(Image.new("RGB", (64, 64)))[:60], "truncated or corrupt")])
def test_bad_data_raises_image_error(data, message, tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(ImageError, match=message) as info:
            read_image(source)
        assert "object at 0x" not in str(info.value)  # not Pillow's repr of the file object


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_is_not_called_an_empty_file():
    """/dev/zero has size 0 but is not empty: it was "the file is empty"."""
    with pytest.raises(ImageError, match="not a format that Pillow can read"):
        read_image("/dev/zero")


def test_a_file_object_is_read_no_further_than_an_allowed_image_can_need(tmp_path):
    """hitcodec.compress(file object) used to read it to its end: /dev/zero or an endless pipe until memory ran
    out. It is read up to 16 bytes per allowed pixel and 1 MiB more; a larger regular file is refused unread."""
    png = _png(Image.new("RGB", (50, 40), (10, 200, 30)))
    with pytest.raises(ImageError, match="more than 1064576 bytes.*--max-pixels"):
        read_image(io.BufferedReader(_Endless()), max_pixels=1000)
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:  # sparse, never read
        f.write(png)
        f.truncate(1 << 21)
    with open(huge, "rb") as f, pytest.raises(ImageError, match="more than 1064576 bytes"):
        read_image(f, max_pixels=1000)
    with open(huge, "rb") as f:
        f.seek((1 << 21) - 1_000_000)  # from where the file is: what is left of it is within the limit
        with pytest.raises(ImageError, match="not a format"):
            read_image(f, max_pixels=1000)
    assert read_image(io.BytesIO(png), max_pixels=2000).rgb.shape == (40, 50, 3)


class _Endless(io.RawIOBase):
    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = bytes(len(buffer))
        return len(buffer)


def test_float_images_are_refused():
    with pytest.raises(ImageError, match="floating-point"):
        from_pil(Image.new("F", (2, 2)))
    with pytest.raises(ImageError, match="outside 0-65535"):  # 32-bit values are not read as 16-bit ones
        from_pil(Image.fromarray(np.array([[0, 70000]], np.int32), "I"))
    assert from_pil(Image.fromarray(np.array([[0, 65535]], np.int32), "I")).rgb[0, :, 0].tolist() == [0, 255]


def test_images_without_pixels_and_arrays_of_other_shapes_are_refused():
    from hitcodec.api import to_codec_image

    for im in (Image.new("RGB", (0, 5)), Image.new("L", (5, 0))):
        with pytest.raises(ImageError, match="no pixels"):
            from_pil(im)
    with pytest.raises(ImageError, match="no pixels"):
        to_codec_image(np.zeros((0, 20, 3), np.uint8))
    for array in (np.zeros((8, 8, 5), np.uint8), np.zeros((8, 8, 1), np.uint8), np.zeros((2, 8, 8, 3), np.uint8)):
        with pytest.raises(ValueError, match="arrays must be uint8 of shape"):
            to_codec_image(array)
    assert to_codec_image(np.zeros((8, 8, 2), np.uint8)).mode == "LA"  # gray and alpha, as Pillow reads it


def test_pixel_limit_refuses_before_decoding_and_can_be_raised():
    data = _png(Image.new("RGB", (300, 200)))
    with pytest.raises(ImageError, match="--max-pixels"):
        read_image(data, max_pixels=50_000)
    assert read_image(data, max_pixels=60_000).rgb.shape == (200, 300, 3)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP", "TIFF"])
def test_multi_frame_files_code_their_first_frame(fmt):
    frames = [Image.new("RGB", (6, 5), (200 * (i == 0), 60 * i, 30)) for i in range(3)]
    buf = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], **options)
    img = read_image(buf.getvalue())
    assert img.frames == 3 and img.rgb.shape == (5, 6, 3)
    assert abs(int(img.rgb[0, 0, 0]) - 200) <= 2 and int(img.rgb[0, 0, 1]) <= 2
    assert read_image(_png(frames[1])).frames == 1


def test_big_and_little_endian_16_bit_gray_a_file_at_an_offset_and_a_folder(tmp_path):
    """A big-endian 16-bit gray TIFF opens as I;16B, which Pillow's getextrema does not take: it was refused as
    "truncated or corrupt"; a binary file is read from where it is (Pillow seeks to its start), as decompress reads
    one; a folder is named as one."""
    a = (np.arange(64 * 48).reshape(48, 64) * 20).astype(">u2")
    Image.frombytes("I;16B", (64, 48), a.tobytes()).save(tmp_path / "big.tiff")
    reference = from_pil(Image.frombytes("I;16", (64, 48), a.astype("<u2").tobytes()))
    assert reference.mode == "L"
    little = Image.frombytes("I;16L", (64, 48), a.astype("<u2").tobytes())
    for img in (read_image(tmp_path / "big.tiff"), from_pil(little)):
        assert img.mode == "L" and np.array_equal(img.rgb, reference.rgb)
    stream = io.BytesIO(b"JUNKJUNK" + _png(Image.new("RGB", (8, 6), (1, 2, 3))))
    stream.seek(8)
    assert read_image(stream).rgb[0, 0].tolist() == [1, 2, 3]
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's own, about the cut files
def test_a_cut_multi_page_file_is_an_image_error(tmp_path):
    # Pillow's n_frames of a cut multi-page TIFF or GIF raised TypeError or IndexError: a traceback in the CLI
    rng = np.random.default_rng(0)
    pages = [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(3)]
    for suffix in ("tif", "gif"):
        whole = tmp_path / f"multi.{suffix}"
        pages[0].save(whole, save_all=True, append_images=pages[1:])
        data = whole.read_bytes()
        for cut in range(64, len(data), max(1, len(data) // 97)):
            try:
                read_image(data[:cut])
            except ImageError:
                pass
