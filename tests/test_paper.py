"""The paper's experiments (benchmarks/paper.py) on a tiny synthetic labelled data set."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from benchmarks import paper
from hitcodec.data import read_idx
from hitcodec.models.paper import PaperConfig, PaperHVAE


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """10 classes of 28x28 uint8 images: a class-specific bar pattern plus pixel noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.uint8)
    x = (rng.random((n, 28, 28)) < 0.05).astype(np.uint8) * 255
    for i, label in enumerate(y):
        x[i, 2 + 2 * label:5 + 2 * label, 4:24] = 255
        x[i, 4:24, 2 + 2 * label:5 + 2 * label] = 255
    return x, y


@pytest.mark.parametrize("inference", ["ghvae", "lvae"])
def test_rates_are_kls_and_the_objective_is_the_papers(inference):
    torch.manual_seed(0)
    model = PaperHVAE(PaperConfig(z1=4, z2=3, channels=4, hidden=16, embed=4, inference=inference))
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3))
    beta2, beta1 = torch.full((5,), 2.0), torch.full((5,), 0.5)
    out = model(x, beta2, beta1)
    assert out["rate_z2"].shape == (5,) and (out["rate_z2"] >= 0).all() and (out["rate_z1"] >= 0).all()
    d = out["distortion"]
    assert torch.allclose(out["objective"], d + 2.0 * out["rate_z2"] + 0.5 * out["rate_z1"])
    out["loss"].backward()
    e = model.embedding(torch.tensor([1.0]), torch.tensor([1.0]))
    samples = model.sample(7, e)
    assert samples.shape == (7, 1, 28, 28) and set(samples.unique().tolist()) <= {0.0, 1.0}


def test_lvae_posterior_is_the_precision_weighted_combination():
    torch.manual_seed(0)
    model = PaperHVAE(PaperConfig(z1=4, z2=3, channels=4, hidden=16, embed=4, inference="lvae"))
    e = model.embedding(torch.ones(2), torch.ones(2))
    h = torch.randn(2, 16)
    z2 = torch.randn(2, 3)
    (mean, scale), (pm, ps) = model.posterior_z1(h, z2, e)
    um, us = model.q_z1_up(h).chunk(2, dim=1)
    us = torch.nn.functional.softplus(us) + 1e-3
    assert torch.allclose(scale, (us**-2 + ps**-2) ** -0.5, atol=1e-6)
    assert torch.allclose(mean, (um * us**-2 + pm * ps**-2) * scale**2, atol=1e-5)


def test_metric_helpers():
    # IS = diversity x sharpness; uniform confident predictions over 10 classes give IS 10
    probs = torch.eye(10).repeat(3, 1)
    scores = paper.inception_score(probs)
    assert scores["is"] == pytest.approx(10, rel=1e-6) and scores["diversity"] * scores["sharpness"] == \
        pytest.approx(scores["is"])
    # the bound: chance at zero information, 1 at the label entropy, f(f^-1(r)) = r in between
    h = math.log(10)
    assert paper.accuracy_bound(0.0, h, 10) == pytest.approx(0.1, abs=1e-6)
    assert paper.accuracy_bound(h, h, 10) == 1.0
    a = paper.accuracy_bound(1.0, h, 10)
    assert h + a * math.log(a) + (1 - a) * math.log((1 - a) / 9) == pytest.approx(1.0, abs=1e-6)
    # mutual information: near ln 10 when z identifies the class, near 0 when z ignores it
    y = torch.arange(1000) % 10
    mu = torch.nn.functional.one_hot(y, 10).float() * 20
    assert paper.mutual_information(mu, torch.ones(1000, 10), y, 0) == pytest.approx(math.log(10), abs=0.05)
    assert abs(paper.mutual_information(torch.zeros(1000, 10), torch.ones(1000, 10), y, 0)) < 0.05


def test_read_idx():
    data = b"\0\0\x08\x03" + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(12))
    assert read_idx(data).tolist() == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]
    with pytest.raises(ValueError):
        read_idx(data[:-1])
    with pytest.raises(ValueError):
        read_idx(b"PK\x03\x04")


def test_quick_run_writes_results_figures_and_report(tmp_path):
    train_x, train_y = synthetic_digits(1200, 0)
    test_x, test_y = synthetic_digits(400, 1)
    preset = replace(paper.PRESETS["quick"], steps=60, fixed_steps=30, n_train=None, n_test=None, n_fit=200,
                     n_is=200, n_mi=200)
    data = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    results = paper.run(data, tmp_path, preset, "synthetic")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["ghvae"]) == len(saved["lvae"]) == 9 and len(saved["fixed"]) == 1
    point = saved["ghvae"][0]
    for key in ("rate_z2", "rate_z1", "psnr", "is", "diversity", "sharpness", "mi_y_z2", "bound_mu2",
                "acc_rbfsvm_mu2", "acc_knn_mu1"):
        assert math.isfinite(point[key])
    assert point["is"] == pytest.approx(point["diversity"] * point["sharpness"], rel=1e-6)
    assert results["classifier_test_accuracy"] > 0.5
    for name in ("fig1_beta_grid.png", "fig3_psnr.png", "fig4_is.png", "fig5_acc_bound.png", "fig6_mi_acc_mu2.png",
                 "lvae_fig1_beta_grid.png"):
        assert (tmp_path / name).stat().st_size > 1000
    report = (tmp_path / "REPORT.md").read_text()
    assert "No single HVAE" in report and "Table 1" in report
    assert "| yes |" in report or "| no |" in report


def test_a_damaged_cached_data_set_is_a_clear_error(tmp_path):
    """A cut download in the cache (not a zip file) says what to do, not zipfile's BadZipFile."""
    import numpy as np

    from hitcodec.data import load_labelled_dataset

    np.savez_compressed(tmp_path / "mnist.npz", train_x=np.zeros((50, 28, 28), np.uint8))
    data = (tmp_path / "mnist.npz").read_bytes()
    (tmp_path / "mnist.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="is not a data set that hitcodec fetched .*delete it to fetch it again"):
        load_labelled_dataset("mnist", tmp_path)
