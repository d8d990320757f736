"""hitcodec as a library inside an application that changed torch's global settings: the same bytes, pixels and
model, and the application's settings left as they were."""

import numpy as np
import pytest
import torch

from hitcodec import codec
from hitcodec.image import CodecImage
from hitcodec.weights import load_state, model_from_state, model_id


@pytest.fixture
def image(photo) -> CodecImage:
    return CodecImage(photo[:48, :64], None, "RGB")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_an_applications_autocast_changes_no_byte_or_pixel(tiny, image, dtype):
    coded = codec.encode(tiny, image, 1.0, 1.0)
    pixels = codec.decode(tiny, coded.data).image.rgb
    with torch.autocast("cpu", dtype=dtype):  # it ran the transforms in 16 bits: other bytes and pixels
        assert codec.encode(tiny, image, 1.0, 1.0).data == coded.data
        assert np.array_equal(codec.decode(tiny, coded.data).image.rgb, pixels)
        assert torch.is_autocast_enabled("cpu")


def test_an_applications_default_device_is_not_used(tiny, image):
    expected = codec.encode(tiny, image, 1.0, 1.0).data
    torch.set_default_device("meta")  # it was "Tensor on device cpu is not on the expected device meta!"
    try:
        assert codec.encode(tiny, image, 1.0, 1.0).data == expected
        assert torch.empty(1).device.type == "meta"
    finally:
        torch.set_default_device(None)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_a_model_loads_alike_under_another_default_dtype_and_leaves_the_random_generator(tiny_path, dtype):
    state = load_state(tiny_path)
    expected = model_id(model_from_state(state))
    torch.manual_seed(0)
    draw = torch.rand(3)
    torch.manual_seed(0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # float64 made a float64 model ("mat1 and mat2 must have the same dtype"),
    try:  # bfloat16 a rounded one (another model id: every file was "made by another model")
        model = model_from_state(state)
    finally:
        torch.set_default_dtype(before)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model_id(model) == expected
    assert torch.equal(torch.rand(3), draw)  # the random initial weights drew from the application's generator


def test_onednn_flags_other_than_on_off_are_left_alone(tiny, image, monkeypatch):
    from hitcodec import coding

    deterministic, seen = torch.backends.mkldnn.deterministic, []
    encode_symbols = coding.encode_symbols

    def spy(*args):  # called while the priors' oneDNN switch is off
        seen.append((torch.backends.mkldnn.enabled, torch.backends.mkldnn.deterministic))
        return encode_symbols(*args)

    monkeypatch.setattr(coding, "encode_symbols", spy)
    torch.backends.mkldnn.deterministic = True
    try:
        codec.encode(tiny, image, 1.0, 1.0)
    finally:
        torch.backends.mkldnn.deterministic = deterministic
    assert seen == [(False, True)] * 2  # deterministic was switched to False while the priors ran
