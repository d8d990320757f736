"""Training of the beta-conditioned GHVAE: one model for every (beta2, beta1) in its square, [0.1, 10]^2 by default.

Each image in a batch gets its own beta2 and beta1, log-uniform over the square [0.1, 10]^2 or, with equal odds,
its z2-heavy corner ("mix", the default; see `sample_betas` for the other modes, e.g. the diagonal only for the
conventional beta-VAE baseline). Checkpoints carry their
own config, so ``hitcodec train --resume CKPT`` needs no other flags; the best checkpoint is chosen by the
dev-eval rate/distortion objective, not by the training loss.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from hitcodec.data import list_images, load_rgb_uint8
from hitcodec.models.ghvae import (BETA_MAX, BETA_MIN, GHVAE, LOSS_NORMS, GHVAEConfig, ghvae_loss, init_bins_sqrt_beta,
                                   pad_to_stride)
from hitcodec.weights import load_state, model_from_state

log = logging.getLogger(__name__)

# (beta2, beta1) points at which dev-eval rate/distortion is tracked while training
DEV_BETAS = ((0.2, 0.2), (1.0, 1.0), (5.0, 5.0), (2.0, 0.5), (0.5, 2.0))


BINS_INITS = ("zero", "sqrt-beta")  # how a new model's learned bin widths start (TrainConfig.bins_init)


@dataclass(frozen=True)
class TrainConfig:
    data: str  # folder of training images (searched recursively)
    out: str  # folder for checkpoints (last.pt, best.pt) and the log
    patch: int = 192  # side of the square training crops (a multiple of 64)
    batch: int = 8  # crops per step
    lr: float = 2e-4  # Adam learning rate
    lr_drop: float = 0.75  # after this fraction of the run (of --minutes, else of its steps) the lr is divided by
    # lr_drop_factor; a run resumed with the same --steps (interrupted, then continued) keeps its schedule; other
    # resumes start anew
    lr_drop_factor: float = 3.0  # the lr (and bins_lr) after the drop is this many times smaller
    steps: int = 1_000_000  # stop after this many steps in total (across resumes)
    minutes: float = 0.0  # wall-clock budget of this run in minutes; 0 = no budget
    z2_warmup: int = 1500  # steps over which the weight of R(z2) in the loss ramps from 0 to 1 (against collapse)
    betas: str = "mix"  # "mix": half square, half corner (keeps z2 alive); "square": beta2, beta1 independent;
    # "diagonal": beta2 = beta1 (conventional beta-VAE); "z2-heavy": only the corner where z2 is cheap;
    # "mix-diagonal": a third each from the square, the corner and the diagonal
    eval_every: int = 500  # steps between dev-eval runs (and checkpoints)
    dev: str = ""  # folder of dev-eval images; "" = the bundled scikit-image/scikit-learn/matplotlib photos
    dev_max_side: int = 512  # dev images are center-cropped to at most this side, for speed
    min_scale: float = 0.5  # random rescaling of crops by a factor in [min_scale, 1]
    device: str = "cpu"  # "cpu" or "cuda"; under torchrun each process takes cuda:LOCAL_RANK
    amp: bool = False  # bf16 autocast of the transforms (the rates stay in fp32)
    channels_last: bool = False  # NHWC memory layout for the convolutions
    compile: bool = False  # torch.compile the model's training pass
    compile_mode: str = "default"  # torch.compile's mode: "reduce-overhead" also replays the step as CUDA graphs
    seed: int = 0
    beta_range: tuple[float, float] | None = None  # set the model's beta square (e.g. widen it); None keeps it
    latent_bins: bool = False  # give a model without them learned bin widths (GHVAEConfig.latent_bins; they start
    # as the identity, so a trained model continues from what it computes); False keeps the model's own
    loss_norm: str = "none"  # "none": the shared network sees each image's D + beta2 R2 + beta1 R1 as it is;
    # "sqrt-beta": divided by sqrt(beta2 beta1), which weights the low-beta corner far more; "root8-beta": by
    # (beta2 beta1)^(1/8), about as the objective grows with beta; "times-root8-beta": times (beta2 beta1)^(1/8), which
    # weights the high-beta end more. All three did worse than "none" at small scale (docs/training.md)
    bins_lr: float = 0.0  # learning rate of the bin widths; 0 = lr. Added to a trained model, they start at the
    # identity and have far to go while the rest should move little (e.g. --lr 2e-5 --bins-lr 5e-4)
    lr_warmup: int = 0  # steps over which a fresh Adam's learning rates ramp up from 0 (its first steps move every
    # parameter by about lr); a run that loads Adam's state has none
    beta_warmup: int = 0  # steps over which the sampled betas open from the square's high-rate corner (beta_min,
    # beta_min) to the whole square (`open_betas`); 0 = the whole square at once. At small scale every z1 channel was
    # in use at the end of the warm-up, but most were lost later, and the model was worse (docs/equal-steps.md)
    beta_per_batch: bool = False  # one (beta2, beta1) draw for the whole batch instead of one per image (a diagnostic
    # of whether mixing betas within a batch holds the conditioned model back; docs/equal-steps.md)
    paired_betas: bool = False  # each crop twice in the batch, at two independent draws of (beta2, beta1) (half as
    # many crops; a diagnostic of whether seeing one image at two rates makes the transforms depend on beta)
    bins_init: str = "zero"  # a new model's bin widths start at Δ = 1 ("zero") or at Δ ≈ sqrt(beta) of their layer's
    # multiplier ("sqrt-beta", `init_bins_sqrt_beta`; worse at every beta at small scale, docs/equal-steps.md)
    ema: float = 0.0  # > 0: also keep an exponential moving average of the weights with this decay per step (e.g.
    # 0.99); dev-eval, best.pt and export then use the average, and checkpoints keep the trained weights beside it

    def __post_init__(self):
        if self.loss_norm not in LOSS_NORMS:
            raise ValueError(f"loss_norm must be one of {', '.join(LOSS_NORMS)}, not {self.loss_norm!r}")
        if not self.lr_drop_factor >= 1:
            raise ValueError(f"lr_drop_factor must be >= 1, not {self.lr_drop_factor}")
        if self.paired_betas and (self.batch % 2 or self.beta_per_batch):
            raise ValueError("paired_betas needs an even batch and one draw per image (not beta_per_batch)")
        if not (isinstance(self.beta_warmup, int) and self.beta_warmup >= 0):
            raise ValueError(f"beta_warmup must be a whole number >= 0, not {self.beta_warmup!r}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be a decay in [0, 1), not {self.ema}")
        if self.bins_init not in BINS_INITS:
            raise ValueError(f"bins_init must be one of {', '.join(BINS_INITS)}, not {self.bins_init!r}")

    @classmethod
    def from_checkpoint(cls, stored: dict) -> "TrainConfig":
        """The config stored in a checkpoint. Those written before ``loss_norm`` existed trained with "sqrt-beta",
        and keep it when resumed. A value of the wrong type (a foreign or edited file) is a ValueError."""
        defaults = {f.name: "" if f.default is MISSING else f.default for f in fields(cls)}
        for name, value in stored.items():
            default = defaults.get(name)
            kinds = ((bool,) if isinstance(default, bool) else (int,) if isinstance(default, int) else
                     (int, float) if isinstance(default, float) else (str,) if isinstance(default, str) else None)
            if kinds and (not isinstance(value, kinds) or isinstance(value, bool) != isinstance(default, bool)):
                raise ValueError(f"its {name} is {value!r}, not of type {kinds[-1].__name__}")
        return cls(**{"loss_norm": "sqrt-beta", **stored})

    def model_config(self, model_cfg: GHVAEConfig) -> GHVAEConfig:
        """``model_cfg`` as this run trains it: with its beta square (which the model then accepts; the weights are
        unchanged) and, if asked, learned bin widths."""
        if self.beta_range:
            model_cfg = replace(model_cfg, beta_min=float(self.beta_range[0]), beta_max=float(self.beta_range[1]))
        if self.latent_bins and not model_cfg.latent_bins:
            model_cfg = replace(model_cfg, latent_bins=True)
        return model_cfg


class PatchSampler:
    """Random crops, rescaling and flips from a folder of images held in memory (CPU or GPU) as uint8."""

    def __init__(self, folder: str, patch: int, min_scale: float, seed: int, device: str = "cpu"):
        paths = list_images(Path(folder))
        self.device = torch.device(device)  # the photos live there (uint8), so crops never cross the bus
        self.images = []
        for path in paths:
            try:
                self.images.append(torch.from_numpy(load_rgb_uint8(path)).permute(2, 0, 1).contiguous().to(self.device))
            except ValueError as exc:  # one broken photo does not stop a run
                log.warning("%s: skipped", exc)
        loaded = len(self.images)
        self.images = [im for im in self.images if min(im.shape[1:]) >= patch]
        if not self.images:
            raise ValueError(f"no training images of at least {patch}x{patch} pixels in {folder}")
        if len(self.images) < loaded:
            log.warning("%d of %d training images are smaller than the %d-px crops and are not used",
                        loaded - len(self.images), loaded, patch)
        areas = np.array([im.shape[1] * im.shape[2] for im in self.images], dtype=np.float64)
        self.weights = np.sqrt(areas) / np.sqrt(areas).sum()  # favour big photos, keep small ones in play
        self.patch, self.min_scale = patch, min_scale
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int) -> torch.Tensor:
        """(batch, 3, patch, patch) float in [0, 1]."""
        out = torch.empty(batch, 3, self.patch, self.patch, device=self.device)
        for i in range(batch):
            im = self.images[self.rng.choice(len(self.images), p=self.weights)]
            h, w = im.shape[1:]
            largest = min(h, w) / self.patch  # the crop may cover at most the short side
            scale = self.rng.uniform(self.min_scale, 1.0) if largest >= 1 / self.min_scale else 1.0
            side = min(int(round(self.patch / scale)), min(h, w))
            top, left = self.rng.integers(0, h - side + 1), self.rng.integers(0, w - side + 1)
            crop = im[:, top:top + side, left:left + side].float()[None] / 255
            if side != self.patch:
                crop = F.interpolate(crop, size=(self.patch, self.patch), mode="bilinear", antialias=True,
                                     align_corners=False).clamp(0, 1)
            if self.rng.random() < 0.5:
                crop = crop.flip(-1)
            out[i] = crop[0]
        return out


BETA_MODES = ("square", "diagonal", "z2-heavy", "mix", "mix-diagonal", "fixed:BETA2,BETA1",
              "points:BETA2,BETA1/BETA2,BETA1/...")


def parse_beta_range(text: str) -> tuple[float, float]:
    """(MIN, MAX) from "MIN,MAX" (``--beta-range``); raises ValueError unless 0 < MIN < MAX, both finite."""
    try:
        lo, hi = (float(v) for v in text.split(","))
        GHVAEConfig(beta_min=lo, beta_max=hi)  # checks 0 < MIN < MAX, finite
    except ValueError:
        raise ValueError(f"expected MIN,MAX with 0 < MIN < MAX, both float32 normal numbers (1.2e-38 to 3.4e38), "
                         f"not {text!r}") from None
    return lo, hi


def parse_beta_points(mode: str, beta_range: tuple[float, float] = (BETA_MIN, BETA_MAX)
                      ) -> list[tuple[float, float]] | None:
    """The (beta2, beta1) points of a "fixed:BETA2,BETA1" mode (one model per point, the equal-steps reference) or
    of a "points:BETA2,BETA1/BETA2,BETA1/..." mode (one model for a few points, each image at one of them with
    equal odds); None for the sampled modes. Raises ValueError for a malformed mode, a "points:" mode with fewer
    than two distinct points, or a point outside the square ``beta_range``^2."""
    kind, colon, text = mode.partition(":")
    if kind not in ("fixed", "points") or not colon:
        return None
    form = "fixed:BETA2,BETA1" if kind == "fixed" else "points:BETA2,BETA1/BETA2,BETA1/..."
    try:
        points = [tuple(float(v) for v in item.split(",")) for item in text.split("/")]
        if any(len(p) != 2 or not all(map(math.isfinite, p)) for p in points):
            raise ValueError
    except ValueError:
        raise ValueError(f"{kind} betas must read {form}, not {mode!r}") from None
    if (kind == "fixed") != (len(points) == 1) or len(set(points)) != len(points):
        raise ValueError(f"{kind} betas must read {form} (distinct points), not {mode!r}")
    lo, hi = beta_range
    if not all(lo <= b <= hi for p in points for b in p):
        raise ValueError(f"{kind} betas must lie in [{lo:g}, {hi:g}], not {mode!r}")
    return points


def sample_betas(batch: int, mode: str, generator: torch.Generator,
                 beta_range: tuple[float, float] = (BETA_MIN, BETA_MAX)) -> tuple[torch.Tensor, torch.Tensor]:
    """(beta2, beta1), log-uniform over the square ``beta_range``^2 (default [0.1, 10]^2): over the square, on its
    diagonal, in the z2-heavy corner (beta2 within 5x of the low end, beta1 within 5x of the high end: for the
    default square beta2 in [0.1, 0.5], beta1 in [2, 10], where bits in z1 cost 4-100x more than in z2), or "mix":
    each image from the square or the corner with equal odds (uniform sampling alone lets z2 collapse; see
    README), or "mix-diagonal": a third each from the square, the corner and the diagonal (more of the diagonal,
    where the rate/distortion curve is measured, with the corner still keeping z2 alive); or one point,
    "fixed:BETA2,BETA1" (a conventional single-rate model, for comparison), or a few points,
    "points:BETA2,BETA1/BETA2,BETA1/..." (each image at one of them with equal odds)."""
    points = parse_beta_points(mode, beta_range)
    if points is not None and len(points) == 1:
        return torch.full((batch,), points[0][0]), torch.full((batch,), points[0][1])
    if points is not None:  # each image at one of them
        pick = torch.randint(len(points), (batch,), generator=generator)
        return torch.tensor(points, dtype=torch.float32)[pick].unbind(1)
    if mode not in BETA_MODES:
        raise ValueError(f"betas must be one of {BETA_MODES}, not {mode!r}")
    lo, hi = math.log(beta_range[0]), math.log(beta_range[1])
    u = torch.rand(batch, 2, generator=generator)
    square = u * (hi - lo) + lo
    corner = torch.stack([u[:, 0] * math.log(5) + lo, hi - u[:, 1] * math.log(5)], dim=1)
    if mode == "z2-heavy":
        square = corner
    elif mode == "mix":
        square = torch.where(torch.rand(batch, 1, generator=generator) < 0.5, corner, square)
    elif mode == "mix-diagonal":
        pick = torch.rand(batch, 1, generator=generator)
        square = torch.where(pick < 1 / 3, corner, torch.where(pick < 2 / 3, square[:, :1].expand(-1, 2), square))
    elif mode == "diagonal":
        square[:, 1] = square[:, 0]
    return square[:, 0].exp(), square[:, 1].exp()


def open_betas(beta2: torch.Tensor, beta1: torch.Tensor, fraction: float,
               beta_range: tuple[float, float] = (BETA_MIN, BETA_MAX)) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled betas drawn towards the square's high-rate corner (beta_min, beta_min): ln beta moves to
    ln beta_min + ``fraction`` (ln beta - ln beta_min), so 0 puts every image at beta_min and 1 leaves the betas as
    sampled (``TrainConfig.beta_warmup`` opens the square so, step by step). The same distribution, shrunk."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    lo = math.log(beta_range[0])
    return tuple(torch.exp(lo + (b.log() - lo) * fraction) for b in (beta2, beta1))


DEV_PHOTOS = 8  # `hitcodec.data.dev_eval_photos` with all three packages installed


def load_dev_images(cfg: TrainConfig) -> list[torch.Tensor]:
    from hitcodec.data import dev_eval_photos

    paths = list_images(Path(cfg.dev)) if cfg.dev else dev_eval_photos()
    if not paths:  # (checked before any step: the first evaluation would divide by zero after eval_every steps)
        raise ValueError(f"no images in the dev folder {cfg.dev}" if cfg.dev else "no dev-eval photos, which "
                         "training needs: they come with scikit-image, scikit-learn and matplotlib (pip install "
                         "'hitcodec[bench]')")
    if not cfg.dev and len(paths) < DEV_PHOTOS:
        log.warning("dev-eval on %d of the %d bundled photos (pip install 'hitcodec[bench]' for all): its scores "
                    "are not comparable with those of docs/training.md", len(paths), DEV_PHOTOS)
    images = []
    for p in paths:
        x = torch.from_numpy(load_rgb_uint8(p)).permute(2, 0, 1).float() / 255
        h, w = x.shape[1:]
        s = cfg.dev_max_side
        top, left = max(0, (h - s) // 2), max(0, (w - s) // 2)
        images.append(x[:, top:top + s, left:left + s].contiguous())
    return images


# how dev_eval's "score" (which chooses best.pt) is formed; stored in checkpoints with their best score
SCORE_KIND = "geometric-mean"


@torch.no_grad()
def dev_eval(model: GHVAE, images: list[torch.Tensor], device: str) -> dict:
    """Estimated rate (rounded latents under the priors) and uint8 PSNR at DEV_BETAS (each beta clamped to the
    model's square), averaged over images.

    Each point's ``objective`` is (D + beta2 R2 + beta1 R1) / sqrt(beta2 beta1) per pixel, averaged over images.
    ``score`` (lower is better; it chooses best.pt) is their geometric mean, so that 1 % less objective counts
    the same at every point: it rewards the whole rate/distortion trade-off rather than one point.
    ``score_mean`` is their arithmetic mean, the score logged up to 2026-11-26 (SCORE_KIND "mean"), in which
    (0.2, 0.2), the largest objective, weighs about half.
    """
    was_training = model.training
    model.eval()
    points = []
    lo, hi = model.config.beta_min, model.config.beta_max  # a model trained on a narrower square: its corners,
    for beta2, beta1 in ((min(max(b, lo), hi) for b in point) for point in DEV_BETAS):  # not extrapolated
        bpp = bpp_z2 = psnr = obj = 0.0
        for x in images:
            x = x[None].to(device)
            h, w = x.shape[2:]
            b2, b1 = torch.tensor([beta2], device=device), torch.tensor([beta1], device=device)
            xp = pad_to_stride(x)
            out = model(xp, b2, b1)
            x_hat = out["x_hat"][:, :, :h, :w].clamp(0, 1)
            x8, xh8 = (x * 255).round(), (x_hat * 255).round()
            mse = ((x8 - xh8) ** 2).mean().item()
            psnr += 10 * math.log10(255**2 / max(mse, 1e-10))
            r2, r1 = out["rate_z2"].item(), out["rate_z1"].item()
            bpp += (r2 + r1) / math.log(2) / (h * w)
            bpp_z2 += r2 / math.log(2) / (h * w)
            d = ((x - x_hat) ** 2).sum().item() / (2 * model.config.sigma_x**2)
            obj += (d + beta2 * r2 + beta1 * r1) / math.sqrt(beta2 * beta1) / (h * w)
        n = len(images)
        points.append({"beta2": beta2, "beta1": beta1, "bpp": bpp / n, "bpp_z2": bpp_z2 / n, "psnr": psnr / n,
                       "objective": obj / n})
    model.train(was_training)
    objectives = [p["objective"] for p in points]
    return {"points": points, "score": math.exp(sum(map(math.log, objectives)) / len(objectives)),
            "score_mean": sum(objectives) / len(objectives)}


def _continued(state: dict, model_cfg: GHVAEConfig, source: str) -> GHVAE:
    """The model of a checkpoint or weights file under ``model_cfg``: its own config, with another beta square or
    newly added bin widths, which start as the identity (Δ = 1), so the model computes what it computed."""
    stored = model_from_state(state, source)
    model = GHVAE(model_cfg)
    missing, unexpected = model.load_state_dict(stored.state_dict(), strict=False)
    if unexpected or any(not k.startswith("bins_") for k in missing):
        raise ValueError(f"{source} does not fit {model_cfg}")
    return model


def _trained_weights(state: dict) -> dict:
    """The weights training continues from: a checkpoint of a run with ``ema`` keeps them as "train_model" (its
    "model", which the codec, export and dev-eval read, is their average)."""
    return {**state, "model": state["train_model"]} if "train_model" in state else state


def _weight_average(model: GHVAE, cfg: TrainConfig, state: dict | None, source: str | None) -> AveragedModel | None:
    """The exponential moving average of ``model``'s weights that a run with ``ema`` keeps (torch's AveragedModel),
    continuing the checkpoint's own average where it has one; None without ``ema``."""
    if not cfg.ema:
        return None
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema))
    if state is not None and "train_model" in state:
        with torch.random.fork_rng(devices=[]):  # a model built to load into: the run's random draws stay as they are
            averaged.module.load_state_dict(_continued(state, model.config, source).state_dict())
        averaged.n_averaged.fill_(1)  # an average already: the next update blends, it does not copy
    return averaged


