"""Equal-steps comparison at small scale: the beta-conditioned GHVAE against models trained at one fixed beta, and
against the conventional beta-VAE (beta2 = beta1) trained with the same steps.

    python -m benchmarks.fixed_beta --data data/train --out benchmarks/results/fixed-beta [--steps N] [--quick]

One small architecture (GHVAEConfig(n=64, z1=96, z2=64)), the same crops, learning rate, seed and number of steps
for every model:
- ``square``: beta2, beta1 log-uniform over [0.1, 10]^2, one model for every split (the paper's GHVAE);
- ``mix``: half of each batch from the square, half from the z2-heavy corner (how the shipped model is trained);
- ``diagonal``: beta2 = beta1 log-uniform, the conventional beta-VAE, one model for every rate;
- ``mix-diagonal``: a third each from the square, the corner and the diagonal (trained only where ``--names``
  names it);
- ``points``: one model for the three FIXED points only, each image at one of them (trained only where ``--names``
  names it; measured at those points): whether the gap to the fixed models comes from sharing one network or from
  spreading it over a continuum of betas;
- ``fixed:b,b`` for b in FIXED: one model per point on the diagonal, the classic one-model-per-rate codec.

Then every model is measured with the real codec (bytes from constriction's ANS coder, uint8 PSNR) on centre
crops of the dev-eval photos, and the report gives
- the BD-rate of each conditioned model's diagonal against the curve of the fixed-beta models (over the PSNR
  range they share; the issue's goal is <= 3 %), and the objective gap at each fixed point;
- the BD-rate of the square and mix models' best split per total rate (the upper hull of their (beta2, beta1)
  grid) against their own diagonal and against the diagonal model, and of each conditioned model's diagonal
  against that of mix (the shipped model's recipe).
Checkpoints are kept under ``--runs`` (default runs/fixed-beta), so an interrupted run picks up where it stopped;
one trained there with other model options or another recipe (seed, loss, batch, ...) is refused with a one-line
error, not continued or measured.
``--names`` trains and measures a subset; with ``--train-only``, several processes can train different models side
by side (e.g. ``--threads 1`` each on two cores), and a last run without it measures them all. ``--beta-range
MIN,MAX`` trains the conditioned models on a wider (or narrower) square than [0.1, 10] (the fixed points and the
measured grid stay as they are), to see whether a fixed point near the square's edge suffers from being there.
``--latent-bins`` gives the models trained here a learned bin width per latent channel and beta,
``--cond-kernels K`` the conditioned ones K beta-routed kernels added to each convolution of g_a and g_s (more
parameters for the conditioning at about 1.5x the time per step; for one fixed beta they would only
re-parameterise the kernel), and ``--channels N`` every model trained here N channels in its transforms instead of
64 (the latents keep theirs), to see how the gap depends on the network's width. ``--device cuda --fast`` trains on
a GPU (benchmarks/device_fixed_beta.sh: several models and lengths side by side on a lent one; the measuring stays
on the CPU). ``--fixed-from RESULTS.json``
compares against the fixed-beta points that an earlier run measured (their mean where it had replicates) instead
of training or measuring fixed-beta models again, and against that run's conditioned models where this run measures
none of the same name (e.g. a new ``diagonal`` model against the stored ``mix``). Given several times (e.g. one
run per seed), each run is one replicate: the fixed points are averaged and compared as below.

    python -m benchmarks.fixed_beta --model mix=M.pt --model diagonal=D.pt --model fixed-1=F1.pt ... --out DIR

measures models trained elsewhere instead (e.g. full size on a GPU by benchmarks/device_equal_steps.sh, with
``--crop 0`` for the whole dev photos); the names are those above, and a comparison whose models are missing is
left out. A name given several times (e.g. ``--model mix=SEED0.pt --model mix=SEED1.pt``, and the same for each
fixed beta) measures replicates: the report compares their point-by-point mean curves, and lists the BD-rates of
single replicates against each other, so one sees how far apart two trainings of the same recipe lie.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.args import output_folder
from benchmarks.rd import bd_rate, log_grid, measure_ghvae, upper_hull
from benchmarks.train_speed import VARIANTS
from hitcodec.data import dev_eval_photos
from hitcodec.image import CodecImage, read_image
from hitcodec.models.ghvae import LOSS_NORMS, GHVAEConfig
from hitcodec.train import BINS_INITS, TrainConfig, load_checkpoint, parse_beta_range, train
from hitcodec.weights import LoadedModel, model_from_state, model_id

SMALL = GHVAEConfig(n=64, z1_channels=96, z2_channels=64, embed=32)
FIXED = (0.2, 1.0, 5.0)
CONDITIONED = ("square", "mix", "diagonal", "mix-diagonal", "points")  # the beta-conditioned models
NAMES = {**{name: name for name in CONDITIONED[:-1]},  # their hitcodec.train modes
         "points": "points:" + "/".join(f"{b:g},{b:g}" for b in FIXED),  # one model for the FIXED points only
         **{f"fixed-{b:g}": f"fixed:{b:g},{b:g}" for b in FIXED}}
DEFAULT_NAMES = [n for n in NAMES if n not in ("mix-diagonal", "points")]  # the six models of the first comparison


def dev_crops(side: int) -> list[tuple[str, CodecImage]]:
    """Centre crops (at most side x side; 0 = whole) of the dev-eval photos, as RGB codec images."""
    images = []
    for path in dev_eval_photos():
        # an ICC profile is not applied: the stored values, as training, the dev score and every earlier
        # result read them (of the dev photos only rocket.jpg has one, Adobe RGB)
        rgb = read_image(path, srgb=False).rgb
        h, w = rgb.shape[:2]
        s = side or max(h, w)  # per photo: 0 keeps each whole
        top, left = max(0, (h - s) // 2), max(0, (w - s) // 2)
        images.append((path.name, CodecImage(np.ascontiguousarray(rgb[top:top + s, left:left + s]), None, "RGB")))
    return images


def train_model(name: str, betas: str, args) -> Path:
    """Train one model to ``args.steps`` (or finish an interrupted run) and return its last checkpoint. A checkpoint
    already in the run's folder is continued or reused only if it was trained with the same model and recipe."""
    run = Path(args.runs) / name
    last = run / "last.pt"
    fixed = name.startswith("fixed")  # one point: the default square, and no beta-routed kernels
    fast = VARIANTS["graphs"] if args.fast else {}  # bf16, channels_last, the step compiled as CUDA graphs
    cfg = TrainConfig(data=args.data, out=str(run), patch=args.patch, batch=args.batch, lr=args.lr,
                      lr_drop=args.lr_drop, lr_drop_factor=args.lr_drop_factor, steps=args.steps,
                      z2_warmup=args.steps // 4, betas=betas,
                      eval_every=args.eval_every or args.steps // 2, dev_max_side=args.crop, seed=args.seed,
                      loss_norm=args.loss_norm, beta_range=None if fixed else args.beta_range, device=args.device,
                      bins_init="zero" if fixed else args.bins_init, beta_warmup=0 if fixed else args.beta_warmup,
                      beta_per_batch=not fixed and args.beta_per_batch, paired_betas=not fixed and args.paired_betas,
                      bins_lr=0.0 if fixed else args.bins_lr, ema=args.ema,
                      **fast)
    model_cfg = cfg.model_config(replace(SMALL, n=args.channels, latent_bins=args.latent_bins,
                                         cond_kernels=0 if fixed else args.cond_kernels,
                                         bins_max=0.0 if fixed else args.bins_max,
                                         z1_min_channels=0 if fixed else args.z1_min_channels,
                                         mask_synthesis=not fixed and args.mask_synthesis,
                                         decoder_gains=not fixed and args.decoder_gains))  # as `train` stores it
    if last.exists():
        state = load_checkpoint(last)
        _check_same_run(last, state, model_cfg, cfg)
        if state["step"] >= args.steps:
            return last
    train(cfg, resume=str(last) if last.exists() else None, progress=not args.quiet, model_config=model_cfg)
    return last


