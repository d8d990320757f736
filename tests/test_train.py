import json
import math
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hitcodec.train import (SCORE_KIND, TrainConfig, _optimizer, _score_of, _set_lr, export_weights, load_checkpoint,
                             load_dev_images, open_betas, sample_betas, train)
from hitcodec.weights import load_model

from conftest import TINY


def test_beta_sampling_covers_the_square_and_the_diagonal():
    g = torch.Generator().manual_seed(0)
    b2, b1 = sample_betas(4000, "square", g)
    assert 0.1 <= b2.min() and b2.max() <= 10 and 0.1 <= b1.min() and b1.max() <= 10
    assert abs(torch.log10(b2).mean()) < 0.05 and abs(torch.corrcoef(torch.stack([b2.log(), b1.log()]))[0, 1]) < 0.1
    d2, d1 = sample_betas(10, "diagonal", g)
    assert torch.equal(d2, d1)
    m2, m1 = sample_betas(6000, "mix-diagonal", g)  # a third each: the diagonal, the corner, the square
    on_diagonal, corner = (m2 == m1).float().mean(), ((m2 <= 0.5) & (m1 >= 2)).float().mean()
    assert 0.3 < on_diagonal < 0.37 and 0.35 < corner < 0.4  # 1/3, and 1/3 + the square's share (1/3 * 0.35**2)
    assert 0.1 <= m2.min() and m2.max() <= 10 and 0.1 <= m1.min() and m1.max() <= 10
    f2, f1 = sample_betas(3, "fixed:2,0.5", g)
    assert f2.tolist() == [2.0] * 3 and f1.tolist() == [0.5] * 3
    p2, p1 = sample_betas(3000, "points:0.2,0.2/1,1/5,0.5", g)  # a few points, each with equal odds
    points, counts = torch.stack([p2, p1], 1).unique(dim=0, return_counts=True)
    assert points.flatten().tolist() == pytest.approx([0.2, 0.2, 1, 1, 5, 0.5]) and counts.min() > 900
    for bad in ("fixed:20,1", "fixed:1", "fixed:a,b", "circle", "fixed:1,1/2,2", "points:1,1", "points:1,1/1,1",
                "points:1,1/20,1", "points:1,1/2", "points:", "fixed:nan,1"):
        with pytest.raises(ValueError):
            sample_betas(3, bad, g)


def test_beta_warmup_opens_the_square_from_its_high_rate_corner(tmp_path, photo, monkeypatch):
    import hitcodec.train as training

    b2, b1 = sample_betas(1000, "mix", torch.Generator().manual_seed(0))
    assert torch.allclose(torch.stack(open_betas(b2, b1, 0.0)), torch.tensor(0.1))
    half2, half1 = open_betas(b2, b1, 0.5)  # ln beta halfway from ln 0.1: the square [0.1, 1]^2, same distribution
    assert torch.allclose(half2.log(), (b2.log() + math.log(0.1)) / 2) and half1.max() <= 1.0 + 1e-6
    assert torch.allclose(torch.stack(open_betas(b2, b1, 1.0)), torch.stack([b2, b1]))
    assert torch.allclose(open_betas(b2, b1, 0.0, (0.5, 2.0))[0], torch.tensor(0.5))  # the model's own square
    with pytest.raises(ValueError, match="beta_warmup"):
        TrainConfig(data="d", out="o", beta_warmup=-1)

    seen = []  # the betas of each training step
    real_step = training.training_step

    def spy(net, model, opt, x, beta2, beta1, *rest):
        seen.append((beta2.clone(), beta1.clone()))
        return real_step(net, model, opt, x, beta2, beta1, *rest)

    monkeypatch.setattr(training, "training_step", spy)
    Image.fromarray(photo).save(tmp_path / "0.png")
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), patch=64, batch=16, steps=3, eval_every=3,
                      beta_warmup=2)
    train(cfg, model_config=TINY, progress=False)
    (s2, s1), (h2, h1), (w2, w1) = seen
    assert torch.allclose(torch.stack([s2, s1]), torch.tensor(0.1))  # step 0: the corner (0.1, 0.1) only
    assert h2.max() <= 1 + 1e-6 and h1.max() <= 1 + 1e-6 and h1.max() > 0.3  # step 1: [0.1, 1]^2
    assert w1.max() > 1.5  # step 2: the whole square
    seen.clear()
    train(replace(cfg, out=str(tmp_path / "fixed"), betas="fixed:2,2", steps=1), model_config=TINY, progress=False)
    assert seen[0][0].tolist() == [2.0] * 16  # one point: nothing to open
    seen.clear()
    train(replace(cfg, out=str(tmp_path / "points"), betas="points:2,2/5,5", steps=1), model_config=TINY,
          progress=False)
    assert set(seen[0][1].tolist()) == {2.0, 5.0}  # a few points: only they, not drawn towards the corner
    seen.clear()
    train(replace(cfg, out=str(tmp_path / "per-batch"), beta_warmup=0, beta_per_batch=True, steps=2),
          model_config=TINY, progress=False)
    (a2, a1), (c2, c1) = seen  # one draw per batch, every image at it, another at the next step
    assert a2.shape == (16,) and len(set(a2.tolist())) == 1 and len(set(a1.tolist())) == 1 and a2[0] != c2[0]
    images = []  # paired: each crop twice, at two draws
    real_sample = training.PatchSampler.sample

    def sample(self, n):
        images.append(real_sample(self, n))
        return images[-1]

    monkeypatch.setattr(training.PatchSampler, "sample", sample)
    seen.clear()
    train(replace(cfg, out=str(tmp_path / "paired"), beta_warmup=0, paired_betas=True, steps=1), model_config=TINY,
          progress=False)
    assert images[0].shape[0] == 8 and len(set(seen[0][1].tolist())) == 16
    with pytest.raises(ValueError, match="paired_betas"):
        TrainConfig(data="d", out="o", batch=7, paired_betas=True)


