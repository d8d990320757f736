import json

import numpy as np
import pytest
from PIL import Image

from benchmarks import rd


def test_upper_hull_keeps_the_rising_concave_frontier():
    pts = [{"bpp": b, "psnr": p} for b, p in [(0.1, 20), (0.2, 24), (0.25, 22), (0.4, 27), (0.5, 26), (0.8, 29)]]
    assert [(p["bpp"], p["psnr"]) for p in rd.upper_hull(pts)] == [(0.1, 20), (0.2, 24), (0.4, 27), (0.8, 29)]


def test_bd_rate_of_a_curve_at_half_the_rate_is_minus_50_percent():
    anchor = [{"bpp": b, "psnr": 20 + 10 * np.log10(b * 10)} for b in (0.1, 0.2, 0.4, 0.8, 1.6)]
    test = [{"bpp": p["bpp"] / 2, "psnr": p["psnr"]} for p in anchor]
    assert abs(rd.bd_rate(anchor, test) + 50) < 0.5
    assert abs(rd.bd_rate(anchor, anchor)) < 1e-9


def test_per_image_bd_rates_and_the_rate_gap_at_a_point():
    def curve(scale, name):
        return [{"bpp": b * scale, "psnr": 20 + 10 * np.log10(b * 10), "images": [
            {"image": name, "bpp": b * scale, "psnr": 20 + 10 * np.log10(b * 10)}]} for b in (0.1, 0.2, 0.4, 0.8)]

    anchor, test = curve(1, "a"), curve(0.5, "a")
    assert rd.per_image_bd_rates(anchor, test) == {"a": pytest.approx(-50, abs=0.5)}
    assert rd.rate_gap(anchor, test[1]) == pytest.approx(-50, abs=0.5)
    assert np.isnan(rd.rate_gap(anchor, {"bpp": 1.0, "psnr": 40.0}))  # above the anchor's range


def test_grid_run_writes_results(tmp_path, tiny_path, photo):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(photo[:64, :64]).save(images / "a.png")
    Image.fromarray(photo[32:96, 64:128]).save(images / "b.png")
    out = tmp_path / "out"
    rd.main(["--images", str(images), "--out", str(out), "--grid", "3", "--codecs", "jpeg,webp",
             "--model", str(tiny_path), "--baseline-model", str(tiny_path), "--no-speed"])
    grid = json.loads((out / "grid.json").read_text())
    assert len(grid["grid"]) == 9 and all("bpp_z2" in p for p in grid["grid"])
    bd = grid["bd_rate_percent"]
    assert set(bd) >= {"hitcodec-hull", "beta-vae-model"}  # the same tiny model as its own baseline: 0 % apart
    assert abs(bd["beta-vae-model"]["diagonal"]) < 1e-6 and abs(bd["hitcodec-diagonal"]["beta-vae-model"]) < 1e-6
    assert set(grid["bd_rate_percent_per_image"]["hitcodec-diagonal"]["webp"]) == {"a.png", "b.png"}
    report = (out / "REPORT.md").read_text()
    assert "vs beta-vae-model" in report and f"2 images from `{images}`" in report
    assert "vs webp: mean (min, max)" in report and "bits vs WebP |" in report
    hull = json.loads((out / "hitcodec-hull.json").read_text())
    assert set(hull["results"]) == {"bpp", "psnr-rgb", "ms-ssim-rgb"}
    for name in ("rd.png", "beta_surface.png", "REPORT.md", "jpeg.json", "webp.json", "hitcodec-diagonal.json",
                 "beta-vae-model.json"):
        assert (out / name).exists(), name
    rd.main(["--images", str(images), "--out", str(out), "--grid", "2", "--codecs", "jpeg", "--model",
             str(tiny_path), "--no-speed"])  # again, with less: the curves it did not measure are gone
    assert (out / "jpeg.json").exists() and not (out / "webp.json").exists()
    assert not (out / "beta-vae-model.json").exists()


