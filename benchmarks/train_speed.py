"""Training throughput of `hitcodec train`'s own step, plain fp32 eager against the speed options.

    python -m benchmarks.train_speed [--device cuda] [--batch 8] [--patch 192] [--steps 20] [--min-seconds 5]
                                     [--variants eager,channels_last,amp,compile,all,graphs] [--out FILE.json]

Each variant builds the shipped architecture afresh, runs warm-up steps (compilation included) and then times
``--steps`` steps of `hitcodec.train.training_step` (more, until the timed run lasts ``--min-seconds``: 30 steps
on an H200 took 0.7 s, too short to trust) with crops from `PatchSampler` (on the device), CUDA synchronised
before each clock reading. Reports steps/s, images/s and megapixels/s, and the speed-up over
"eager" (plain fp32, NCHW, no compile). "graphs" is "all" with torch.compile's mode "reduce-overhead" (the
step replayed as CUDA graphs; on a CPU the same as "all"). Peak GPU memory is reported on CUDA.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.args import output_file, whole
from hitcodec.models.ghvae import GHVAE, GHVAEConfig
from hitcodec.train import PatchSampler, TrainConfig, prepare_model, sample_betas, to_device, training_step

VARIANTS = {
    "eager": {},
    "channels_last": {"channels_last": True},
    "amp": {"amp": True},
    "compile": {"compile": True},
    "all": {"channels_last": True, "amp": True, "compile": True},
    "graphs": {"channels_last": True, "amp": True, "compile": True, "compile_mode": "reduce-overhead"},
}


def measure(cfg: TrainConfig, steps: int, warmup: int, model_config: GHVAEConfig, min_seconds: float = 0.0) -> dict:
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model = GHVAE(model_config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    net = prepare_model(model, cfg)
    sampler = PatchSampler(cfg.data, cfg.patch, cfg.min_scale, cfg.seed, cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run(n: int) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(n):
            beta2, beta1 = to_device(sample_betas(cfg.batch, cfg.betas, gen), device)
            _, losses = training_step(net, model, opt, sampler.sample(cfg.batch), beta2, beta1, cfg)
        loss = losses["loss"].item()  # also synchronises
        sync()
        if loss != loss:
            raise RuntimeError("loss is NaN")
        return time.perf_counter() - start

    warm = run(warmup)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = run(steps)
    while seconds < min_seconds:  # a GPU runs tens of steps a second: time enough of them to be steady
        steps = int(steps * 1.2 * min_seconds / seconds) + 1
        seconds = run(steps)
    rate = steps / seconds
    result = {"steps_per_s": rate, "images_per_s": rate * cfg.batch,
              "mp_per_s": rate * cfg.batch * cfg.patch**2 / 1e6, "warmup_s": warm, "timed_steps": steps}
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/train", help="training photos (default: data/train)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=whole(1), default=8)
    parser.add_argument("--patch", type=whole(64), default=192)
    parser.add_argument("--steps", type=whole(1), default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=whole(1), default=5,
                        help="untimed steps first (compilation happens here; at least 1)")
    parser.add_argument("--min-seconds", type=float, default=5.0,
                        help="time more steps than --steps until the timed run lasts this long (default 5)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=whole(1), default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model (checks the script, not the speed)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.out:
        output_file(parser, args.out)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    model_config = GHVAEConfig(n=8, z1_channels=8, z2_channels=8, embed=8) if args.tiny else GHVAEConfig()
    base = TrainConfig(data=args.data, out="", batch=args.batch, patch=args.patch, device=args.device, betas="mix")
    cuda = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"{device_name}; torch {torch.__version__}; batch {args.batch} x {args.patch}^2; "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    meta = {"device": device_name, "torch": torch.__version__, "batch": args.batch, "patch": args.patch,
            "steps": args.steps, "warmup": args.warmup, "min_seconds": args.min_seconds,
            "tiny": args.tiny}  # (a tiny model's numbers check the script, they are no speed result)
    results = {}
    for name in names:
        try:
            r = results[name] = measure(replace(base, **VARIANTS[name]), args.steps, args.warmup, model_config,
                                        args.min_seconds)
        except Exception as e:  # a variant that fails on this machine (e.g. CUDA graphs) must not lose the others
            results[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
            print(f"{name:14s} failed: {results[name]['error']}", flush=True)
        else:
            speedup = r["steps_per_s"] / results["eager"]["steps_per_s"] if "steps_per_s" in results.get(
                "eager", {}) else float("nan")
            memory = f", peak {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""
            print(f"{name:14s} {r['steps_per_s']:7.2f} steps/s {r['images_per_s']:8.1f} images/s "
                  f"{r['mp_per_s']:7.2f} MP/s  x{speedup:.2f} vs eager  (warm-up {r['warmup_s']:.1f} s{memory})",
                  flush=True)
        if args.out:  # after every variant, so that a run stopped by its time limit keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    failed = [name for name, r in results.items() if "error" in r]
    if failed:
        raise SystemExit(f"variants failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
