"""From whatever Pillow opens to what the codec codes (8-bit RGB plus optional alpha), and back.

Rules (also in README):
- EXIF orientation is applied, so the coded image looks as it does in a viewer (an unreadable EXIF block is ignored).
- An RGB image with an embedded ICC colour profile (Adobe RGB, Display P3, ...) is converted to sRGB, the colours
  the model was trained on and that a decoded image has (it carries no profile); colours outside sRGB are clipped.
  A profile that moves none of the image's pixels by more than 1 (sRGB itself) leaves them as they are; a
  profile that cannot be read, or is not an RGB profile, is ignored, as browsers do.
- Other metadata (EXIF, XMP, comments, resolution) is not stored.
- Gray ("1", "L", 16-bit "I;16", "I") is coded as RGB with equal channels and decoded as "L"; a 32-bit "I" image
  must hold 16-bit values (0-65535).
- 16-bit images are reduced to 8 bits (hitcodec is an 8-bit codec); Pillow already does this for 16-bit RGB.
- Alpha ("RGBA", "LA", premultiplied "RGBa"/"La", palette, RGB or gray with a transparent colour) is kept
  losslessly beside the lossy colour (gray stays gray: "LA"); an alpha plane that is fully opaque is dropped.
- Palette, CMYK, YCbCr, LAB and HSV are converted to RGB. Floating-point images ("F") are refused.
- Of a multi-frame file (animation, multi-page TIFF) only the first frame is coded; ``frames`` says how many it had
  (a camera JPEG's preview images are not frames).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hitcodec.bitstream import read_up_to


DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb limit (about 89 megapixels)
_PILLOW_LIMIT = threading.Lock()  # Pillow's limit is a global; we swap it for our own check


class ImageError(ValueError):
    """An input that cannot be read as an image."""


BYTES_PER_PIXEL = 16  # an image file larger than this per allowed pixel is refused (uncompressed RGBA16 takes 8)


def read_stream(stream: BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The bytes of an image file from a binary stream, from where it is: up to `BYTES_PER_PIXEL` bytes per allowed
    pixel and 1 MiB more, so that a stream that never ends (/dev/zero, a pipe) is not read until memory runs out,
    nor a huge file in full; more raises ImageError (a regular file's size is checked before it is read)."""
    limit = BYTES_PER_PIXEL * max_pixels + (1 << 20)
    too_large = ImageError(f"cannot read image: more than {limit} bytes, more than an image of at most {max_pixels} "
                           "pixels can need; raise the limit with --max-pixels (max_pixels= in Python)")
    left = 0
    if isinstance(stream, (io.BufferedReader, io.FileIO)):  # (fileno() of others may have side effects, such as
        try:  # a SpooledTemporaryFile's rolling over to disk)
            info = os.fstat(stream.fileno())
            left = info.st_size - stream.tell() if stat.S_ISREG(info.st_mode) else 0
        except (OSError, ValueError):  # no file descriptor, or not seekable: no size
            pass
    if left > limit:
        raise too_large
    data = read_up_to(stream, limit + 1)
    if len(data) > limit:
        raise too_large
    return data


@dataclass(frozen=True)
class CodecImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) uint8, or None
    mode: str  # mode of the decoded image: "L", "RGB", "LA" or "RGBA"
    frames: int = 1  # frames in the source file, of which only the first is coded

    def frames_warning(self) -> str | None:
        """What the CLI and the API warn of a multi-frame source (None for a still image)."""
        if self.frames > 1:
            return f"only the first of the image's {self.frames} frames is coded (hitcodec codes still images)"
        return None


def _gray16_to_8(im: Image.Image) -> Image.Image:
    """8-bit gray ("L"), or gray and alpha ("LA") where a 16-bit value is marked transparent."""
    a = np.asarray(im, dtype=np.float64)
    gray = Image.fromarray(np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8), "L")
    if im.info.get("transparency") is not None:
        gray.putalpha(Image.fromarray(np.where(a == im.info["transparency"], 0, 255).astype(np.uint8), "L"))
    return gray


_RGB_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "YCbCr")  # modes whose ICC profile is an RGB one


