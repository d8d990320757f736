"""benchmarks.fixed_beta end to end at toy size: six models, real-codec curves, report, and resuming."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import channels, fixed_beta
from hitcodec.train import load_checkpoint


def test_fixed_beta_benchmark_runs_and_resumes(tmp_path, photo):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(np.roll(photo, 10 * i, axis=1)).save(data / f"{i}.png")
    out = tmp_path / "out"
    argv = ["--data", str(data), "--out", str(out), "--runs", str(tmp_path / "runs"), "--quick", "--threads", "1",
            "--quiet"]
    fixed_beta.main(argv)
    results = json.loads((out / "results.json").read_text())
    assert set(results["curves"]) == {"square", "mix", "diagonal", "square-grid", "mix-grid", "fixed-0.2", "fixed-1",
                                      "fixed-5"}
    assert all(p["beta2"] == p["beta1"] for p in results["curves"]["diagonal"])
    assert [p["beta1"] for p in results["curves"]["fixed-1"]] == [1.0]
    assert all(p["bpp"] > 0 and 0 < p["psnr"] < 99 for ps in results["curves"].values() for p in ps)
    assert [g["beta"] for g in results["gaps"]["square"]] == list(fixed_beta.FIXED)
    assert len(results["bd_rate_pct"]) == 10 and set(results["hulls"]) == {"square", "mix"}
    report = (out / "REPORT.md").read_text()
    assert "| fixed-5 | 5 | 5 |" in report and (out / "fixed_beta.png").stat().st_size > 0

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("last.pt")}
    assert len(stamps) == 6
    fixed_beta.main(argv)  # every model already has its steps: nothing is retrained
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # models trained elsewhere (e.g. on a GPU): measured, not trained; comparisons without their models left out
    runs, out2 = tmp_path / "runs", tmp_path / "out2"
    fixed_beta.main(["--out", str(out2), "--quick", "--threads", "1", "--quiet", "--model", f"mix={runs}/mix/last.pt",
                     "--model", f"fixed-1={runs}/fixed-1/last.pt", "--model", f"fixed-5={runs}/fixed-5/last.pt"])
    results = json.loads((out2 / "results.json").read_text())
    assert set(results["curves"]) == {"mix", "mix-grid", "fixed-1", "fixed-5"}
    assert set(results["bd_rate_pct"]) == {"mix model at beta2 = beta1 vs the fixed-beta models",
                                           "mix model's hull vs its own beta2 = beta1"}
    assert [g["beta"] for g in results["gaps"]["mix"]] == [1.0, 5.0] and results["config"]["steps_trained"]["mix"] == 8
    assert "models trained elsewhere: mix 8 steps" in (out2 / "REPORT.md").read_text()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # replicates (a name given twice; here the same file, so they agree): mean curves, BD-rates between replicates
    out3 = tmp_path / "out3"
    pairs = [f"{n}={runs}/{m}/last.pt" for n, m in (("mix", "mix"), ("mix", "mix"), ("fixed-1", "fixed-1"),
                                                     ("fixed-1", "fixed-1"), ("fixed-5", "fixed-5"),
                                                     ("fixed-5", "fixed-5"))]
    fixed_beta.main(["--out", str(out3), "--quick", "--threads", "1", "--quiet",
                     *[a for pair in pairs for a in ("--model", pair)]])
    again = json.loads((out3 / "results.json").read_text())
    assert [p["bpp"] for p in again["curves"]["mix"]] == pytest.approx([p["bpp"] for p in results["curves"]["mix"]])
    assert again["config"]["loss_norm"]["mix"] == "none"  # one label where the replicates agree
    assert again["config"]["steps_trained"]["mix"] == 8 and fixed_beta._one_or_all([8, 12]) == "8; 12"
    assert again["curves"]["mix"][0]["replicates"] == 2 and again["bd_rate_pct"] == pytest.approx(
        results["bd_rate_pct"], nan_ok=True)  # NaN where toy curves do not overlap
    between = again["replicates_bd_rate_pct"]
    same = between["fixed-beta set 2 vs set 1"]
    assert abs(same) < 1e-9 or np.isnan(same)  # identical sets (NaN where a toy curve has one distinct PSNR)
    assert len(between) == 5 and between["mix model 2 at beta2 = beta1 vs fixed-beta set 1"] == pytest.approx(
        results["bd_rate_pct"]["mix model at beta2 = beta1 vs the fixed-beta models"], nan_ok=True)
    assert "single replicates against each other" in (out3 / "REPORT.md").read_text()

    # the fixed-beta points of an earlier run's results.json: the same comparison, no fixed-beta model measured
    out4, first = tmp_path / "out4", json.loads((out / "results.json").read_text())
    fixed_beta.main(["--out", str(out4), "--quick", "--threads", "1", "--quiet", "--model", f"mix={runs}/mix/last.pt",
                     "--fixed-from", str(out / "results.json")])
    reused = json.loads((out4 / "results.json").read_text())
    assert all(reused["curves"][f"fixed-{b:g}"] == first["curves"][f"fixed-{b:g}"] for b in fixed_beta.FIXED)
    assert reused["config"]["reused"] == ["square", "diagonal", "fixed-0.2", "fixed-1", "fixed-5"]
    assert reused["curves"]["square-grid"] == first["curves"]["square-grid"]  # and the square model's hull
    for key in ("mix model at beta2 = beta1 vs the fixed-beta models", "mix model at beta2 = beta1 vs the diagonal "
                "model", "square model's hull vs the diagonal model"):  # stored models compare as if measured here
        assert reused["bd_rate_pct"][key] == pytest.approx(first["bd_rate_pct"][key], nan_ok=True)
    assert reused["gaps"]["diagonal"] == first["gaps"]["diagonal"]
    assert "square model at beta2 = beta1 vs the mix model" in reused["bd_rate_pct"]
    assert reused["config"]["steps_trained"]["fixed-5"] == 8 and "--fixed-from" in (out4 / "REPORT.md").read_text()
    assert "fixed_results" not in reused["config"]  # the earlier run is named (fixed_from), not copied
    # two earlier runs (here the same one twice): each is one replicate, their points averaged
    out5 = tmp_path / "out5"
    fixed_beta.main(["--out", str(out5), "--quick", "--threads", "1", "--quiet", "--model", f"mix={runs}/mix/last.pt",
                     "--fixed-from", str(out / "results.json"), "--fixed-from", str(out / "results.json")])
    twice = json.loads((out5 / "results.json").read_text())
    assert twice["curves"]["fixed-1"][0]["bpp"] == pytest.approx(first["curves"]["fixed-1"][0]["bpp"])
    assert twice["curves"]["fixed-1"][0]["replicates"] == 2 and twice["config"]["reused"] == reused["config"]["reused"]
    assert "fixed-beta set 2 vs set 1" in twice["replicates_bd_rate_pct"]
    assert twice["bd_rate_pct"] == pytest.approx(reused["bd_rate_pct"], nan_ok=True)
    # one model for the three fixed points only: trained with those betas, measured there, against the fixed set
    out6 = tmp_path / "out6"
    fixed_beta.main(argv[:2] + ["--out", str(out6), *argv[4:], "--names", "points", "--fixed-from",
                                str(out / "results.json")])
    points = json.loads((out6 / "results.json").read_text())
    assert [p["beta1"] for p in points["curves"]["points"]] == list(fixed_beta.FIXED)
    assert "points-grid" not in points["curves"] and "points" not in points["hulls"]
    assert "points model at beta2 = beta1 vs the fixed-beta models" in points["bd_rate_pct"]
    assert load_checkpoint(runs / "points" / "last.pt")["train_config"]["betas"] == "points:0.2,0.2/1,1/5,5"
    other = json.loads((out / "results.json").read_text())
    other["curves"]["fixed-1"][0]["beta1"] = 2.0
    (tmp_path / "other.json").write_text(json.dumps(other))
    for bad in (["--fixed-from", str(tmp_path / "missing.json")], ["--fixed-from", str(runs / "mix" / "last.pt")],
                ["--fixed-from", str(out / "results.json"), "--crop", "128"],
                ["--fixed-from", str(out / "results.json"), "--fixed-from", str(tmp_path / "other.json")]):
        with pytest.raises(SystemExit) as exc:
            fixed_beta.main(["--out", str(out2), "--model", f"mix={runs}/mix/last.pt", *bad])
        assert exc.value.code == 2
    for bad in ("blend=" + str(runs / "mix" / "last.pt"), "mix=" + str(runs / "missing.pt"), "mix"):
        with pytest.raises(SystemExit) as exc:
            fixed_beta.main(["--out", str(out2), "--model", bad])
        assert exc.value.code == 2
    for ignored in (["--channels", "32"], ["--device", "cuda"], ["--latent-bins"], ["--train-only"], ["--seed", "1"],
                    ["--beta-warmup", "3"]):
        with pytest.raises(SystemExit) as exc:  # options of training, which --model does not do: refused, not ignored
            fixed_beta.main(["--out", str(out2), "--model", f"mix={runs}/mix/last.pt", *ignored])
        assert exc.value.code == 2


def test_fixed_beta_names_train_only(tmp_path, photo):
    """--names trains a subset; --train-only measures nothing (side-by-side training processes)."""
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo).save(data / "0.png")
    runs, out = tmp_path / "runs", tmp_path / "out"
    argv = ["--data", str(data), "--out", str(out), "--runs", str(runs), "--quick", "--threads", "1", "--quiet",
            "--names", "mix,fixed-1", "--beta-range", "0.05,20", "--latent-bins", "--cond-kernels", "1",
            "--lr-drop", "0.5", "--lr-drop-factor", "10", "--bins-max", "2", "--beta-warmup", "4",
            "--z1-min-channels", "40", "--mask-synthesis", "--channels", "16"]
    fixed_beta.main(argv + ["--train-only", "--eval-every", "4"])
    assert sorted(p.parent.name for p in runs.rglob("last.pt")) == ["fixed-1", "mix"]
    for n in ("mix", "fixed-1"):  # --quick trains 8 steps: evaluated and saved at 4 and 8
        assert [json.loads(line)["step"] for line in (runs / n / "log.jsonl").open()] == [4, 8]
    configs = {n: load_checkpoint(runs / n / "last.pt")["model_config"] for n in ("mix", "fixed-1")}
    assert (configs["mix"]["beta_min"], configs["mix"]["beta_max"]) == (0.05, 20.0)  # conditioned: the wider square
    assert "beta_min" not in configs["fixed-1"]  # one point: the default square
    assert configs["mix"]["latent_bins"] and configs["fixed-1"]["latent_bins"]
    assert configs["mix"]["cond_kernels"] == 1 and "cond_kernels" not in configs["fixed-1"]
    assert configs["mix"]["n"] == configs["fixed-1"]["n"] == 16  # --channels: both widths
    assert configs["mix"]["bins_max"] == 2.0 and "bins_max" not in configs["fixed-1"]  # the conditioned model only
    assert configs["mix"]["z1_min_channels"] == 40 and "z1_min_channels" not in configs["fixed-1"]
    assert configs["mix"]["mask_synthesis"] and "mask_synthesis" not in configs["fixed-1"]
    stored = load_checkpoint(runs / "mix" / "last.pt")["train_config"]
    assert (stored["lr_drop"], stored["lr_drop_factor"], stored["beta_warmup"]) == (0.5, 10, 4)
    assert load_checkpoint(runs / "fixed-1" / "last.pt")["train_config"]["beta_warmup"] == 0
    channels.main(["--model", f"mix={runs}/mix/last.pt", "--betas", "0.2,5", "--crop", "64", "--threads", "1",
                   "--out", str(tmp_path / "channels")])
    rows = json.loads((tmp_path / "channels" / "channels.json").read_text())["models"]["mix"]["rows"]
    assert [r["beta"] for r in rows] == [0.2, 5.0]
    for r in rows:
        assert r["z1"]["channels"] == 96 and 0 <= r["z1"]["used"] <= 96 and 1 <= r["z1"]["for_99_percent"] <= 96
        assert r["z1"]["bpp"] > 0 and r["z2"]["channels"] == 64 and r["psnr"] > 5 and r["psnr_z1_unrounded"] > 5
    assert not (out / "results.json").exists()
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("last.pt")}
    fixed_beta.main(argv)  # measures the two, retrains neither
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    for other in (["--channels", "8"], ["--channels", "16", "--seed", "1"]):  # same --runs, another model: refused
        with pytest.raises(SystemExit, match=r"fixed_beta: .*mix.last\.pt was trained with (n 16 \(asked 8\)|seed 0 "
                           r"\(asked 1\)): give another --runs folder"):
            fixed_beta.main(argv[:-2] + other + ["--train-only", "--steps", "12"])
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    results = json.loads((out / "results.json").read_text())
    assert set(results["curves"]) == {"mix", "mix-grid", "fixed-1"}
    for bad in (["--names", "blend"], ["--names", ","], ["--names", "mix,fixed-2"], ["--beta-range", "5,1"],
                ["--beta-range", "0.1"], ["--cond-kernels", "-1"], ["--eval-every", "-1"],
                ["--channels", "0"], ["--lr-drop", "0"], ["--lr-drop", "1.5"], ["--lr-drop-factor", "0.5"],
                ["--bins-max", "2"], ["--latent-bins", "--bins-max", "-1"], ["--beta-warmup", "-1"],
                ["--z1-min-channels", "97"], ["--z1-min-channels", "-1"], ["--mask-synthesis"]):
        with pytest.raises(SystemExit) as exc:
            fixed_beta.main(["--out", str(out), *bad])
        assert exc.value.code == 2


def test_a_beta_range_without_a_fixed_beta_still_reports(tmp_path, photo):
    """A --beta-range that leaves out a fixed model's beta: the report leaves out that objective gap (it ended in
    a KeyError after all the training and measuring)."""
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo).save(data / "0.png")
    fixed_beta.main(["--data", str(data), "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), "--quick",
                     "--threads", "1", "--quiet", "--names", "mix,fixed-1", "--beta-range", "2,20", "--channels", "16"])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["gaps"]["mix"] == []  # beta 1 is not on mix's diagonal over [2, 20]


def test_channel_counts():
    bits = torch.tensor([0.5, 0.05, 0.3, 0.0, 0.2])  # bits per latent of each channel
    assert channels.channel_counts(bits) == {"used": 3, "for_99_percent": 4}  # 0.5 + 0.3 + 0.2 = 95 % of 1.05
    assert channels.channel_counts(torch.zeros(3)) == {"used": 0, "for_99_percent": 0}


def test_dev_crops_zero_keeps_every_photo_whole():
    from hitcodec.data import dev_eval_photos
    from hitcodec.image import read_image

    whole = [read_image(p).rgb.shape[:2] for p in dev_eval_photos()]
    assert [im.rgb.shape[:2] for _, im in fixed_beta.dev_crops(0)] == whole
    assert all(max(im.rgb.shape[:2]) <= 64 for _, im in fixed_beta.dev_crops(64))