RECIPE = ("betas", "batch", "patch", "lr", "lr_drop", "lr_drop_factor", "seed",
          "loss_norm", "bins_init", "beta_warmup", "bins_lr", "beta_per_batch",
          "paired_betas", "ema")  # the TrainConfig fields of another run


def _check_same_run(last: Path, state: dict, model_cfg: GHVAEConfig, cfg: TrainConfig) -> None:
    """Exit with a one-line error if ``last`` was trained with another model config or recipe than this run asks
    for (other options, same --runs), instead of continuing or measuring the other model."""
    stored, stored_cfg = GHVAEConfig(**state["model_config"]), TrainConfig.from_checkpoint(state["train_config"])
    differ = [f"{k} {v} (asked {getattr(model_cfg, k)})" for k, v in vars(stored).items() if getattr(model_cfg, k) != v]
    differ += [f"{k} {getattr(stored_cfg, k)} (asked {getattr(cfg, k)})" for k in RECIPE
               if getattr(stored_cfg, k) != getattr(cfg, k)]
    if differ:
        raise SystemExit(f"fixed_beta: {last} was trained with {', '.join(differ)}: give another --runs folder")


def objective(point: dict, sigma_x: float) -> float:
    """Per-pixel (D + beta * R) / beta at a diagonal point, from measured bytes and PSNR (lower is better):
    D from the MSE that the PSNR averaged over the images stands for, R in nats from the file's bits."""
    mse = 10 ** (-point["psnr"] / 10)  # on [0, 1] pixels, per channel
    d = 3 * mse / (2 * sigma_x**2)
    return d / point["beta1"] + point["bpp"] * math.log(2)