def _to_srgb(im: Image.Image, icc: bytes) -> Image.Image:
    """An "RGB" or "RGBA" image whose pixels are in the colour space of the RGB ICC profile ``icc``, in sRGB; ``im``
    itself where the profile cannot be read, is not an RGB one, or moves none of this image's pixels by more than 1
    (an sRGB profile, or one that rounds differently)."""
    from PIL import ImageChops, ImageCms

    rgb = im if im.mode == "RGB" else im.convert("RGB")
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if source.profile.xcolor_space.strip() != "RGB":  # e.g. a gray or CMYK profile on an RGB image
            return im
        srgb = ImageCms.profileToProfile(rgb, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return im
    if max(high for _, high in ImageChops.difference(srgb, rgb).getextrema()) <= 1:
        return im
    if im.mode == "RGBA":
        srgb.putalpha(im.getchannel("A"))
    return srgb


def _gray_alpha_16(im: Image.Image) -> bool:
    """Whether ``im``, not yet loaded, is a 16-bit gray-and-alpha PNG, which Pillow opens as RGBA."""
    return im.format == "PNG" and im.mode == "RGBA" and any(len(t) > 3 and t[3] == "LA;16B" for t in im.tile)


def _rgb16_transparency(im: Image.Image) -> tuple[int, int, int] | None:
    """For ``im``, not yet loaded, a 16-bit RGB PNG with a transparent colour (tRNS): that colour reduced to 8
    bits as Pillow reduces the pixels (the high byte); else None. Pillow compares the 16-bit colour with the
    8-bit pixels, which loses the transparency or puts it on other colours."""
    trns = im.info.get("transparency")
    if im.format == "PNG" and im.mode == "RGB" and isinstance(trns, tuple) and any(
            len(t) > 3 and t[3] == "RGB;16B" for t in im.tile):
        return tuple(int(v) >> 8 for v in trns)
    return None


def _with_transparent(im: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """The RGB image ``im`` as RGBA, with the pixels of ``colour`` transparent; its other metadata kept."""
    rgb = np.asarray(im.convert("RGB"))
    out = Image.fromarray(rgb, "RGB")
    out.putalpha(Image.fromarray(np.where((rgb == colour).all(axis=2), 0, 255).astype(np.uint8), "L"))
    out.info = {k: v for k, v in im.info.items() if k != "transparency"}  # (the ICC profile, EXIF)
    return out


def from_pil(im: Image.Image, srgb: bool = True) -> CodecImage:
    """Convert a Pillow image following the module's rules; ``srgb=False`` leaves an ICC profile unapplied (the
    stored values, as training reads its photos)."""
    if _gray_alpha_16(im):  # a Pillow image given as it was opened
        im = im.convert("LA")
    elif _rgb16_transparency(im):
        im = _with_transparent(im, _rgb16_transparency(im))
    icc = im.info.get("icc_profile") if srgb and im.mode in _RGB_MODES else None
    try:
        im = ImageOps.exif_transpose(im)
    except (SyntaxError, ValueError, OSError, KeyError, TypeError, struct.error):  # an unreadable EXIF block
        pass
    if im.width == 0 or im.height == 0:
        raise ImageError(f"the image has no pixels ({im.width}x{im.height})")
    if im.mode == "F":
        raise ImageError("floating-point images are not supported; convert to 8- or 16-bit first")
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im)  # (Pillow's getextrema does not take I;16B or I;16L: a big-endian TIFF opens as I;16B)
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > 65535:  # (a 16-bit PNG opens as "I" too)
            raise ImageError("32-bit integer images with values outside 0-65535 are not supported; convert to 8- "
                             "or 16-bit first")
        im = _gray16_to_8(im)
    if im.mode in ("1", "L") and "transparency" in im.info:  # gray with a transparent value: gray and alpha
        im = im.convert("LA")
    elif im.mode in ("P", "PA", "RGBa") or (im.mode == "RGB" and "transparency" in im.info):
        im = im.convert("RGBA")  # RGBa (premultiplied alpha) is un-premultiplied
    elif im.mode == "La":
        im = im.convert("LA")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")
    if icc and im.mode in ("RGB", "RGBA"):
        im = _to_srgb(im, icc)
    gray = im.mode in ("L", "LA")
    alpha = np.asarray(im.getchannel("A")) if im.mode in ("LA", "RGBA") else None
    if alpha is not None and alpha.min() == 255:
        alpha = None
    rgb = np.asarray(im.convert("RGB"))
    mode = ("L" if gray else "RGB") + ("A" if alpha is not None else "")
    return CodecImage(np.ascontiguousarray(rgb), alpha, mode)


def _frames(im: Image.Image) -> int:
    """The frames of an image file; a camera JPEG's preview images (MPO, other than "Multi-Frame") are not frames."""
    if im.format != "MPO":
        return getattr(im, "n_frames", 1)
    entries = (getattr(im, "mpinfo", None) or {}).get(0xB002) or []
    types = [str(e.get("Attribute", {}).get("MPType", "")) if isinstance(e, dict) else "" for e in entries[1:]]
    return 1 + sum(t.startswith("Multi-Frame") for t in types)


def read_image(source: str | Path | BinaryIO | bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               srgb: bool = True) -> CodecImage:
    """Open an image file (path, bytes or binary file) with Pillow; raises ImageError on bad input. ``srgb`` as in
    `from_pil`.

    Images of more than ``max_pixels`` pixels are refused before their pixels are decoded (decompression bombs).
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    elif hasattr(source, "read"):  # from where the file is (Pillow would seek to its start), as decompress reads
        source = io.BytesIO(read_stream(source, max_pixels))
    try:
        with _PILLOW_LIMIT:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                im = Image.open(source)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with im:
            if im.width * im.height > max_pixels:
                raise ImageError(f"image of {im.width}x{im.height} pixels exceeds the limit of {max_pixels} pixels "
                                 "(a decompression bomb?); raise the limit with --max-pixels (max_pixels= in Python)")
            frames = _frames(im)  # counted before load(): it seeks, and then back to frame 0
            gray_alpha, transparent = _gray_alpha_16(im), _rgb16_transparency(im)  # before load(), which empties
            im.load()  # im.tile
            if transparent:
                im = _with_transparent(im, transparent)
            return replace(from_pil(im.convert("LA") if gray_alpha else im, srgb), frames=frames)
    except (FileNotFoundError, PermissionError, ImageError):
        raise
    except IsADirectoryError:
        raise ImageError(f"cannot read image: {source} is a folder") from None
    except UnidentifiedImageError as exc:  # its message names the file object, e.g. "<_io.BytesIO object at 0x...>"
        empty = (not source.getbuffer().nbytes if isinstance(source, io.BytesIO)  # (a device such as /dev/zero
                 else isinstance(source, (str, Path)) and Path(source).is_file() and not Path(source).stat().st_size)
        raise ImageError("cannot read image: " + ("the file is empty" if empty else
                                                  "not a format that Pillow can read")) from exc
    except (OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError, struct.error) as exc:
        # (Pillow's readers of damaged files raise any of these, e.g. n_frames of a cut multi-page TIFF or GIF)
        raise ImageError(f"cannot read image (truncated or corrupt?): {str(exc) or type(exc).__name__}") from exc


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None, mode: str) -> Image.Image:
    """Decoded pixels as a Pillow image of the stored mode."""
    im = Image.fromarray(rgb, "RGB")
    if mode in ("L", "LA"):
        im = im.convert("L")
    if alpha is not None:
        im.putalpha(Image.fromarray(alpha, "L"))
    return im


def written_rgb(image: CodecImage) -> np.ndarray:
    """The colour pixels of ``image`` as `to_pil` writes them, (H, W, 3) uint8: for a gray image ("L", "LA") the
    gray that is written, in all three channels (the synthesis's three channels differ slightly), so that a PSNR
    on these arrays is that of the written file."""
    if image.mode not in ("L", "LA"):
        return image.rgb
    return np.repeat(np.asarray(to_pil(image.rgb, None, image.mode))[:, :, None], 3, axis=2)
