import io

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
    with pytest.raises(BitstreamError):
        Image.open(io.BytesIO(data[:-3]))


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
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="finite positive"):
            im.save(tmp_path / "bad.hit", target_bpp=bad, model=str(tiny_path))
    assert not (tmp_path / "bad.hit").exists()
