import io

import numpy as np
import pytest
import torch
from PIL import Image

from hitcodec import api


@pytest.fixture
def image():
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))


def test_compress_and_decompress_take_bytes_like_data_paths_and_files(tiny, image, tmp_path):
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    png = buf.getvalue()
    data = api.compress(image, model=tiny)
    assert api.compress(bytearray(png), model=tiny) == data == api.compress(memoryview(png), model=tiny)
    path = tmp_path / "x.hit"
    path.write_bytes(data)
    expected = np.asarray(api.decompress(data, model=tiny))
    with open(path, "rb") as file:
        for source in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8), str(path), path,
                       io.BytesIO(data), file):
            assert np.array_equal(np.asarray(api.decompress(source, model=tiny)), expected), type(source)


@pytest.mark.parametrize("bad", [None, 3, 2.5, ["x.png"]])
def test_unsupported_argument_types_raise_a_clear_type_error(tiny, bad):
    with pytest.raises(TypeError, match="cannot compress a"):
        api.compress(bad, model=tiny)
    with pytest.raises(TypeError, match="cannot decompress a"):  # 3 is not three zero bytes
        api.decompress(bad, model=tiny)


def test_a_model_a_text_file_or_a_pixel_limit_of_the_wrong_type_is_a_clear_type_error(tiny, image, tmp_path):
    with pytest.raises(TypeError, match="model must be a LoadedModel"):
        api.compress(image, model=123)
    hit = tmp_path / "x.hit"
    hit.write_bytes(api.compress(image, model=tiny))
    with open(hit) as text, pytest.raises(TypeError, match="binary mode"):
        api.decompress(text, model=tiny)
    png = tmp_path / "x.png"
    image.save(png)
    with open(png) as text, pytest.raises(TypeError, match="cannot compress a file opened as text: open it in binary"):
        api.compress(text, model=tiny)  # (it was "cannot read image (truncated or corrupt?): 'utf-8' codec ...")
    with pytest.raises(TypeError, match="max_pixels must be a whole number"):
        api.decompress(hit, model=tiny, max_pixels="5")


def test_device_is_passed_on(tiny, image):
    with pytest.raises(ValueError, match="unknown device"):
        api.compress(image, model=tiny, device="bogus")
    with pytest.raises(ValueError, match="unknown device"):
        api.decompress(api.compress(image, model=tiny), model=tiny, device="bogus")
    with pytest.raises(TypeError, match="device must be a str such as 'cpu' or 'cuda', or a torch.device, not int"):
        api.compress(image, model=tiny, device=3)  # was "unknown device '3'", a ValueError
    assert api.compress(image, model=tiny, device=torch.device("cpu")) == api.compress(image, model=tiny)


@pytest.mark.parametrize("beta", ["2", b"2", None, True, [1.0]])
def test_betas_of_the_wrong_type_are_a_type_error(tiny, image, beta):
    with pytest.raises(TypeError, match="beta2 must be a number, not"):  # "2" was taken as 2.0
        api.compress(image, beta2=beta, model=tiny)
    assert api.compress(image, np.float32(2.0), np.int64(1), model=tiny) == api.compress(image, 2.0, 1.0, model=tiny)


def test_decompress_refuses_files_above_its_pixel_limit(tiny, image):
    from hitcodec.bitstream import BitstreamError

    data = api.compress(image, model=tiny)  # 30 x 20
    with pytest.raises(BitstreamError, match="allowed range"):
        api.decompress(data, model=tiny, max_pixels=599)
    assert api.decompress(data, model=tiny, max_pixels=600).size == (30, 20)
    assert api.decompress(data, model=tiny, max_pixels=np.int64(600)).size == (30, 20)  # numpy's integers too
    with pytest.raises(ValueError, match="max_pixels must be >= 1"):
        api.decompress(data, model=tiny, max_pixels=0)
    with pytest.raises(TypeError, match="max_pixels must be a whole number"):
        api.decompress(data, model=tiny, max_pixels=600.0)


def test_api_checks_verify_and_max_pixels(tiny, image, tmp_path):
    with pytest.raises(TypeError, match="verify must be True or False, not str"):  # "no" counted as true
        api.compress(image, model=tiny, verify="no")
    path = tmp_path / "x.png"
    image.save(path)
    with pytest.raises(ValueError, match=r"exceeds the limit of 100 pixels .*max_pixels= in Python"):
        api.compress(path, model=tiny, max_pixels=100)
    assert api.compress(path, model=tiny, max_pixels=image.width * image.height) == api.compress(image, model=tiny)


def test_a_file_of_another_model_names_the_shipped_model_and_the_fix(tiny, image):
    from hitcodec.codec import ModelMismatchError

    with pytest.raises(ModelMismatchError, match=r"\(the shipped model\): give the model file that made it \(--model"):
        api.decompress(api.compress(image, model=tiny))  # named the package's weights path, and no way out


def test_a_cut_short_model_file_is_named(tmp_path):
    from hitcodec.weights import DEFAULT_WEIGHTS, load_model

    cut = tmp_path / "cut.pt"
    cut.write_bytes(DEFAULT_WEIGHTS.read_bytes()[:5000])  # was "[Errno 22] Invalid argument", no file named
    with pytest.raises(ValueError, match=f"{cut} is not a hitcodec model file .*cut-short"):
        load_model(str(cut))
