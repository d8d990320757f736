"""benchmarks.fixed_beta end to end at toy size: six models, real-codec curves, report, and resuming."""

import json

import numpy as np
from PIL import Image

from benchmarks import fixed_beta


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
    assert len(results["bd_rate_pct"]) == 9 and set(results["hulls"]) == {"square", "mix"}
    report = (out / "REPORT.md").read_text()
    assert "| fixed-5 | 5 | 5 |" in report and (out / "fixed_beta.png").stat().st_size > 0

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("last.pt")}
    assert len(stamps) == 6
    fixed_beta.main(argv)  # every model already has its steps: nothing is retrained
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