def test_train_cli_resume_from_weights_needs_data_and_out(tmp_path, tiny_path):
    from click.testing import CliRunner

    from hitcodec.cli import main

    result = CliRunner().invoke(main, ["train", "--resume", str(tiny_path)])
    assert result.exit_code == 2 and "--data and --out are required" in result.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    for args in (["train", "--resume", str(junk)], ["export", str(junk), str(tmp_path / "out.pt")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and "is not a hitcodec checkpoint" in result.output
        assert result.output.count("\n") == 1 and not (tmp_path / "out.pt").exists()


def test_train_cli_resume_past_its_steps_is_a_one_line_error(tmp_path, tiny_path):
    from click.testing import CliRunner

    from hitcodec.cli import main

    weights = tmp_path / "at-step-120.pt"
    torch.save({**torch.load(tiny_path, map_location="cpu", weights_only=False), "step": 120}, weights)
    result = CliRunner().invoke(main, ["train", "--resume", str(weights), "--data", str(tmp_path),
                                       "--out", str(tmp_path / "o"), "--steps", "100"])
    assert result.exit_code == 1 and "already at step 120" in result.output, result.output
    assert result.output.count("\n") == 1 and not (tmp_path / "o" / "last.pt").exists()


def test_train_cli_loss_norm_is_stored(tmp_path, tiny_path, photo):
    from click.testing import CliRunner

    from hitcodec.cli import main

    Image.fromarray(photo).save(tmp_path / "0.png")
    result = CliRunner().invoke(main, ["train", "--resume", str(tiny_path), "--data", str(tmp_path), "--out",
                                       str(tmp_path / "o"), "--patch", "64", "--batch", "1", "--steps", "1"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "o" / "last.pt")["train_config"]["loss_norm"] == "none"
    assert TrainConfig(data="d", out="o").loss_norm == "none"
    assert TrainConfig.from_checkpoint({"data": "d", "out": "o"}).loss_norm == "sqrt-beta"  # written before it
    assert TrainConfig.from_checkpoint({"data": "d", "out": "o", "loss_norm": "none"}).loss_norm == "none"
    with pytest.raises(ValueError, match="loss_norm"):
        TrainConfig(data="d", out="o", loss_norm="beta")


def test_bin_widths_can_start_at_the_square_root_of_beta(tmp_path, photo):
    from dataclasses import replace

    from hitcodec.models.ghvae import GHVAE, init_bins_sqrt_beta, log_beta_input
    from hitcodec.train import train

    torch.manual_seed(0)
    model = GHVAE(replace(TINY, latent_bins=True))
    assert init_bins_sqrt_beta(model) < 0.1  # largest error of the fit in ln(width)
    for beta2, beta1 in ((0.1, 0.1), (10.0, 0.1), (0.1, 10.0), (1.0, 3.0)):
        e = model.embed(log_beta_input(torch.tensor([beta2]), torch.tensor([beta1])))
        assert torch.allclose(model.bin_width("z1", e), torch.tensor(math.sqrt(beta1)), rtol=0.1)
        assert torch.allclose(model.bin_width("z2", e), torch.tensor(math.sqrt(beta2)), rtol=0.1)
    with pytest.raises(ValueError, match="latent_bins"):
        init_bins_sqrt_beta(GHVAE(TINY))
    with pytest.raises(ValueError, match="bins_init"):
        TrainConfig(data="d", out="o", bins_init="one")
    Image.fromarray(photo).save(tmp_path / "0.png")
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), patch=64, batch=1, steps=1, eval_every=1,
                      bins_init="sqrt-beta")
    train(cfg, model_config=replace(TINY, latent_bins=True), progress=False)
    stored = load_checkpoint(tmp_path / "run" / "last.pt")
    assert stored["train_config"]["bins_init"] == "sqrt-beta"
    assert float(stored["model"]["bins_z1.bias"][0]) != 0.0  # fitted, then one step of training
    with pytest.raises(ValueError, match="needs a model with learned bin widths"):
        train(replace(cfg, out=str(tmp_path / "run2")), model_config=TINY, progress=False)


def test_train_cli_latent_bins_are_added_to_trained_weights_and_kept(tmp_path, tiny_path, photo):
    from click.testing import CliRunner

    from hitcodec.cli import main

    Image.fromarray(photo).save(tmp_path / "0.png")
    common = ["--data", str(tmp_path), "--patch", "64", "--batch", "1"]
    runs = [["--resume", str(tiny_path), "--out", str(tmp_path / "a"), "--steps", "1"],
            ["--resume", str(tmp_path / "a" / "last.pt"), "--out", str(tmp_path / "b"), "--steps", "2",
             "--latent-bins", "--bins-lr", "0.01"],  # a full checkpoint: the new parameters need a fresh Adam
            ["--resume", str(tmp_path / "b" / "last.pt"), "--steps", "3"]]  # keeps them without the flag
    for args in runs:
        result = CliRunner().invoke(main, ["train", *common, *args])
        assert result.exit_code == 0, result.output
    plain, binned = (load_checkpoint(tmp_path / run / "last.pt") for run in ("a", "b"))
    assert "latent_bins" not in plain["model_config"] and binned["model_config"]["latent_bins"]
    assert binned["step"] == 3 and set(binned["model"]) - set(plain["model"]) == {
        "bins_z2.weight", "bins_z2.bias", "bins_z1.weight", "bins_z1.bias"}
    # the bin widths are Adam's second group, at their own learning rate, and its state carries over a resume
    groups, adam = binned["optimizer"]["param_groups"], binned["optimizer"]["state"]
    assert [g["lr"] for g in groups] == [2e-4, 0.01] and len(groups[1]["params"]) == 4
    assert {float(adam[i]["step"]) for i in groups[1]["params"]} == {2.0}  # steps 2 and 3: not a fresh Adam
    assert binned["model"]["bins_z1.bias"].abs().min() > 0.005  # moved from 0 at lr 0.01
    # a checkpoint whose Adam has one group (written before bins_lr) continues with a fresh one
    old = tmp_path / "one-group.pt"
    torch.save({**binned, "optimizer": torch.optim.Adam(
        [torch.zeros(1, requires_grad=True)]).state_dict()}, old)
    result = CliRunner().invoke(main, ["train", *common, "--resume", str(old), "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4  # in the checkpoint's folder, not b, its stored --out


def test_train_cli_lr_warmup_ramps_a_fresh_adam_only(tmp_path, tiny_path, photo):
    from click.testing import CliRunner

    from hitcodec.cli import main

    Image.fromarray(photo).save(tmp_path / "0.png")
    common = ["--data", str(tmp_path), "--patch", "64", "--batch", "1", "--lr", "1e-3"]
    runs = [["--resume", str(tiny_path), "--out", str(tmp_path / "a"), "--steps", "2", "--lr-warmup", "4"],
            ["--resume", str(tmp_path / "a" / "last.pt"), "--steps", "3"]]  # loads Adam's state: no warm-up
    lrs = []
    for args in runs:
        result = CliRunner().invoke(main, ["train", *common, *args])
        assert result.exit_code == 0, result.output
        state = load_checkpoint(tmp_path / "a" / "last.pt")
        lrs.append([group["lr"] for group in state["optimizer"]["param_groups"]])
    assert state["train_config"]["lr_warmup"] == 4 and state["step"] == 3
    assert lrs == [[pytest.approx(1e-3 * 2 / 4)], [1e-3]]  # the lr of each run's last step


def test_train_cli_lr_drop_factor_sets_the_learning_rate_after_the_drop(tmp_path, tiny_path, photo):
    from click.testing import CliRunner

    from hitcodec.cli import main

    Image.fromarray(photo).save(tmp_path / "0.png")
    args = ["train", "--resume", str(tiny_path), "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--patch",
            "64", "--batch", "1", "--steps", "1"]
    result = CliRunner().invoke(main, args + ["--lr-drop-factor", "10"])
    assert result.exit_code == 0, result.output
    stored = TrainConfig.from_checkpoint(load_checkpoint(tmp_path / "o" / "last.pt")["train_config"])
    assert stored.lr_drop_factor == 10 and TrainConfig(data="d", out="o").lr_drop_factor == 3
    opt = _optimizer(load_model(str(tiny_path)).model, stored)
    _set_lr(opt, stored, dropped=True)
    assert opt.param_groups[0]["lr"] == pytest.approx(stored.lr / 10)
    result = CliRunner().invoke(main, args + ["--lr-drop-factor", "0.5", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and not (tmp_path / "p").exists()
    with pytest.raises(ValueError, match="lr_drop_factor"):
        TrainConfig(data="d", out="o", lr_drop_factor=0)


def test_beta_range_is_checked_and_moves_the_sampled_square():
    from hitcodec.models.ghvae import GHVAEConfig

    for lo, hi in ((1.0, 1.0), (0.0, 10.0), (5.0, 2.0), (0.1, float("inf"))):
        with pytest.raises(ValueError, match="beta range"):
            GHVAEConfig(beta_min=lo, beta_max=hi)
    g = torch.Generator().manual_seed(0)
    b2, b1 = sample_betas(4000, "mix", g, (0.01, 10.0))
    assert 0.01 <= b2.min() < 0.011 and 9.9 < b1.max() <= 10 and (b2 < 0.05).float().mean() > 0.5  # corner: 5x


def test_train_cli_rejects_bad_betas_mode(tmp_path):
    from click.testing import CliRunner

    from hitcodec.cli import main

    for bad in ("fixed:0.01,1", "circle", "points:1,1", "points:1,1/2,x"):
        result = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                           "--betas", bad])
        assert result.exit_code == 2 and "--betas" in result.output, result.output
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                       "--compile-mode", "max-speed"])
    assert result.exit_code == 2 and "--compile-mode" in result.output, result.output
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                       "--loss-norm", "beta"])
    assert result.exit_code == 2 and "--loss-norm" in result.output, result.output
    for args in (["--beta-range", "5,1"], ["--beta-range", "0.1"], ["--beta-range", "1e-300,1e300"],
                 ["--betas", "fixed:0.05,1"],
                 ["--betas", "fixed:0.005,1", "--beta-range", "0.01,10"]):
        result = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), *args])
        assert result.exit_code == 2 and ("--beta-range" in result.output or "--betas" in result.output), args
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                       "--bins-init", "sqrt-beta"])  # a new model without --latent-bins
    assert result.exit_code == 2 and "--bins-init sqrt-beta needs --latent-bins" in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_dev_eval_stays_inside_the_models_square(photo):
    """A model trained on a square narrower than the dev points is scored at its corners, not extrapolated."""
    from hitcodec.models.ghvae import GHVAE
    from hitcodec.train import dev_eval

    torch.manual_seed(0)
    model = GHVAE(replace(TINY, beta_min=0.3, beta_max=3.0))
    result = dev_eval(model, [torch.from_numpy(photo[:64, :64]).permute(2, 0, 1).float() / 255], "cpu")
    assert [(p["beta2"], p["beta1"]) for p in result["points"]] == [(0.3, 0.3), (1, 1), (3, 3), (2, 0.5), (0.5, 2)]