def _optimizer(model: GHVAE, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam over the model's parameters: a model with bin widths has them in a second group (``bins_lr``)."""
    bins = [p for name, p in model.named_parameters() if name.startswith("bins_")]
    rest = [p for name, p in model.named_parameters() if not name.startswith("bins_")]
    opt = torch.optim.Adam([{"params": rest}] + ([{"params": bins}] if bins else []), lr=cfg.lr)
    _set_lr(opt, cfg, dropped=False)
    return opt


def _set_lr(opt: torch.optim.Optimizer, cfg: TrainConfig, dropped: bool, warm: float = 1.0) -> None:
    """This run's learning rates (``lr``, and ``bins_lr`` for the bin widths), divided by ``lr_drop_factor`` once
    dropped and multiplied by ``warm`` (the warm-up's fraction)."""
    drop = cfg.lr_drop_factor if dropped else 1.0
    for i, group in enumerate(opt.param_groups):
        group["lr"] = (cfg.bins_lr if i == 1 and cfg.bins_lr > 0 else cfg.lr) / drop * warm


def _stored_best(path: Path) -> float:
    """The dev score that the checkpoint best.pt at ``path`` was saved with (inf if unknown or of another kind)."""
    try:
        state = load_checkpoint(path)
    except ValueError:  # not readable: the next evaluation replaces it
        return math.inf
    return float(state.get("best_score", math.inf)) if state.get("score_kind", "mean") == SCORE_KIND else math.inf


def _score_of(path: Path, images: list[torch.Tensor], device: str) -> float:
    """dev_eval's score of the model in the checkpoint at ``path``."""
    return dev_eval(model_from_state(load_checkpoint(path), str(path)).to(device), images, device)["score"]


class TrainingDiverged(RuntimeError):
    """The dev score became nan or inf: the run stops without overwriting its checkpoints."""


def _save(path: Path, state: dict | Path | bytes) -> None:
    """torch.save ``state`` (or copy the file ``state``, or write the bytes) to a temporary file and rename it:
    ``path`` is the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if isinstance(state, Path):
            shutil.copyfile(state, tmp)
        elif isinstance(state, bytes):
            tmp.write_bytes(state)
        else:
            with open(tmp, "wb") as f:  # (a path would go to torch's own writer, whose errors name no file)
                torch.save(state, f)
        os.replace(tmp, path)
    except OSError as exc:  # the checkpoint's name, not the temporary file's (disk full, folder not writable)
        if exc.filename not in (str(tmp), None):
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    finally:
        with contextlib.suppress(OSError):  # (where the folder is not one, unlink fails too)
            tmp.unlink()


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """A training checkpoint or exported weights file; ValueError if it is neither."""
    return load_state(path, "checkpoint", map_location)


def _distributed(cfg: TrainConfig) -> tuple[int, int, str]:
    """(rank, world size, device); starts the process group when launched by torchrun with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, cfg.device
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local_rank}" if cfg.device.startswith("cuda") else cfg.device
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), world, device


