import io
import warnings

import numpy as np
import pytest
from PIL import Image

import hitcodec
from hitcodec.bitstream import BitstreamError


def test_save_and_open_through_pillow(tmp_path, photo, tiny_path):
    im = Image.fromarray(photo[:40, :56])
    path = tmp_path / "x.hit"
    im.save(path, beta2=2.0, beta1=0.5, model=str(tiny_path))
    assert path.read_bytes()[:4] == b"HITC"
    with Image.open(path) as opened:
        assert opened.format == "HIT" and opened.size == (56, 40) and opened.info["beta1"] == 0.5
    direct = hitcodec.decompress(path.read_bytes(), model=str(tiny_path))
    assert direct.size == (56, 40)


def test_open_decodes_with_the_default_model_and_rejects_corrupt_files(tmp_path, photo):
    data = hitcodec.compress(Image.fromarray(photo[:32, :32]))
    with Image.open(io.BytesIO(data)) as opened:
        assert np.array_equal(np.asarray(opened), np.asarray(hitcodec.decompress(data)))
    with pytest.raises(OSError, match="truncated|CRC") as err:  # as Pillow's own formats: OSError
        Image.open(io.BytesIO(data[:-3]))
    assert isinstance(err.value.__cause__, BitstreamError)
    path = tmp_path / "x.hit"
    path.write_bytes(data)
    with Image.open(path) as opened:
        opened.load()
        assert opened.fp is None  # closed once decoded, as Pillow does for its formats


def test_a_payload_that_does_not_decode_raises_oserror_on_load(tmp_path, photo, tiny_path):
    from hitcodec import bitstream

    data = hitcodec.compress(Image.fromarray(photo[:32, :32]), model=tiny_path)
    header, parts = bitstream.unpack(data)
    with Image.open(io.BytesIO(bitstream.pack(header, [parts[0], b"\x00\x00\x00\x01"]))) as opened:
        with pytest.raises(OSError, match="cannot decode"):  # valid CRC, but this model made neither payload
            opened.load()


@pytest.mark.parametrize("options, message", [
    ({"target_bpp": 0.5, "beta1": 0}, "beta1 must be"), ({"target_size": float("inf")}, "target_size must be"),
    ({"target_size": 10.5}, "whole number"), ({"target_bpp": 0.5, "beta2": 1000, "beta1": 1000}, "beta2 must be"),
    ({"target_bpp": 0.5, "target_size": 100}, "give one of"), ({"target_rates": (0.1, 0.2, 0.3)}, "two numbers"),
    ({"target_rates": (0.1, -1)}, "target_rates must be"), ({"target_size": 10**400}, "target_size must be"),
    ({"target_rates": (10**400, 0.1)}, "target_rates must be"), ({"beta2": 10**400}, "beta2 must be"),
    ({"refine_steps": 2, "target_bpp": 0.5}, "does not combine"),
    ({"target_rates": (0.01, 0.2), "beta1": 2}, "leave them out")])
def test_bad_save_options_are_a_clear_value_error(tmp_path, photo, tiny_path, options, message):
    with pytest.raises(ValueError, match=message):
        Image.fromarray(photo[:16, :16]).save(tmp_path / "bad.hit", model=str(tiny_path), **options)
    assert not (tmp_path / "bad.hit").exists()


@pytest.mark.parametrize("options, message", [
    ({"beta2": None}, "beta2 must be a number, not NoneType"), ({"beta1": "2"}, "beta1 must be a number, not str"),
    ({"beta2": True}, "beta2 must be a number, not bool"), ({"target_size": "100"}, "target_size must be a number"),
    ({"target_rates": 0.5}, "two numbers"), ({"target_rates": "0.1,0.2"}, "two numbers"),
    ({"target_rates": {0.1, 0.2}}, "two numbers"), ({"refine_steps": 1.5}, "refine_steps must be a whole number"),
    ({"target_rates": (0.1, "x")}, "target_rates must be a number"),
    ({"verify": "no"}, "verify must be True or False, not str"), ({"device": 3}, "device must be a str")])
def test_save_options_of_the_wrong_type_are_a_type_error(tmp_path, photo, tiny_path, options, message):
    with pytest.raises(TypeError, match=message):  # beta1="2" and verify="no" were taken as 2 and True
        Image.fromarray(photo[:16, :16]).save(tmp_path / "bad.hit", model=str(tiny_path), **options)
    assert not (tmp_path / "bad.hit").exists()


def test_save_all_codes_one_frame_with_a_warning(tmp_path, photo, tiny_path):
    frames = [Image.fromarray(photo[:16, :16]), Image.fromarray(photo[16:32, :16])]
    gif = tmp_path / "a.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    with Image.open(gif) as im, pytest.warns(UserWarning, match="only frame 0 of the 2 given"):
        im.save(tmp_path / "a.hit", save_all=True, model=str(tiny_path))
    with Image.open(tmp_path / "a.hit") as opened:
        assert opened.size == (16, 16)
    with pytest.warns(UserWarning, match="only frame 0 of the 3 given"):  # frames given as append_images
        frames[0].save(tmp_path / "b.hit", save_all=True, append_images=frames, model=str(tiny_path))
    assert (tmp_path / "b.hit").read_bytes() == hitcodec.compress(frames[0], model=str(tiny_path))