def mean_curve(replicates: list[list[dict]]) -> list[dict]:
    """The points of one curve measured for several replicates of a model (the same betas in the same order),
    averaged point by point (bpp, per-layer bpp, PSNR, MS-SSIM); the curve itself for one replicate."""
    if len(replicates) == 1:
        return replicates[0]
    keys = [k for k, v in replicates[0][0].items() if isinstance(v, float) and k not in ("beta2", "beta1")]
    return [{"beta2": points[0]["beta2"], "beta1": points[0]["beta1"], "replicates": len(points),
             **{k: float(np.mean([p[k] for p in points])) for k in keys}} for points in zip(*replicates)]


def replicate_bd_rates(replicates: dict[str, list[list[dict]]], conditioned: list[str]) -> dict[str, float]:
    """BD-rates between single replicates, where a name was given more than once: each conditioned model's
    diagonal against each set of fixed-beta models (set i = the i-th model given for every fixed beta), and the
    fixed-beta sets against each other (how far two trainings of the same recipe lie apart)."""
    names = [f"fixed-{b:g}" for b in FIXED if f"fixed-{b:g}" in replicates]
    sets = [[replicates[n][i][0] for n in names] for i in range(min((len(replicates[n]) for n in names), default=0))]
    if len(sets) < 2 and not any(len(replicates[m]) > 1 for m in conditioned):
        return {}
    out = {f"fixed-beta set {j + 1} vs set {i + 1}": bd_rate(sets[i], sets[j])
           for i in range(len(sets)) for j in range(i + 1, len(sets))}
    if len(names) >= 2:
        for m in conditioned:
            for r, curve in enumerate(replicates[m]):
                for i, anchor in enumerate(sets):
                    out[f"{m} model {r + 1} at beta2 = beta1 vs fixed-beta set {i + 1}"] = bd_rate(anchor, curve)
    return out