def prepare_model(model: GHVAE, cfg: TrainConfig, world: int = 1) -> torch.nn.Module:
    """The module the training loop calls: ``model`` in NHWC layout, wrapped in DistributedDataParallel and
    compiled, each as ``cfg`` and the world size ask. Parameters are shared: checkpoints are taken from ``model``."""
    net: torch.nn.Module = model
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(net, mode=cfg.compile_mode) if cfg.compile else net


def to_device(tensors: tuple[torch.Tensor, ...], device: str | torch.device) -> tuple[torch.Tensor, ...]:
    """CPU tensors (the sampled betas) onto the device. On CUDA through pinned memory without blocking: a plain
    copy from pageable memory waits for the GPU to finish all queued work, once per tensor and step."""
    if torch.device(device).type != "cuda":
        return tuple(t.to(device) for t in tensors)
    return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)


def training_step(net: torch.nn.Module, model: GHVAE, opt: torch.optim.Optimizer, x: torch.Tensor,
                  beta2: torch.Tensor, beta1: torch.Tensor, cfg: TrainConfig, z2_weight: float = 1.0):
    """One optimiser step on the batch x (already on the device); returns the model output and the losses."""
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
        out = net(x, beta2, beta1)
    losses = ghvae_loss(out, x, beta2, beta1, model.config.sigma_x, z2_weight, cfg.loss_norm)
    opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return out, losses