def test_train_without_dev_photos_is_a_one_line_error(tmp_path, photo, monkeypatch):
    """Without the packages that bundle the dev photos (a plain `pip install hitcodec`), or with an empty dev
    folder, training stops before its first step with one line, rather than dividing by zero at its first
    evaluation and losing the steps before it."""
    from click.testing import CliRunner

    from hitcodec import data as hitdata
    from hitcodec.cli import main

    for i in range(2):
        Image.fromarray(np.roll(photo, 10 * i, axis=1)).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(hitdata, "dev_eval_photos", lambda: [])
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--patch",
                                       "64", "--steps", "2"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "no dev-eval photos" in result.stderr and "hitcodec[bench]" in result.stderr
    assert not (tmp_path / "o").exists()
    (tmp_path / "dev").mkdir()
    with pytest.raises(ValueError, match="no images in the dev folder"):
        train(TrainConfig(data=str(tmp_path), out=str(tmp_path / "o"), patch=64, steps=2, dev=str(tmp_path / "dev")),
              progress=False, model_config=TINY)
    assert not (tmp_path / "o").exists()


def test_resume_keeps_the_better_best_and_no_old_time_budget(tmp_path, photo, monkeypatch, caplog):
    """An interrupt after best.pt is written and before last.pt leaves last.pt with the older, worse best score;
    resuming compares with best.pt's own score, so a worse model does not replace it. And --minutes is a budget
    of one run: a resumed run without it has none."""
    from click.testing import CliRunner

    from hitcodec import train as train_module
    from hitcodec.cli import main

    for i in range(2):
        Image.fromarray(np.roll(photo, 10 * i, axis=1)).save(tmp_path / f"{i}.png")
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), patch=64, batch=2, steps=2, eval_every=2,
                      dev=str(tmp_path), dev_max_side=64, minutes=5.0)
    train(cfg, progress=False, model_config=TINY)
    run = tmp_path / "run"
    best = load_checkpoint(run / "best.pt")
    best["best_score"] = 1e-9  # a best that no later step beats, written just before the interrupt
    torch.save(best, run / "best.pt")
    last = load_checkpoint(run / "last.pt")
    last["best_score"] = math.inf  # last.pt as it was before: it did not get to record that best
    torch.save(last, run / "last.pt")
    train(replace(cfg, steps=4), resume=str(run / "last.pt"), progress=False)
    assert load_checkpoint(run / "best.pt")["step"] == 2 and load_checkpoint(run / "last.pt")["step"] == 4
    assert load_checkpoint(run / "last.pt")["best_score"] == 1e-9

    seen = []
    monkeypatch.setattr(train_module, "train", lambda cfg, resume: seen.append(cfg) or {})
    assert CliRunner().invoke(main, ["train", "--resume", str(run / "last.pt"), "--steps", "6"]).exit_code == 0
    assert CliRunner().invoke(main, ["train", "--resume", str(run / "last.pt"), "--steps", "6",
                                     "--minutes", "2"]).exit_code == 0
    assert [c.minutes for c in seen] == [0.0, 2.0]
    export_weights(run / "last.pt", tmp_path / "fp16.pt")  # no optimiser state: a warning without a warm-up
    for warmup in (0, 2):
        caplog.clear()
        with caplog.at_level("WARNING", logger="hitcodec.train"):
            train(replace(cfg, out=str(tmp_path / f"cont{warmup}"), steps=6, minutes=0.0, lr_warmup=warmup),
                  resume=str(tmp_path / "fp16.pt"), progress=False)
        assert ("a fresh Adam at --lr 0.0002 without --lr-warmup" in caplog.text) == (warmup == 0), caplog.text


