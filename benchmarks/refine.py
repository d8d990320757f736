"""What encoder-side refinement of z1 (`compress --refine N`, hitcodec/refine.py) gains, with real bytes.

    python -m benchmarks.refine [--model NAME=PATH ...] [--betas 0.2,1,5] [--steps 0,100] [--crop 256] --out DIR

For each model (default: the shipped one), diagonal point beta2 = beta1 = b and number of steps: the mean bpp
and PSNR over the dev-eval photos (centre crops of at most crop^2; 0 = whole photos), the per-pixel objective
(D + b R) / b of those means (as `benchmarks.fixed_beta` computes it) and the encode time per image.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from benchmarks.args import (betas_in_squares, models as load_models, output_folder, positive_floats, whole,
                             whole_numbers)
from benchmarks.fixed_beta import dev_crops, objective
from benchmarks.rd import bd_rate, measure_ghvae
from hitcodec.api import resolve_model
from hitcodec.cli import json_safe


def measure(loaded, images, beta: float, steps: int) -> dict:
    point, = measure_ghvae(loaded, images, [(beta, beta)], f"beta {beta:g}, {steps} steps", refine_steps=steps)
    return {**point, "steps": steps, "objective": objective(point, loaded.model.config.sigma_x)}


def report(results: dict) -> str:
    where = f"centre crops of at most {results['crop']}²" if results["crop"] else "whole photos"
    lines = ["# Encoder-side refinement of z1: what it gains", "",
             f"`python -m benchmarks.refine {results['argv']}`; real bytes on {results['images']} dev-eval photos "
             f"({where}), {results['threads']} threads. Objective: "
             "per-pixel (D + βR)/β of the mean bpp and PSNR (lower is better); change against the same model "
             "without refinement.", "",
             "| model | β2 = β1 | steps | bpp | PSNR dB | objective | change | encode s/image |",
             "|---|---|---|---|---|---|---|---|"]
    for name, points in results["models"].items():
        base = {p["beta1"]: p["objective"] for p in points if p["steps"] == 0}
        for p in points:
            change = f"{100 * (p['objective'] / base[p['beta1']] - 1):+.1f} %" if p["beta1"] in base else ""
            lines.append(f"| {name} | {p['beta1']:g} | {p['steps']} | {p['bpp']:.4f} | {p['psnr']:.2f} | "
                         f"{p['objective']:.4f} | {change} | {p['encode_s']:.1f} |")
    lines += ["", "BD-rate over the measured points (linear between two) against the same model without "
              "refinement (negative = fewer bits at equal PSNR):", ""]
    for name, points in results["models"].items():
        by_steps: dict[int, list[dict]] = {}
        for p in points:
            by_steps.setdefault(p["steps"], []).append(p)
        for steps, curve in by_steps.items():
            if steps and 0 in by_steps:
                value = f"{bd_rate(by_steps[0], curve):+.1f} %" if len(curve) > 1 else "needs two β or more"
                lines.append(f"- {name}, {steps} steps: {value}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="a model to measure (default: the shipped one, named shipped)")
    parser.add_argument("--betas", type=positive_floats, default="0.2,1,5",
                        help="diagonal points beta2 = beta1, comma-separated")
    parser.add_argument("--steps", type=whole_numbers, default="0,100",
                        help="refinement steps to measure, comma-separated")
    parser.add_argument("--crop", type=whole(0), default=256, help="centre crops of at most crop^2 (0: whole photos)")
    parser.add_argument("--threads", type=whole(1), default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    output_folder(parser, args.out)
    models = load_models(parser, args.model) if args.model else {"shipped": resolve_model(None)}
    betas_in_squares(parser, args.betas, models)
    torch.set_num_threads(args.threads)
    betas, steps = args.betas, args.steps
    images = dev_crops(args.crop)
    results = {"argv": " ".join(argv) if argv is not None else "", "images": len(images), "crop": args.crop,
               "threads": args.threads, "models": {}}
    for name, loaded in models.items():
        results["models"][name] = [measure(loaded, images, b, n) for b in betas for n in steps]
        print(f"{name}: done", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(json_safe(results), indent=1))
    (args.out / "REPORT.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