def train(cfg: TrainConfig, resume: str | None = None, progress: bool = True,
          model_config: GHVAEConfig | None = None) -> dict:
    """Train (or continue training) and return the last dev-eval result.

    A new run uses ``model_config`` (default: GHVAEConfig()); a resumed one the config stored in its checkpoint.
    ``resume`` may also be an exported weights file (`export_weights`, e.g. brought back from a GPU machine): its
    weights and step count are taken, with a fresh optimiser, log and best score.
    Under ``torchrun --nproc_per_node N`` it trains with DistributedDataParallel: each process draws its own
    crops (``batch`` per process), and process 0 alone evaluates and writes checkpoints.
    """
    rank, world, device = _distributed(cfg)
    out_dir = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model_cfg = model_config or GHVAEConfig()
    state = None
    if resume:
        state = load_checkpoint(resume)
        model_cfg = GHVAEConfig(**state["model_config"])
    model_cfg = cfg.model_config(model_cfg)
    beta_range = (model_cfg.beta_min, model_cfg.beta_max)
    at_points = parse_beta_points(cfg.betas, beta_range) is not None  # checked once, before anything is written
    model = GHVAE(model_cfg) if state is None else _continued(_trained_weights(state), model_cfg, resume)
    if state is None and cfg.bins_init == "sqrt-beta":
        if not model_cfg.latent_bins:
            raise ValueError("bins_init sqrt-beta needs a model with learned bin widths (latent_bins)")
        log.info("bin widths start at sqrt(beta): largest fit error %.3f in ln(width)", init_bins_sqrt_beta(model))
    model = model.to(device)
    opt = _optimizer(model, cfg)
    step, best, history, rescore, warmup, carried, carried_from = 0, math.inf, [], None, cfg.lr_warmup, None, None
    run_start = 0  # the step this run's learning-rate schedule (--lr-drop of --steps) counts from
    if state is not None:
        step = run_start = state.get("step", 0)
        if "optimizer" in state:  # a full checkpoint; an exported weights file starts a fresh Adam and log
            if len(state["optimizer"]["param_groups"]) != len(opt.param_groups):  # new bin widths, or written
                log.info("the checkpoint's Adam state does not fit the parameters: a fresh Adam")  # before bins_lr
            else:
                opt.load_state_dict(state["optimizer"])  # its stored lrs: the loop sets this run's
                warmup = 0
                stored = state["train_config"]
                if not cfg.minutes and not stored.get("minutes") and stored.get("steps") == cfg.steps:
                    run_start = state.get("run_start", 0)  # the same run, interrupted: keep its schedule
            best, history = state.get("best_score", math.inf), list(state.get("history", []))
            if state.get("score_kind", "mean") != SCORE_KIND:  # its best was chosen by an older score
                rescore = Path(resume).with_name("best.pt")
            source_best = Path(resume).with_name("best.pt")  # resumed into a new folder: the campaign's best.pt
            if source_best.is_file() and not (out_dir / "best.pt").exists():  # comes along
                carried_from, carried = source_best, source_best.read_bytes() if rank == 0 else b""  # as it is
                # now (process 0 writes checkpoints): written with the first one, whatever becomes of the file
    if carried is None and not (out_dir / "best.pt").exists():  # no best.pt to compare with: this run's first
        best = math.inf  # evaluation writes one
    elif state is not None and "optimizer" in state and rescore is None:  # best.pt's own score, where an interrupt
        best = min(best, _stored_best(carried_from or out_dir / "best.pt"))  # came after it and before last.pt
    if step >= cfg.steps:
        raise ValueError(f"{resume or 'the run'} is already at step {step}, which --steps {cfg.steps} does not exceed; "
                         "give a larger --steps")
    if state is not None and "optimizer" not in state and not cfg.lr_warmup:
        log.warning("%s has no optimiser state: a fresh Adam at --lr %g without --lr-warmup moves every weight by "
                    "about that much in its first steps (at 2e-4, 5 steps took the shipped model from dev score "
                    "0.63 to 1.58); the model card continues with --lr 5e-6 --lr-warmup 1000", resume, cfg.lr)
    sampler = PatchSampler(cfg.data, cfg.patch, cfg.min_scale, cfg.seed + step + 7919 * rank, device)
    dev_images = load_dev_images(cfg) if rank == 0 else []
    if rescore is not None and rank == 0:
        best = _score_of(rescore, dev_images, device) if rescore.exists() else math.inf
        log.info("best score %.4f: %s re-scored as a %s", best, rescore, SCORE_KIND)
    gen = torch.Generator().manual_seed(cfg.seed + step + 7919 * rank)
    net = prepare_model(model, cfg, world)
    averaged = _weight_average(model, cfg, state, resume)  # after prepare_model: in the same memory layout
    evaluated = model if averaged is None else averaged.module  # what dev-eval scores and "model" holds
    out_dir.mkdir(parents=True, exist_ok=True)  # once the data, the dev photos and the checkpoint have loaded
    log.info("training on %d images, %d dev images, from step %d", len(sampler), len(dev_images), step)

    def checkpoint(result: dict) -> None:
        nonlocal best, carried
        if not math.isfinite(result["score"]):
            raise TrainingDiverged(f"training diverged by step {step} (dev score {result['score']}); the "
                                   f"checkpoints in {out_dir} stay as they were: resume with a lower --lr")
        entry = {"step": step, "time": time.time(), **result}
        history.append(entry)
        is_best = result["score"] < best
        best = min(best, result["score"])
        ckpt = {"model_config": model_cfg.to_dict(), "train_config": asdict(cfg), "model": evaluated.state_dict(),
                "optimizer": opt.state_dict(), "step": step, "best_score": best, "score_kind": SCORE_KIND,
                "history": history, "run_start": run_start}
        if averaged is not None:
            ckpt["train_model"] = model.state_dict()
        if is_best:  # best.pt first: last.pt never records a best score that best.pt does not hold
            _save(out_dir / "best.pt", ckpt)
        elif carried is not None:  # with the first checkpoint, not before: a new folder that holds only best.pt
            _save(out_dir / "best.pt", carried)  # would be "another run" to the same command run again
        carried = None
        _save(out_dir / "last.pt", ckpt)
        with open(out_dir / "log.jsonl", "a") as f:  # after the checkpoints: the log names only saved steps
            f.write(json.dumps(entry) + "\n")

    start = time.time()
    model.train()
    bar = tqdm(total=None if cfg.minutes > 0 else cfg.steps, initial=step, disable=not progress or rank != 0,
               dynamic_ncols=True)  # a --minutes budget ends the run by the clock: no step total to count down
    result: dict = {}
    first_step = step
    try:
        while step < cfg.steps:
            done = ((time.time() - start) / (cfg.minutes * 60) if cfg.minutes > 0
                    else (step - run_start) / max(cfg.steps - run_start, 1))
            warm = min(1.0, (step - first_step + 1) / warmup) if warmup else 1.0
            _set_lr(opt, cfg, dropped=done >= cfg.lr_drop, warm=warm)
            x = sampler.sample(cfg.batch // 2).repeat(2, 1, 1, 1) if cfg.paired_betas else sampler.sample(cfg.batch)
            beta2, beta1 = sample_betas(1 if cfg.beta_per_batch else cfg.batch, cfg.betas, gen, beta_range)
            if cfg.beta_per_batch:  # one draw for every image of the batch
                beta2, beta1 = beta2.repeat(cfg.batch), beta1.repeat(cfg.batch)
            if cfg.beta_warmup > step and not at_points:
                beta2, beta1 = open_betas(beta2, beta1, step / cfg.beta_warmup, beta_range)
            beta2, beta1 = to_device((beta2, beta1), device)
            z2_weight = min(1.0, step / cfg.z2_warmup) if cfg.z2_warmup > 0 else 1.0
            out, losses = training_step(net, model, opt, x, beta2, beta1, cfg, z2_weight)
            if averaged is not None:
                averaged.update_parameters(model)
            step += 1
            bar.update(1)
            if step % 10 == 0:
                with torch.no_grad():
                    pixels = x.shape[2] * x.shape[3]
                    bpp = ((out["rate_z2"] + out["rate_z1"]).mean() / math.log(2) / pixels).item()
                    mse = ((x - out["x_hat"].clamp(0, 1)) ** 2).mean().item()
                bar.set_postfix(loss=f"{losses['loss'].item():.3f}", bpp=f"{bpp:.3f}",
                                psnr=f"{10 * math.log10(1 / max(mse, 1e-10)):.2f}", refresh=False)
            out_of_time = cfg.minutes > 0 and time.time() - start > cfg.minutes * 60
            if world > 1:  # every process stops at the same step: process 0's clock decides
                import torch.distributed as dist

                flag = torch.tensor([float(out_of_time)], device=device)
                dist.broadcast(flag, 0)
                out_of_time = bool(flag.item())
            if (step % cfg.eval_every == 0 or step == cfg.steps or out_of_time) and rank == 0:
                result = dev_eval(evaluated, dev_images, device)
                checkpoint(result)
                summary = " ".join(f"({p['beta2']:g},{p['beta1']:g}):{p['bpp']:.3f}bpp/{p['psnr']:.2f}dB"
                                   for p in result["points"])
                bar.write(f"step {step} dev score {result['score']:.4f} (mean {result['score_mean']:.4f}) {summary}")
            if out_of_time:
                break
    finally:  # an error or Ctrl-C then starts a line of its own, not the end of the bar's
        bar.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return result


def exported_weights(checkpoint: str | Path) -> dict:
    """What the shipped-model file of a checkpoint holds: fp16 weights and the model config, nothing else."""
    state = load_checkpoint(checkpoint)
    model_from_state(state, str(checkpoint))  # weights that do not fit their config fail here, before writing
    weights = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    return {"model_config": state["model_config"], "model": weights, "step": state.get("step", 0)}


def export_weights(checkpoint: str | Path, out: str | Path) -> None:
    """Write the shipped-model file of a checkpoint (`exported_weights`) via a temporary file and a rename."""
    _save(Path(out), exported_weights(checkpoint))


def with_overrides(cfg: TrainConfig, **overrides) -> TrainConfig:
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