def test_train_resume_and_export(tmp_path, photo):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(photo, 10 * i, axis=1)).save(data / f"{i}.png")
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), patch=64, batch=2, steps=3, eval_every=2,
                      dev=str(data), dev_max_side=64)
    result = train(cfg, progress=False, model_config=TINY)
    assert result["score"] > 0 and len(result["points"]) == 5
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 3 and state["model_config"] == TINY.to_dict()
    assert (tmp_path / "run" / "best.pt").exists()
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 3]

    objectives = [p["objective"] for p in result["points"]]
    assert result["score"] == pytest.approx(math.exp(np.mean(np.log(objectives))))
    assert result["score_mean"] == pytest.approx(np.mean(objectives)) and state["score_kind"] == SCORE_KIND

    # a checkpoint whose best score is of the older kind: best.pt is re-scored, not compared with that number
    old_best = _score_of(tmp_path / "run" / "best.pt", load_dev_images(cfg), "cpu")
    del state["score_kind"]
    state["best_score"] = -1.0  # an old score no new one would beat
    torch.save(state, tmp_path / "run" / "last.pt")
    resumed = TrainConfig(**{**state["train_config"], "steps": 5})
    train(resumed, resume=str(tmp_path / "run" / "last.pt"), progress=False)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 5 and state["score_kind"] == SCORE_KIND
    new_scores = [entry["score"] for entry in state["history"][-2:]]
    assert state["best_score"] == pytest.approx(min(old_best, *new_scores))

    export_weights(tmp_path / "run" / "last.pt", tmp_path / "model.pt")
    loaded = load_model(str(tmp_path / "model.pt"))
    assert loaded.model.config == TINY

    # an exported (fp16, optimiser-free) file resumes too: its step count, a fresh Adam and log in a new folder
    again = TrainConfig(**{**state["train_config"], "steps": 6, "out": str(tmp_path / "again")})
    train(again, resume=str(tmp_path / "model.pt"), progress=False)
    assert load_checkpoint(tmp_path / "again" / "last.pt")["step"] == 6
    assert [json.loads(line)["step"] for line in (tmp_path / "again" / "log.jsonl").read_text().splitlines()] == [6]

    # a wider beta square for the model: stored in its config, so the codec accepts the new betas from then on
    from hitcodec import codec
    from hitcodec.image import CodecImage

    wide = TrainConfig(**{**state["train_config"], "steps": 7, "out": str(tmp_path / "wide"),
                          "beta_range": (0.02, 10.0), "betas": "fixed:0.03,0.05"})
    train(wide, resume=str(tmp_path / "model.pt"), progress=False)
    export_weights(tmp_path / "wide" / "last.pt", tmp_path / "wide.pt")
    widened = load_model(str(tmp_path / "wide.pt"))
    assert (widened.model.config.beta_min, widened.model.config.beta_max) == (0.02, 10.0)
    assert widened.model.config.to_dict()["beta_min"] == 0.02 and "beta_min" not in TINY.to_dict()
    image = CodecImage(np.ascontiguousarray(photo[:64, :64]), None, "RGB")
    coded = codec.encode(widened, image, 0.03, 0.05)
    assert codec.decode(widened, coded.data).header.beta2 == np.float32(0.03)
    with pytest.raises(ValueError, match=r"beta2 must be a finite number in \[0.1, 10\]"):
        codec.encode(loaded, image, 0.03, 0.05)
    with pytest.raises(ValueError, match=r"must lie in \[0.1, 10\]"):  # the default square refuses the point
        train(TrainConfig(**{**state["train_config"], "steps": 8, "out": str(tmp_path / "narrow"),
                             "betas": "fixed:0.03,0.05"}), resume=str(tmp_path / "model.pt"), progress=False)


