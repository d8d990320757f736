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