def run(args, fixed_results: list[dict] | None = None) -> dict:
    """Train or load, measure and report; ``fixed_results``: earlier runs' results.json (--fixed-from, one or more:
    each gives one replicate of every model it holds and this run does not measure)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    images = dev_crops(args.crop)
    if args.model:  # measured, not trained here; a name given several times: replicates (e.g. seeds)
        checkpoints = {name: [Path(path) for path in paths] for name, paths in args.model.items()}
    else:
        checkpoints = {name: [train_model(name, NAMES[name], args)] for name in args.names
                       if not (args.fixed_from and name.startswith("fixed-"))}
    if args.train_only:
        return {"bd_rate_pct": {}}
    configs, steps, loss_norms = {}, {}, {}
    def diagonal_and_grid(config: GHVAEConfig) -> tuple[list, list]:  # over the model's own beta range
        lo, hi = config.beta_min, config.beta_max
        diagonal = [(b, b) for b in sorted(set(log_grid(args.diagonal, lo, hi)) | {b for b in FIXED if lo <= b <= hi})]
        return diagonal, [(b2, b1) for b2 in log_grid(args.grid, lo, hi) for b1 in log_grid(args.grid, lo, hi)]

    replicates: dict[str, list[list[dict]]] = {}  # curve name -> one curve per replicate
    for name, paths in checkpoints.items():
        for path in paths:
            state = load_checkpoint(path)
            model = model_from_state(state, str(path))
            loaded = LoadedModel(model, model_id(model), str(path))
            configs[name] = model.config
            steps.setdefault(name, []).append(state.get("step", 0))
            if "train_config" in state:  # exported weights carry none
                loss_norms.setdefault(name, []).append(TrainConfig.from_checkpoint(state["train_config"]).loss_norm)
            if name.startswith("fixed-"):
                b = float(name[len("fixed-"):])
                measured = {name: measure_ghvae(loaded, images, [(b, b)], name)}
            elif name == "points":  # trained at the FIXED points only: measured there
                measured = {name: measure_ghvae(loaded, images, [(b, b) for b in FIXED], f"{name} diagonal")}
            else:
                diagonal_betas, grid = diagonal_and_grid(model.config)
                measured = {name: measure_ghvae(loaded, images, diagonal_betas, f"{name} diagonal")}
                if name != "diagonal":
                    measured[f"{name}-grid"] = measure_ghvae(loaded, images, grid, f"{name} grid")
            for key, points in measured.items():
                replicates.setdefault(key, []).append(points)
    reused = []  # models measured by earlier runs (--fixed-from), not here: each run's mean is one replicate here
    for stored in fixed_results or []:
        arch = stored["config"]["model"]
        for key, points in stored["curves"].items():
            name = key.removesuffix("-grid")
            if name in checkpoints or name not in NAMES:
                continue
            replicates.setdefault(key, []).append(points)
            if key == name:
                if name not in reused:
                    reused.append(name)
                steps.setdefault(name, []).append(stored["config"].get("steps_trained", {}).get(name, 0))
                if name in stored["config"].get("loss_norm", {}):
                    loss_norms.setdefault(name, []).append(stored["config"]["loss_norm"][name])
                configs[name] = GHVAEConfig(**(arch[name] if isinstance(arch.get(name), dict) else arch))
    conditioned = [m for m in CONDITIONED if m in checkpoints or m in reused]
    curves = {key: mean_curve(reps) for key, reps in replicates.items()}
    hulls = {m: upper_hull(curves[f"{m}-grid"] + curves[m]) for m in conditioned if f"{m}-grid" in curves}
    fixed = [curves[f"fixed-{b:g}"][0] for b in FIXED if f"fixed-{b:g}" in curves]
    gaps, bd = {}, {}
    for model in conditioned:
        at = {p["beta1"]: p for p in curves[model]}
        sigma_x = configs[model].sigma_x
        gaps[model] = [{"beta": f["beta1"], "fixed_bpp": f["bpp"], "fixed_psnr": f["psnr"],
                        "bpp": at[f["beta1"]]["bpp"], "psnr": at[f["beta1"]]["psnr"],
                        "objective_gap_pct": 100 * (objective(at[f["beta1"]], sigma_x) / objective(f, sigma_x) - 1)}
                       for f in fixed if f["beta1"] in at]  # (not where --beta-range leaves the fixed beta out)
        if len(fixed) >= 2:
            bd[f"{model} model at beta2 = beta1 vs the fixed-beta models"] = bd_rate(fixed, curves[model])
    for m in conditioned:  # against the recipe of the shipped model (mix against diagonal: below)
        if m not in ("mix", "diagonal") and "mix" in curves:
            bd[f"{m} model at beta2 = beta1 vs the mix model"] = bd_rate(curves["mix"], curves[m])
    for m in hulls:
        if "diagonal" in curves:
            bd[f"{m} model at beta2 = beta1 vs the diagonal model"] = bd_rate(curves["diagonal"], curves[m])
        bd[f"{m} model's hull vs its own beta2 = beta1"] = bd_rate(curves[m], hulls[m])
        if "diagonal" in curves:
            bd[f"{m} model's hull vs the diagonal model"] = bd_rate(curves["diagonal"], hulls[m])
    archs = {name: c.to_dict() for name, c in configs.items()}
    arch = next(iter(archs.values())) if len({repr(a) for a in archs.values()}) == 1 else archs
    results = {"config": {**vars(args), "model": arch, "fixed": FIXED,
                          "steps_trained": {n: _one_or_all(v) for n, v in steps.items()},
                          "loss_norm": {n: _one_or_all(v) for n, v in loss_norms.items()},
                          "models": {n: "; ".join(map(str, ps)) for n, ps in (args.model or {}).items()},
                          "images": [n for n, _ in images], "reused": reused},
               "curves": curves, "hulls": hulls, "gaps": gaps, "bd_rate_pct": bd,
               "replicates_bd_rate_pct": replicate_bd_rates(replicates, [m for m in conditioned if m not in reused])}
    strip = json.loads(json.dumps(results, default=float))
    for points in strip["curves"].values():
        for p in points:
            p.pop("images", None)
    for points in strip["hulls"].values():
        for p in points:
            p.pop("images", None)
    (out / "results.json").write_text(json.dumps(strip, indent=1))
    plot(out, curves, hulls, fixed, conditioned)
    (out / "REPORT.md").write_text(report(strip))
    return strip


def _one_or_all(values: list):
    """A replicated model's setting: the one value when all replicates share it, else all of them."""
    return values[0] if len(set(values)) == 1 else "; ".join(map(str, values))