def _folder(tmp_path, photo):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for i in range(2):
        Image.fromarray(np.roll(photo, 10 * i, axis=1)).save(data / f"{i}.png")
    return data


SPEED_OPTIONS = [
    {"amp": True},
    {"channels_last": True},
    pytest.param({"compile": True, "channels_last": True, "amp": True}, marks=pytest.mark.skipif(
        shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")),
]


@pytest.mark.parametrize("options", SPEED_OPTIONS, ids=lambda o: "+".join(o))
def test_speed_options_train_and_checkpoint_plain_weights(tmp_path, photo, options):
    data = _folder(tmp_path, photo)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), patch=64, batch=2, steps=2, eval_every=2,
                      dev=str(data), dev_max_side=64, **options)
    result = train(cfg, progress=False, model_config=TINY)
    assert np.isfinite(result["score"])
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 2 and not any(k.startswith("_orig_mod.") for k in state["model"])
    assert all(state["train_config"][k] == v for k, v in options.items())


def test_train_speed_benchmark_reports_each_variant(tmp_path, photo):
    from benchmarks import train_speed

    out = tmp_path / "speed.json"
    train_speed.main(["--data", str(_folder(tmp_path, photo)), "--tiny", "--device", "cpu", "--batch", "2",
                      "--patch", "64", "--steps", "2", "--warmup", "1", "--variants", "eager,channels_last,amp",
                      "--min-seconds", "0.3", "--out", str(out)])
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"eager", "channels_last", "amp"}
    assert all(r["steps_per_s"] > 0 and r["images_per_s"] == 2 * r["steps_per_s"] for r in results.values())
    assert all(r["timed_steps"] >= 2 and r["timed_steps"] / r["steps_per_s"] >= 0.3 for r in results.values())


def test_patch_sampler_says_which_images_are_too_small(tmp_path, photo, caplog):
    from hitcodec.train import PatchSampler

    Image.fromarray(photo).save(tmp_path / "big.png")  # 96 x 128
    Image.fromarray(photo[:48, :64]).save(tmp_path / "small.png")
    with caplog.at_level("WARNING", logger="hitcodec.train"):
        sampler = PatchSampler(str(tmp_path), 64, 0.5, 0)
    assert len(sampler) == 1 and "1 of 2 training images are smaller than the 64-px crops" in caplog.text
    assert sampler.sample(2).shape == (2, 3, 64, 64)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with caplog.at_level("WARNING", logger="hitcodec.train"):
        assert len(PatchSampler(str(tmp_path), 64, 0.5, 0)) == 1  # skipped, and named
    assert "broken.png" in caplog.text and "skipped" in caplog.text


def test_train_speed_benchmark_keeps_going_past_a_failed_variant(tmp_path, photo):
    from benchmarks import train_speed

    out = tmp_path / "speed.json"
    with pytest.raises(SystemExit, match="variants failed: eager, amp"):  # crops larger than every photo
        train_speed.main(["--data", str(_folder(tmp_path, photo)), "--tiny", "--device", "cpu", "--patch", "1024",
                          "--variants", "eager,amp", "--out", str(out)])
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"eager", "amp"} and all("no training images" in r["error"] for r in results.values())


def test_torchrun_two_processes(tmp_path, photo):
    """DistributedDataParallel on CPU (gloo), as a user would launch it with torchrun."""
    import subprocess
    import sys

    data = _folder(tmp_path, photo)
    script = tmp_path / "run_ddp.py"
    script.write_text(
        "import sys\n"
        "sys.path.insert(0, %r)\n"
        "from conftest import TINY\n"
        "from hitcodec.train import TrainConfig, train\n"
        "train(TrainConfig(data=%r, out=%r, patch=64, batch=2, steps=3, eval_every=3, dev=%r, dev_max_side=64),"
        " progress=False, model_config=TINY)\n" % (str(Path(__file__).parent), str(data), str(tmp_path / "ddp"),
                                                    str(data)))
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    str(script)], check=True, capture_output=True, timeout=300)
    state = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert state["step"] == 3 and not any(k.startswith("module.") for k in state["model"])


def test_an_interrupted_run_resumed_keeps_its_learning_rate_schedule(tmp_path, photo, monkeypatch):
    import hitcodec.train as train_module

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo).save(data / "0.png")
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "whole"), patch=64, batch=1, steps=6, eval_every=2,
                      lr_drop=0.5, dev=str(data), dev_max_side=64)
    real_set_lr, steps, kill = train_module._set_lr, [], []  # steps: whether the lr was dropped at each step

    def spy(opt, cfg, dropped, **warm):  # the training loop's calls pass warm=
        if warm and len(steps) == 2 and kill:
            raise kill.pop()  # killed during step 3, after step 2's checkpoint
        if warm:
            steps.append(dropped)
        real_set_lr(opt, cfg, dropped, **warm)

    monkeypatch.setattr(train_module, "_set_lr", spy)
    train(cfg, progress=False, model_config=TINY)
    whole, steps[:] = list(steps), []
    assert whole == [False] * 3 + [True] * 3
    cut = TrainConfig(**{**asdict(cfg), "out": str(tmp_path / "cut")})
    kill.append(RuntimeError("killed"))
    with pytest.raises(RuntimeError, match="killed"):
        train(cut, progress=False, model_config=TINY)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 2
    steps[:] = [None, None]  # stands for the two steps already done
    train(cut, resume=str(tmp_path / "cut" / "last.pt"), progress=False)
    assert steps[2:] == whole[2:]  # the same schedule as the uninterrupted run
    steps[:] = []  # a resume with a new --steps is a new run with its own schedule: 2 more steps, drop after 1
    train(TrainConfig(**{**asdict(cut), "steps": 8}), resume=str(tmp_path / "cut" / "last.pt"), progress=False)
    assert steps == [False, True]