def test_grid_run_is_fair_to_alpha_and_flat_images_and_refuses_bad_input_before_writing(tmp_path, tiny_path, photo):
    import pytest

    images = tmp_path / "images"
    images.mkdir()
    rgba = Image.fromarray(photo[:64, :64]).convert("RGBA")
    rgba.putalpha(Image.fromarray(photo[:64, :64, 0]))
    rgba.save(images / "a.png")
    Image.new("RGB", (64, 64)).save(images / "flat.png")  # decoded exactly by JPEG: PSNR inf
    out = images / "out"  # inside --images: a second run must not measure the first one's plots
    for _ in range(2):
        rd.main(["--images", str(images), "--out", str(out), "--grid", "2", "--codecs", "jpeg",
                 "--model", str(tiny_path), "--no-speed"])
    grid = json.loads((out / "grid.json").read_text(), parse_constant=pytest.fail)  # no NaN or Infinity tokens
    assert grid["images"] == ["a.png", "flat.png"]
    assert all(p["bpp"] < 4 for p in grid["grid"])  # the alpha plane is not counted: RGB against RGB
    assert max(json.loads((out / "jpeg.json").read_text())["results"]["psnr-rgb"]) <= rd.PSNR_CAP_DB
    (images / "junk.png").write_text("not an image")
    with pytest.raises(SystemExit, match="junk.png"):
        rd.main(["--images", str(images), "--out", str(tmp_path / "new"), "--model", str(tiny_path), "--no-speed"])
    assert not (tmp_path / "new").exists()


def test_speed_table_and_device_choice(tiny, photo):
    import pytest
    import torch

    from hitcodec.image import CodecImage

    image = CodecImage(photo[:64, :64].copy(), None, "RGB")
    speed = rd.measure_speed(tiny, image, ["jpeg"], device="cpu")
    assert speed["devices"] == ["cpu"]
    for name in ("hitcodec", "mbt2018-mean", "jpeg"):
        assert speed[name]["encode_s_per_mp"] > 0 and speed[name]["decode_s_per_mp"] > 0
    assert speed["ans_symbols_per_s"]["encode"] > 0
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as exc:
            rd.main(["--images", "dev", "--out", "unused", "--device", "cuda"])
        assert exc.value.code == 2


def test_cli_startup_times_a_whole_call():
    from benchmarks.cli_startup import timed

    row = timed(["--version"], repeats=1)
    assert row["command"] == "hitcodec --version" and 0 < row["wall_s"] < 60 and "coding_s" not in row


def test_benchmark_arguments_are_checked_before_any_work(tmp_path, tiny_path, capsys):
    """benchmarks.args: bad numbers, NAME=PATH models and output paths are one-line usage errors up front (they
    were tracebacks, some after a whole measuring run)."""
    import argparse

    from benchmarks import args

    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--n", type=args.whole(1))
    parser.add_argument("--betas", type=args.positive_floats)
    parser.add_argument("--steps", type=args.whole_numbers)
    assert vars(parser.parse_args(["--n", "2", "--betas", "0.2,5", "--steps", "0,100"])) == {
        "n": 2, "betas": [0.2, 5.0], "steps": [0, 100]}
    (tmp_path / "file").write_text("x")
    bad = [lambda: parser.parse_args(["--n", "0"]), lambda: parser.parse_args(["--n", "1.5"]),
           lambda: parser.parse_args(["--betas", "abc"]), lambda: parser.parse_args(["--betas", "1,"]),
           lambda: parser.parse_args(["--betas", "0"]), lambda: parser.parse_args(["--betas", "nan"]),
           lambda: parser.parse_args(["--steps", "-5"]),
           lambda: args.models(parser, [str(tiny_path)]), lambda: args.models(parser, ["a="]),
           lambda: args.models(parser, [f"={tiny_path}"]), lambda: args.models(parser, [f"a={tmp_path}/none.pt"]),
           lambda: args.models(parser, [f"a={tmp_path}/file"]),
           lambda: args.models(parser, [f"a={tiny_path}", f"a={tiny_path}"]),
           lambda: args.output_folder(parser, tmp_path / "file" / "out"),
           lambda: args.output_file(parser, tmp_path), lambda: args.output_file(parser, tmp_path / "file" / "x.json"),
           lambda: args.betas_in_squares(parser, [1.0, 20.0], args.models(parser, [f"a={tiny_path}"]))]
    for call in bad:
        with pytest.raises(SystemExit) as exc:
            call()
        assert exc.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1].startswith("bench: error:")
    assert list(args.models(parser, [f"b={tiny_path}", f"a={tiny_path}"])) == ["b", "a"]
    args.output_folder(parser, tmp_path / "new" / "deeper")  # folders to be made: fine
    args.output_file(parser, tmp_path / "new" / "x.json")