def plot(out: Path, curves: dict, hulls: dict, fixed: list[dict], conditioned: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for i, name in enumerate(conditioned):
        pts = sorted(curves[name], key=lambda p: p["bpp"])
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "o--", ms=3, c=f"C{i}",
                label=f"{name} model, beta2 = beta1")
        if name in hulls:
            ax.plot([p["bpp"] for p in hulls[name]], [p["psnr"] for p in hulls[name]], "-", c=f"C{i}", lw=1,
                    label=f"{name} model, hull of its grid")
    ax.plot([p["bpp"] for p in fixed], [p["psnr"] for p in fixed], "*", ms=12, c="C3",
            label="one model per fixed beta")
    ax.set_xlabel("bits per pixel (file bytes)")
    ax.set_ylabel("PSNR (dB, uint8)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fixed_beta.png", dpi=120)
    plt.close(fig)


def report(results: dict) -> str:
    cfg = results["config"]
    crops = f"centre crops of at most {cfg['crop']}^2" if cfg["crop"] else "whole"
    if cfg.get("models"):
        trained = ", ".join(f"{n} {cfg['steps_trained'][n]} steps ({p})" for n, p in cfg["models"].items())
        how = f"`python -m benchmarks.fixed_beta --model NAME=PATH ...`: models trained elsewhere: {trained}"
        title = "# Equal steps: beta-conditioned vs fixed-beta vs beta-VAE"
    else:
        how = (f"`python -m benchmarks.fixed_beta --steps {cfg['steps']}`: {cfg['steps']} steps of {cfg['batch']} x "
               f"{cfg['patch']}^2 crops for every model, lr {cfg['lr']:g}, seed {cfg['seed']}")
        title = "# Equal steps: beta-conditioned vs fixed-beta vs beta-VAE (small scale)"
    norms = ", ".join(f"{n} {v}" for n, v in cfg.get("loss_norm", {}).items())
    lines = [
        title, "",
        f"{how}; model {cfg['model']}; measured with real bytes on {len(cfg['images'])} dev-eval photos, {crops}.",
        "", *([f"{', '.join(cfg.get('reused', []))}: points as measured by earlier runs (`--fixed-from "
              f"{' --fixed-from '.join(cfg['fixed_from'])}`; each run's mean of its replicates, if it had any, is one "
              f"replicate here, in that order: fixed-beta set 1, 2, ... below).", ""]
              if cfg.get("reused") else []),
        *([f"Training loss normalisation (`--loss-norm`): {norms}.", ""] if norms else []),
        "![curves](fixed_beta.png)", "",
        "## BD-rate (%, negative = fewer bits at equal PSNR)", "",
        "| test vs anchor | BD-rate |", "|---|---|",
    ]
    lines += [f"| {k} | {_pct(v)} |" for k, v in results["bd_rate_pct"].items()]
    if results.get("replicates_bd_rate_pct"):
        lines += ["", "Where a model was given more than once (replicates, e.g. seeds, numbered in the order given), "
                  "the curves above and below are their point-by-point means; single replicates against each "
                  "other:", "", "| test vs anchor | BD-rate |", "|---|---|"]
        lines += [f"| {k} | {_pct(v)} |" for k, v in results["replicates_bd_rate_pct"].items()]
    lines += ["", "## At each fixed point", "",
              "Objective gap: per-pixel (D + beta R) / beta from the measured bytes and PSNR, conditioned model "
              "against the fixed-beta model at the same beta (positive = the conditioned model is worse).", "",
              "| model | beta2 = beta1 | fixed model bpp / PSNR | model bpp / PSNR | objective gap |",
              "|---|---|---|---|---|"]
    for model, rows in results["gaps"].items():
        lines += [f"| {model} | {g['beta']:g} | {g['fixed_bpp']:.3f} / {g['fixed_psnr']:.2f} | "
                  f"{g['bpp']:.3f} / {g['psnr']:.2f} | {g['objective_gap_pct']:+.1f} % |" for g in rows]
    lines += ["", "## Curves", "", "| model | beta2 | beta1 | bpp | bpp z2 | PSNR |", "|---|---|---|---|---|---|"]
    for name, points in results["curves"].items():
        if name.endswith("-grid"):
            continue
        for p in sorted(points, key=lambda p: p["bpp"]):
            lines.append(f"| {name} | {p['beta2']:g} | {p['beta1']:g} | {p['bpp']:.4f} | {p['bpp_z2']:.4f} | "
                         f"{p['psnr']:.2f} |")
    for name, hull in results["hulls"].items():
        lines += ["", f"Hull of the {name} model's grid (best split per total rate):", "",
                  "| beta2 | beta1 | bpp | bpp z2 | PSNR |", "|---|---|---|---|---|"]
        lines += [f"| {p['beta2']:g} | {p['beta1']:g} | {p['bpp']:.4f} | {p['bpp_z2']:.4f} | {p['psnr']:.2f} |"
                  for p in hull]
    return "\n".join(lines) + "\n"