@pytest.mark.filterwarnings("ignore:.*of the target")  # the tiny model reaches 150 bytes only roughly
def test_save_to_a_target_size_through_pillow(tmp_path, photo, tiny_path):
    from hitcodec import targets
    from hitcodec.api import resolve_model, to_codec_image

    im = Image.fromarray(photo)
    loaded = resolve_model(str(tiny_path))
    target = 150
    expected = targets.compress_to_size(loaded, to_codec_image(im), target, ratio=2.0).coded.data
    path = tmp_path / "sized.hit"
    im.save(path, target_size=target, beta2=2.0, beta1=1.0, model=str(tiny_path), verify=True)
    assert path.read_bytes() == expected  # the same search as `hitcodec compress --target-size`
    with Image.open(path) as opened:
        assert opened.info["beta2"] == pytest.approx(2 * opened.info["beta1"], rel=1e-5)
    bpp_path = tmp_path / "bpp.hit"
    im.save(bpp_path, target_bpp=8 * target / (im.width * im.height), beta2=2.0, model=str(tiny_path))
    assert bpp_path.read_bytes() == expected
    with pytest.warns(UserWarning, match="of the target"):  # out of reach: the closest file, and why
        im.save(tmp_path / "far.hit", target_size=10**6, model=str(tiny_path))
    expected = targets.compress_to_layer_rates(loaded, to_codec_image(im), 0.02, 0.3).coded.data
    with warnings.catch_warnings():  # the tiny model may not reach them: the closest file, with a warning
        warnings.simplefilter("ignore")
        im.save(tmp_path / "rates.hit", target_rates=(0.02, 0.3), model=str(tiny_path))
    assert (tmp_path / "rates.hit").read_bytes() == expected  # the search of `hitcodec compress --target-rates`
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="finite positive"):
            im.save(tmp_path / "bad.hit", target_bpp=bad, model=str(tiny_path))
    assert not (tmp_path / "bad.hit").exists()


@pytest.fixture(scope="module")
def shipped_hit(photo) -> bytes:
    return hitcodec.compress(Image.fromarray(photo[:32, :48]))


def test_a_pickled_or_copied_image_keeps_its_pixels(shipped_hit):
    import copy
    import pickle

    expected = np.asarray(Image.open(io.BytesIO(shipped_hit)))
    for make in (lambda im: pickle.loads(pickle.dumps(im)), copy.deepcopy, copy.copy):
        again = make(Image.open(io.BytesIO(shipped_hit)))  # was AttributeError: no attribute '_hit_data'
        assert np.array_equal(np.asarray(again), expected)
    loaded = Image.open(io.BytesIO(shipped_hit))
    loaded.load()
    assert loaded.readonly == 0 and np.array_equal(np.asarray(pickle.loads(pickle.dumps(loaded))), expected)


def test_closed_verified_and_with_block_images_as_pillow_has_them(tmp_path, shipped_hit):
    path = tmp_path / "a.hit"
    path.write_bytes(shipped_hit)
    expected = np.asarray(Image.open(path))
    im = Image.open(path)
    im.close()
    with pytest.raises(ValueError, match="Operation on closed image"):  # was an AttributeError, after a decode
        im.load()
    im = Image.open(path)
    im.verify()
    assert np.array_equal(np.asarray(im), expected)  # (the bytes are in memory: PNG raises here)
    with Image.open(path) as im:
        pass
    assert np.array_equal(np.asarray(im), expected)


def test_pillows_decompression_bomb_check_applies(shipped_hit, monkeypatch):
    import dataclasses

    from hitcodec import bitstream

    header, parts = bitstream.unpack(shipped_hit)
    huge = bitstream.pack(dataclasses.replace(header, width=17000, height=17000), parts)  # above 2^28 pixels
    with pytest.raises(Image.DecompressionBombError):  # was OSError from hitcodec's own limit
        Image.open(io.BytesIO(huge))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert Image.open(io.BytesIO(huge)).size == (17000, 17000)  # (not decoded: that would take minutes)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(shipped_hit))


def test_refine_steps_pass_through_pillow(tmp_path, photo, tiny_path):
    image = Image.fromarray(photo[:16, :16])
    image.save(tmp_path / "r.hit", beta2=0.5, beta1=0.5, refine_steps=2, model=str(tiny_path))  # was ignored
    expected = hitcodec.compress(image, 0.5, 0.5, model=str(tiny_path), refine_steps=2)
    assert (tmp_path / "r.hit").read_bytes() == expected