def test_train_cli_keeps_runs_apart(tmp_path, tiny_path, photo):
    """A run continues in its own folder wherever it was copied to; a new run does not overwrite another."""
    from click.testing import CliRunner

    from hitcodec.cli import main

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo).save(data / "0.png")
    common = ["--data", str(data), "--patch", "64", "--batch", "1"]

    def train_cli(*args):
        return CliRunner().invoke(main, ["train", *common, *args])

    assert train_cli("--resume", str(tiny_path), "--out", str(tmp_path / "a"), "--steps", "1").exit_code == 0
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    result = train_cli("--resume", str(tmp_path / "copy" / "last.pt"), "--steps", "2")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "copy" / "last.pt")["step"] == 2  # not a/, the --out stored in it
    assert load_checkpoint(tmp_path / "a" / "last.pt")["step"] == 1
    result = train_cli("--resume", str(tiny_path), "--out", str(tmp_path / "a"), "--steps", "1")
    assert result.exit_code == 1 and "holds another run" in result.output and result.output.count("\n") == 1
    assert load_checkpoint(tmp_path / "a" / "last.pt")["step"] == 1
    result = train_cli("--resume", str(tmp_path / "a" / "last.pt"), "--out", str(tmp_path / "b"), "--steps", "2")
    assert result.exit_code == 0, result.output  # a new folder gets the campaign's best.pt along
    assert (tmp_path / "b" / "best.pt").read_bytes() != b"" and load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 2
    result = CliRunner().invoke(main, ["train", "--resume", str(tiny_path), "--data", str(tmp_path / "none"),
                                       "--out", str(tmp_path / "c")])
    assert result.exit_code == 1 and "no folder of training photos" in result.output
    assert not (tmp_path / "c").exists()


def test_train_cli_refuses_foreign_checkpoints_in_one_line(tmp_path, tiny_path, photo):
    from click.testing import CliRunner

    from hitcodec.cli import main

    Image.fromarray(photo).save(tmp_path / "0.png")
    out = tmp_path / "run"
    CliRunner().invoke(main, ["train", "--resume", str(tiny_path), "--data", str(tmp_path), "--out", str(out),
                              "--patch", "64", "--batch", "1", "--steps", "1"])
    state = load_checkpoint(out / "last.pt")
    for name, broken in (("newer", {**state, "train_config": {**state["train_config"], "future_option": 1}}),
                         ("config", {**state, "model_config": "hello"}), ("step", {**state, "step": "x"}),
                         ("typed", {**state, "train_config": {**state["train_config"], "batch": "2"}}),  # was a
                         ("flag", {**state, "train_config": {**state["train_config"], "amp": 1}})):  # traceback
        path = tmp_path / f"{name}.pt"
        torch.save(broken, path)
        result = CliRunner().invoke(main, ["train", "--resume", str(path), "--steps", "5"])
        assert result.exit_code == 1 and result.output.count("\n") == 1 and "Traceback" not in result.output, name
    good = tmp_path / "good.pt"
    assert CliRunner().invoke(main, ["export", str(out / "last.pt"), str(good)]).exit_code == 0
    before = good.read_bytes()
    torch.save({**state, "model_config": {**state["model_config"], "future_option": 1}}, tmp_path / "bad.pt")
    result = CliRunner().invoke(main, ["export", str(tmp_path / "bad.pt"), str(good), "--force"])
    assert result.exit_code == 1 and good.read_bytes() == before  # checked before the good file is replaced
    # written as every output is: never over its own checkpoint; a link's target replaced and the link kept, with
    # the replaced file's permissions; '-' to standard output, the status line to stderr
    last = (out / "last.pt").read_bytes()
    result = CliRunner().invoke(main, ["export", str(out / "last.pt"), str(out / ".." / "run" / "last.pt"), "-f"])
    assert result.exit_code == 1 and "would replace the input" in result.output
    assert (out / "last.pt").read_bytes() == last
    good.chmod(0o600)
    (tmp_path / "link.pt").symlink_to(good)
    result = CliRunner().invoke(main, ["export", str(out / "last.pt"), str(tmp_path / "link.pt"), "--force"])
    assert result.exit_code == 0 and (tmp_path / "link.pt").is_symlink() and good.read_bytes() == before
    assert good.stat().st_mode & 0o777 == 0o600
    result = CliRunner().invoke(main, ["export", str(out / "last.pt"), "-"])
    assert result.exit_code == 0 and result.stdout_bytes == before and "wrote -: model id" in result.stderr


def test_a_diverged_run_stops_without_overwriting_its_checkpoints(tmp_path, tiny_path, photo, monkeypatch):
    from click.testing import CliRunner

    import hitcodec.train
    from hitcodec.cli import main

    Image.fromarray(photo).save(tmp_path / "0.png")
    out = tmp_path / "run"
    common = ["--data", str(tmp_path), "--patch", "64", "--batch", "1"]
    assert CliRunner().invoke(main, ["train", "--resume", str(tiny_path), "--out", str(out), *common,
                                     "--steps", "1"]).exit_code == 0
    before = (out / "last.pt").read_bytes()
    monkeypatch.setattr(hitcodec.train, "dev_eval", lambda *args: {"score": math.nan, "score_mean": math.nan,
                                                                   "points": []})
    result = CliRunner().invoke(main, ["train", "--resume", str(out / "last.pt"), *common, "--steps", "2"])
    error = result.output.split("\n")[-2]  # on a line of its own, after the closed progress bar
    assert result.exit_code == 1 and error.startswith("hitcodec: error: training diverged"), result.output
    assert result.output.count("hitcodec:") == 1 and result.output.endswith("\n")
    assert (out / "last.pt").read_bytes() == before and len((out / "log.jsonl").read_text().splitlines()) == 1


