import numpy as np
import pytest
from PIL import Image

from benchmarks.device_kit import pack
from hitcodec.train import export_weights, load_checkpoint


def test_pack_fits_the_budget_and_exports_plain_weights(tmp_path, tiny_path, photo):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        Image.fromarray(np.roll(photo, 10 * i, axis=1)).save(data / f"{i}.png")
    photo_size = max(p.stat().st_size for p in data.iterdir())
    export_weights(tiny_path, tmp_path / "fp16.pt")
    budget = (tmp_path / "fp16.pt").stat().st_size + int(3.5 * photo_size)

    result = pack(tiny_path, data, tmp_path / "carry", budget)
    assert 3 <= result["photos"] < 6 and result["bytes"] <= budget
    assert len(list((tmp_path / "carry" / "train").iterdir())) == result["photos"]
    state = load_checkpoint(tmp_path / "carry" / "start.pt")
    assert "optimizer" not in state and all(v.dtype.is_floating_point is False or v.dtype.itemsize == 2
                                            for v in state["model"].values())
    # packing again replaces the old kit
    assert pack(tiny_path, data, tmp_path / "carry", budget) == result
    # ... but no other folder: not the photos' (it deleted them), not one with other files
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    for out in (data, tmp_path / "other", tmp_path):
        with pytest.raises(SystemExit, match="is not a kit"):
            pack(tiny_path, data, out, budget)
    assert len(list(data.iterdir())) == 6 and (tmp_path / "other" / "notes.txt").exists()


def test_pack_can_send_the_photos_as_high_quality_jpegs(tmp_path, tiny_path, photo):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(photo, 10 * i, axis=1)).save(data / f"{i}.png")

    result = pack(tiny_path, data, tmp_path / "carry", 2**30, jpeg_quality=95)
    files = sorted((tmp_path / "carry" / "train").iterdir())
    assert result["photos"] == 3 and [f.suffix for f in files] == [".jpg"] * 3
    assert result["photo_bytes"] < result["all_photo_bytes"] and result["jpeg_psnr_min"] > 35
    with Image.open(files[0]) as im:
        assert im.format == "JPEG" and im.size == (photo.shape[1], photo.shape[0])