def _pct(bd_rate_pct: float) -> str:
    """A BD-rate for the report: NaN (`bd_rate`'s answer for curves without a common PSNR range) said as such."""
    return "undefined (the PSNR ranges do not overlap)" if math.isnan(bd_rate_pct) else f"{bd_rate_pct:+.1f}"


TRAINING = ("data", "runs", "names", "steps", "batch", "patch", "lr", "lr_drop", "lr_drop_factor", "seed", "device",
            "fast", "eval_every", "loss_norm", "channels", "latent_bins", "cond_kernels", "beta_range", "bins_init",
            "bins_max", "beta_warmup", "z1_min_channels", "mask_synthesis", "decoder_gains",
            "bins_lr", "beta_per_batch", "paired_betas", "train_only")  # not for --model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # its first sentence
    parser.add_argument("--data", default="data/train")
    parser.add_argument("--out", default="benchmarks/results/fixed-beta")
    parser.add_argument("--runs", default="runs/fixed-beta",
                        help="folder for the models' checkpoints (one per model options and recipe)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--lr-drop", type=float, default=0.8,
                        help="fraction of --steps after which the learning rate is divided by --lr-drop-factor "
                        "(1 = never)")
    parser.add_argument("--lr-drop-factor", type=float, default=3.0,
                        help="the learning rate after the drop is this many times smaller (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop", type=int, default=256, help="side of the dev-photo centre crops")
    parser.add_argument("--diagonal", type=int, default=7, help="points on each conditioned model's diagonal")
    parser.add_argument("--grid", type=int, default=5, help="grid side for the square and mix hulls")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the models train (cpu or cuda); measured on the CPU")
    parser.add_argument("--fast", action="store_true",
                        help="train with bf16 autocast, channels_last and the step compiled as CUDA graphs (a GPU's "
                        "speed-ups, as in benchmarks/device_run.sh)")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="steps between the dev evaluations and checkpoints of the models trained here (default "
                        "half of --steps); a run stopped early keeps its last one")
    parser.add_argument("--loss-norm", default="none", choices=LOSS_NORMS,
                        help="TrainConfig.loss_norm of the models trained here")
    parser.add_argument("--channels", type=int, default=SMALL.n, metavar="N",
                        help=f"channels of the transforms of the models trained here (GHVAEConfig.n, default "
                        f"{SMALL.n}; the latents keep z1 {SMALL.z1_channels}, z2 {SMALL.z2_channels})")
    parser.add_argument("--latent-bins", action="store_true",
                        help="models trained here learn a bin width per latent channel and beta (GHVAEConfig)")
    parser.add_argument("--cond-kernels", type=int, default=0, metavar="K",
                        help="conditioned models trained here add K beta-routed kernels to each conv of g_a and g_s "
                        "(GHVAEConfig.cond_kernels, CondConv)")
    parser.add_argument("--bins-init", choices=BINS_INITS, default="zero",
                        help="with --latent-bins: how the conditioned models' bin widths start (sqrt-beta: at the "
                        "square root of their layer's beta; TrainConfig.bins_init)")
    parser.add_argument("--bins-max", type=float, default=0.0, metavar="WIDTH",
                        help="with --latent-bins: cap the conditioned models' bin widths at WIDTH "
                             "(GHVAEConfig.bins_max; default 0, no cap)")
    parser.add_argument("--beta-warmup", type=int, default=0, metavar="STEPS",
                        help="the conditioned models' betas open from the high-rate corner to the whole square over "
                             "this many steps (TrainConfig.beta_warmup; default 0, the whole square at once)")
    parser.add_argument("--beta-per-batch", action="store_true",
                        help="the conditioned models draw one (beta2, beta1) per batch instead of one per image "
                             "(TrainConfig.beta_per_batch)")
    parser.add_argument("--paired-betas", action="store_true",
                        help="the conditioned models see each crop twice per batch, at two draws of (beta2, beta1) "
                             "(TrainConfig.paired_betas)")
    parser.add_argument("--z1-min-channels", type=int, default=0, metavar="K",
                        help=f"the conditioned models use only the first K of their {SMALL.z1_channels} z1 channels at "
                             "the top beta1, more as beta1 falls, all at the bottom (GHVAEConfig.z1_min_channels; "
                             "default 0, all at every beta)")
    parser.add_argument("--mask-synthesis", action="store_true",
                        help="with --z1-min-channels: the synthesis reads 0 for the z1 channels not in use "
                             "(GHVAEConfig.mask_synthesis)")
    parser.add_argument("--bins-lr", type=float, default=0.0, metavar="LR",
                        help="with --latent-bins: the conditioned models' learning rate of the bin widths "
                             "(TrainConfig.bins_lr; default 0, the --lr)")
    parser.add_argument("--decoder-gains", action="store_true",
                        help="the conditioned models' decoders learn a gain per latent channel and beta "
                             "(GHVAEConfig.decoder_gains)")
    parser.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                        help="every model trained here keeps an average of its weights (TrainConfig.ema) and is "
                             "measured with it")
    parser.add_argument("--beta-range", metavar="MIN,MAX",
                        help="the square the conditioned models train on (default the model's [0.1, 10])")
    parser.add_argument("--names", default=",".join(DEFAULT_NAMES),
                        help=f"comma-separated models to train and measure, from {','.join(NAMES)} (default "
                        f"{','.join(DEFAULT_NAMES)})")
    parser.add_argument("--fixed-from", metavar="RESULTS.json", action="append",
                        help="take the fixed-beta points, and the curves of conditioned models not measured here, from "
                        "an earlier run's results.json (same --crop) instead of training or measuring them; repeat "
                        "for replicates (e.g. one run per seed), whose curves are averaged")
    parser.add_argument("--train-only", action="store_true", help="train the --names models, measure nothing")
    parser.add_argument("--quick", action="store_true", help="a few steps and points: checks the pipeline only")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (each evaluation's dev-score line is still printed)")
    parser.add_argument("--model", action="append", metavar="NAME=PATH",
                        help=f"measure this model instead of training (repeat; NAME one of {', '.join(NAMES)}; "
                        "a NAME given several times: replicates, e.g. seeds, whose curves are averaged)")
    args = parser.parse_args(argv)
    if args.cond_kernels < 0:
        parser.error(f"--cond-kernels must be >= 0, not {args.cond_kernels}")
    if args.channels < 1:
        parser.error(f"--channels must be >= 1, not {args.channels}")
    if not 0 < args.lr_drop <= 1:
        parser.error(f"--lr-drop must lie in (0, 1], not {args.lr_drop}")
    if args.lr_drop_factor < 1:
        parser.error(f"--lr-drop-factor must be >= 1, not {args.lr_drop_factor}")
    if args.eval_every < 0:
        parser.error(f"--eval-every must be >= 0, not {args.eval_every}")
    if args.bins_init != "zero" and not args.latent_bins:
        parser.error(f"--bins-init {args.bins_init} needs --latent-bins")
    if args.bins_max and not (args.latent_bins and args.bins_max > 0 and math.isfinite(args.bins_max)):
        parser.error(f"--bins-max must be a width > 0 and needs --latent-bins, not {args.bins_max}")
    if not 0 <= args.z1_min_channels <= SMALL.z1_channels:
        parser.error(f"--z1-min-channels must lie in [0, {SMALL.z1_channels}], not {args.z1_min_channels}")
    if args.mask_synthesis and not args.z1_min_channels:
        parser.error("--mask-synthesis needs --z1-min-channels")
    if args.bins_lr and not (args.latent_bins and args.bins_lr > 0 and math.isfinite(args.bins_lr)):
        parser.error(f"--bins-lr must be a learning rate > 0 and needs --latent-bins, not {args.bins_lr}")
    if args.beta_warmup < 0:
        parser.error(f"--beta-warmup must be >= 0, not {args.beta_warmup}")
    if args.model:
        trained_only = [f"--{d.replace('_', '-')}" for d in TRAINING if getattr(args, d) != parser.get_default(d)]
        if trained_only:
            parser.error(f"{', '.join(trained_only)}: only for models trained here, not for those given with --model")
        models: dict[str, list[str]] = {}
        for m in args.model:
            name, _, path = m.partition("=")
            models.setdefault(name, []).append(path)
        bad = [f"{n}={p}" for n, paths in models.items() for p in paths if n not in NAMES or not Path(p).is_file()]
        if bad:
            parser.error(f"--model needs NAME=PATH with NAME one of {', '.join(NAMES)} and an existing file: {bad}")
        for name, paths in models.items():  # each loads, before any measuring
            for path in paths:
                try:
                    model_from_state(load_checkpoint(path), path)
                except (ValueError, OSError) as exc:
                    parser.error(f"--model {name}={path}: {exc}")
        args.model = models
    output_folder(parser, args.out)
    output_folder(parser, args.runs, "--runs")
    if args.beta_range:
        try:
            args.beta_range = parse_beta_range(args.beta_range)
        except ValueError as e:
            parser.error(f"--beta-range: {e}")
    args.names = [n for n in args.names.split(",") if n]
    unknown = [n for n in args.names if n not in NAMES]
    if unknown or not args.names:
        parser.error(f"--names takes models from {', '.join(NAMES)}, not {unknown or 'nothing'}")
    if args.quick:
        args.steps, args.crop, args.diagonal, args.grid, args.patch = 8, 64, 3, 2, 64
    stored, betas_of = [], {}  # the runs, and the betas of each curve in the first run that has it
    for path in args.fixed_from or []:
        try:
            stored.append(json.loads(Path(path).read_text()))
            crop, fixed = stored[-1]["config"]["crop"], [n for n in stored[-1]["curves"] if n.startswith("fixed-")]
            betas = {key: [(p["beta2"], p["beta1"]) for p in points] for key, points in stored[-1]["curves"].items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            parser.error(f"--fixed-from: not the results.json of a fixed_beta run: {path} ({e})")
        if not fixed or crop != args.crop:
            parser.error(f"--fixed-from: {path} has {len(fixed)} fixed-beta points measured on crops of "
                         f"{crop}, this run measures on crops of {args.crop}")
        differ = [key for key, b in betas.items() if betas_of.setdefault(key, b) != b]
        if differ:  # replicates are averaged point by point
            parser.error(f"--fixed-from: {path} measured {', '.join(differ)} at other betas than a run before it")
    results = run(args, stored)
    for k, v in results["bd_rate_pct"].items():
        print(f"{k}: {_pct(v)}{'' if math.isnan(v) else ' %'}")


if __name__ == "__main__":
    main()
