"""How many latent channels a model uses at each beta: bits per channel of z1 and z2 on the dev photos.

    python -m benchmarks.channels --model mix=runs/X/mix/last.pt --model fixed=runs/Y/fixed-0.2/last.pt \
        --betas 0.1,0.2,1,5 [--crop 256] [--out DIR]

For each model and point beta2 = beta1 = b: the rates of the rounded latents under the model's own priors (an
estimate, as the training log's dev evaluation; the coded file adds a few bytes), the PSNR of its uint8 output, the
PSNR when the synthesis reads z1's posterior mean y1 unrounded (the same ẑ2: what the decoder makes of all that the
encoder puts into z1; a probe, not a ceiling: the decoder was trained on rounded latents, and the shipped model's
decoder makes 2 dB less of unrounded ones at beta = 0.1 than of the rounded ones), and for each layer the number
of channels that carry more than 0.1 bit per latent and the fewest that carry 99 % of its bits. A channel whose
symbols are all 0 costs nothing and tells the synthesis nothing: a model that has let most of its z1 channels go
so cannot spend more bits where beta asks for them (docs/equal-steps.md).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from benchmarks.args import betas_in_squares, models as load_models, output_folder, positive_floats, whole
from benchmarks.fixed_beta import dev_crops
from hitcodec.models.ghvae import GHVAE, gaussian_rate, log_beta_input

USED_BITS = 0.1  # a channel "in use" carries more than this many bits per latent (per position of its layer)


def channel_counts(bits: torch.Tensor) -> dict:
    """Channels in use (> USED_BITS) and the fewest that carry 99 % of the layer's bits, from mean bits per latent
    of each channel."""
    ordered = bits.sort(descending=True).values
    if not ordered.sum() > 0:  # a layer that carries nothing
        return {"used": 0, "for_99_percent": 0}
    share = ordered.cumsum(0) / ordered.sum()
    return {"used": int((bits > USED_BITS).sum()), "for_99_percent": min(int((share < 0.99).sum()) + 1, len(bits))}


def psnr_uint8(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """Mean over the images of the PSNR (dB) of x_hat as uint8 output against x."""
    x_hat = (x_hat.clamp(0, 1) * 255).round() / 255
    return round(float((10 * torch.log10(1 / (x_hat - x).pow(2).mean(dim=(1, 2, 3)))).mean()), 3)


@torch.no_grad()
def measure(model: GHVAE, betas: list[float], x: torch.Tensor) -> list[dict]:
    """One row per beta (beta2 = beta1) for ``model`` on the batch of images ``x`` in [0, 1]."""
    pixels = len(x) * x.shape[2] * x.shape[3]
    rows = []
    for beta in betas:
        beta_ = torch.full((len(x),), beta)
        out = model(x, beta_, beta_, latents=True)  # eval mode: the rounded latents, as the codec codes them
        unrounded = model.synthesis(out["y1"], model.embed(log_beta_input(beta_, beta_)))
        row = {"beta": beta, "psnr": psnr_uint8(out["x_hat"], x), "psnr_z1_unrounded": psnr_uint8(unrounded, x)}
        for name, n in (("z2", 2), ("z1", 1)):
            z_hat, mean, scale = out[f"{name}_hat"], out[f"mean{n}"], out[f"scale{n}"]
            bits = gaussian_rate(z_hat, mean, scale).mean(dim=(0, 2, 3)) / math.log(2)  # per latent, per channel
            bpp = float(bits.sum()) * z_hat.shape[2] * z_hat.shape[3] * len(x) / pixels
            row[name] = {"bpp": round(bpp, 5), "channels": len(bits), **channel_counts(bits)}
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--betas", type=positive_floats, default="0.1,0.2,1,5",
                        help="points beta2 = beta1, comma-separated")
    parser.add_argument("--crop", type=whole(64), default=256, help="side of the dev-photo centre crops (>= 64)")
    parser.add_argument("--threads", type=whole(1), default=2)
    parser.add_argument("--out", help="folder for channels.json")
    args = parser.parse_args(argv)
    if args.out:
        output_folder(parser, args.out)
    models = load_models(parser, args.model)
    betas_in_squares(parser, args.betas, models)
    torch.set_num_threads(args.threads)
    betas = args.betas
    crops = [image.rgb for _, image in dev_crops(args.crop)]
    if len({c.shape for c in crops}) > 1:
        parser.error("the dev crops differ in size: give a --crop no larger than the smallest dev photo")
    x = torch.stack([torch.from_numpy(c).permute(2, 0, 1).float() / 255 for c in crops])
    results = {}
    print("model        beta   PSNR dB (z1 unrounded)   z2 bpp used/99%    z1 bpp used/99%")
    for name, loaded in models.items():
        results[name] = {"path": loaded.path, "rows": measure(loaded.model, betas, x)}
        for r in results[name]["rows"]:
            z2, z1 = r["z2"], r["z1"]
            print(f"{name:12s} {r['beta']:<6g} {r['psnr']:7.2f} ({r['psnr_z1_unrounded']:.2f})          "
                  + "     ".join(f"{z['bpp']:.4f} {z['used']:3d}/{z['for_99_percent']:<3d} of {z['channels']}"
                                 for z in (z2, z1)))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "channels.json").write_text(json.dumps(
            {"crop": args.crop, "images": len(crops), "used_bits": USED_BITS, "models": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