def test_save_leaves_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    from hitcodec import train as training

    path = tmp_path / "last.pt"
    training._save(path, {"step": 1})

    def interrupted(state, target):
        target.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training._save(path, {"step": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_a_run_moved_to_a_new_folder_keeps_the_campaigns_best(tmp_path, tiny_path, photo, monkeypatch):
    from click.testing import CliRunner

    import hitcodec.train
    from hitcodec.cli import main

    Image.fromarray(photo).save(tmp_path / "0.png")
    common = ["--data", str(tmp_path), "--patch", "64", "--batch", "1"]
    assert CliRunner().invoke(main, ["train", "--resume", str(tiny_path), "--out", str(tmp_path / "a"), *common,
                                     "--steps", "1"]).exit_code == 0
    monkeypatch.setattr(hitcodec.train, "dev_eval", lambda *args: {"score": 1e9, "score_mean": 1e9, "points": []})
    result = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "a" / "last.pt"), "--out",
                                       str(tmp_path / "b"), *common, "--steps", "2"])  # a worse evaluation
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "best.pt").read_bytes() == (tmp_path / "a" / "best.pt").read_bytes()
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 2


def test_a_failed_save_names_the_checkpoint(tmp_path, monkeypatch):
    """torch.save to a path used torch's own writer, whose error named no file ("[enforce fail at
    inline_container.cc:747] . open file failed with strerror: Permission denied")."""
    from hitcodec import train as training

    def disk_full(state, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left on device") as info:
        training._save(tmp_path / "last.pt", {"step": 1})
    assert info.value.filename == str(tmp_path / "last.pt") and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    (tmp_path / "afile").write_bytes(b"")
    with pytest.raises(NotADirectoryError) as info:  # torch's own writer named no file here
        training._save(tmp_path / "afile" / "last.pt", {"step": 1})
    assert info.value.filename == str(tmp_path / "afile" / "last.pt")
    with pytest.raises(FileNotFoundError) as info:  # a file that is copied: its own name
        training._save(tmp_path / "best.pt", tmp_path / "gone.pt")
    assert info.value.filename == str(tmp_path / "gone.pt")


def test_a_run_moved_to_a_new_folder_and_stopped_before_its_first_checkpoint_runs_again(tmp_path, tiny_path, photo,
                                                                                         monkeypatch):
    """The campaign's best.pt used to be copied into the new folder before the first step: stopped before its first
    checkpoint, the folder then held only best.pt, and the same command was refused as "another run"."""
    from click.testing import CliRunner

    import hitcodec.train
    from hitcodec.cli import main

    Image.fromarray(photo).save(tmp_path / "0.png")
    common = ["--data", str(tmp_path), "--patch", "64", "--batch", "1"]
    assert CliRunner().invoke(main, ["train", "--resume", str(tiny_path), "--out", str(tmp_path / "a"), *common,
                                     "--steps", "1"]).exit_code == 0
    again = ["train", "--resume", str(tmp_path / "a" / "last.pt"), "--out", str(tmp_path / "b"), *common,
             "--steps", "2"]

    def interrupted(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(hitcodec.train, "training_step", interrupted)
        result = CliRunner().invoke(main, again)
    assert result.exit_code == 130 and not list((tmp_path / "b").iterdir()), result.output
    def moved_away(*args):  # the campaign's best.pt is taken as it was at the start
        (tmp_path / "a" / "best.pt").rename(tmp_path / "a" / "old.pt")
        return {"score": 1e9, "score_mean": 1e9, "points": []}  # worse: b/best.pt is a's

    with monkeypatch.context() as patch:
        patch.setattr(hitcodec.train, "dev_eval", moved_away)
        result = CliRunner().invoke(main, again)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 2
    assert (tmp_path / "b" / "best.pt").read_bytes() == (tmp_path / "a" / "old.pt").read_bytes()


def test_train_cli_checks_its_folders_before_training(tmp_path, tiny_path, photo):
    """An --out that cannot be written failed only at the first checkpoint (after up to --eval-every steps), an
    empty --data or --out meant the current folder, and --bins-init was ignored on resume."""
    from click.testing import CliRunner

    from hitcodec.cli import main

    Image.fromarray(photo).save(tmp_path / "0.png")
    (tmp_path / "afile").write_bytes(b"")
    common = ["--resume", str(tiny_path), "--patch", "64", "--batch", "1", "--steps", "1"]
    result = CliRunner().invoke(main, ["train", *common, "--data", str(tmp_path), "--out",
                                       str(tmp_path / "afile" / "run")])
    run = tmp_path / "afile" / "run"
    assert result.exit_code == 1, result.output
    assert result.output == f"hitcodec: error: cannot write in {run}: {tmp_path / 'afile'} is not a folder\n"
    for option in ("--data", "--out"):
        args = {"--data": str(tmp_path), "--out": str(tmp_path / "run"), option: ""}
        result = CliRunner().invoke(main, ["train", *common, *[x for kv in args.items() for x in kv]])
        assert result.exit_code == 2 and "an empty name" in result.output, result.output
    result = CliRunner().invoke(main, ["train", *common, "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                                       "--latent-bins", "--bins-init", "sqrt-beta"])
    assert result.exit_code == 2 and "--bins-init is for a new model" in result.output, result.output
    assert not (tmp_path / "run").exists()
    import tempfile

    import hitcodec.train

    def read_only(*args, **kwargs):  # a read-only mount, or a folder without write permission (root passes chmod)
        raise PermissionError(13, "Permission denied")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "TemporaryFile", read_only)
        patch.setattr(hitcodec.train, "train", lambda *args, **kwargs: pytest.fail("trained"))
        result = CliRunner().invoke(main, ["train", *common, "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert result.output == f"hitcodec: error: cannot write in {tmp_path / 'run'}: permission denied\n"


def test_train_cli_stores_the_data_folder_as_an_absolute_path(tmp_path, tiny_path, photo, monkeypatch):
    """Stored as typed ("data"), a resume from another folder trained on whatever "data" was there, silently."""
    from click.testing import CliRunner

    from hitcodec.cli import main

    (tmp_path / "data").mkdir()
    Image.fromarray(photo).save(tmp_path / "data" / "0.png")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", "--resume", str(tiny_path), "--data", "data", "--out", "run",
                                       "--patch", "64", "--batch", "1", "--steps", "1"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_config"]["data"] == str(tmp_path / "data")


def test_training_photos_in_16_bits_are_reduced_not_clipped_and_huge_ones_skipped(tmp_path, photo):
    import struct
    import zlib

    from hitcodec.data import load_rgb_uint8

    gray = photo[:, :, 1]
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # opens as I;16 (or I)
    assert np.array_equal(load_rgb_uint8(tmp_path / "g16.png"), np.repeat(gray[:, :, None], 3, axis=2))
    png = bytearray((tmp_path / "g16.png").read_bytes())  # the IHDR chunk declares 30000x30000: over twice
    png[16:24] = struct.pack(">II", 30000, 30000)  # Pillow's limit, DecompressionBombError (no OSError)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    (tmp_path / "bomb.png").write_bytes(bytes(png))
    with pytest.raises(ValueError, match="cannot read training image .*bomb.png"):
        load_rgb_uint8(tmp_path / "bomb.png")


def test_train_cli_missing_resume_is_no_such_file(tmp_path):
    from click.testing import CliRunner

    from hitcodec.cli import main

    result = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "nope.pt")])
    assert result.exit_code == 1 and result.output == f"hitcodec: error: no such file: {tmp_path / 'nope.pt'}\n"


def test_ema_keeps_an_average_of_the_weights_that_dev_eval_best_and_export_use(tmp_path, photo):
    data = _folder(tmp_path, photo)
    plain = TrainConfig(data=str(data), out=str(tmp_path / "plain"), patch=64, batch=2, steps=1, eval_every=1,
                        dev=str(data), dev_max_side=64)
    train(plain, progress=False, model_config=TINY)
    w1 = load_checkpoint(tmp_path / "plain" / "last.pt")["model"]
    train(replace(plain, steps=2), resume=str(tmp_path / "plain" / "last.pt"), progress=False)
    w2 = load_checkpoint(tmp_path / "plain" / "last.pt")["model"]

    averaged = replace(plain, out=str(tmp_path / "ema"), ema=0.25)
    train(averaged, progress=False, model_config=TINY)
    train(replace(averaged, steps=2), resume=str(tmp_path / "ema" / "last.pt"), progress=False)
    state = load_checkpoint(tmp_path / "ema" / "last.pt")
    for name, trained in state["train_model"].items():  # training is unchanged by the average
        assert torch.equal(trained, w2[name]), name
    moved = [name for name, t in w1.items() if t.is_floating_point() and not torch.equal(t, w2[name])]
    assert moved
    for name in moved:  # the first step's weights copied, then 0.25 of them kept at the next (across the resume)
        assert torch.allclose(state["model"][name], 0.25 * w1[name] + 0.75 * w2[name], atol=1e-6), name
    dev = load_dev_images(averaged)
    assert _score_of(tmp_path / "ema" / "last.pt", dev, "cpu") == pytest.approx(state["history"][-1]["score"])
    export_weights(tmp_path / "ema" / "last.pt", tmp_path / "ema.pt")
    exported = torch.load(tmp_path / "ema.pt", weights_only=True)
    assert "train_model" not in exported and torch.equal(exported["model"][moved[0]], state["model"][moved[0]].half())

    # resumed without the average, it trains on from the trained weights, and "model" holds them again
    train(replace(averaged, steps=3, ema=0.0), resume=str(tmp_path / "ema" / "last.pt"), progress=False)
    train(replace(plain, steps=3), resume=str(tmp_path / "plain" / "last.pt"), progress=False)
    state, w3 = load_checkpoint(tmp_path / "ema" / "last.pt"), load_checkpoint(tmp_path / "plain" / "last.pt")
    assert "train_model" not in state and all(torch.equal(t, w3["model"][k]) for k, t in state["model"].items())
    with pytest.raises(ValueError, match="ema must be a decay"):
        TrainConfig(data="d", out="o", ema=1.0)


def test_train_cli_ema_is_checked_stored_and_kept_on_resume(tmp_path, tiny_path, photo):
    from click.testing import CliRunner

    from hitcodec.cli import main

    Image.fromarray(photo).save(tmp_path / "0.png")
    common = ["train", "--data", str(tmp_path), "--patch", "64", "--batch", "1"]
    first = common + ["--resume", str(tiny_path), "--out", str(tmp_path / "r"), "--steps", "1"]
    bad = CliRunner().invoke(main, first + ["--ema", "1"])
    assert bad.exit_code == 2 and "--ema" in bad.output and not (tmp_path / "r").exists()
    assert CliRunner().invoke(main, first + ["--ema", "0.9"]).exit_code == 0
    resumed = CliRunner().invoke(main, common + ["--resume", str(tmp_path / "r" / "last.pt"), "--steps", "2"])
    assert resumed.exit_code == 0, resumed.output
    state = load_checkpoint(tmp_path / "r" / "last.pt")
    assert state["train_config"]["ema"] == 0.9 and "train_model" in state and state["step"] == 2
