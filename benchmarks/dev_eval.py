"""Shipped model on the dev-eval photos at a few (beta2, beta1), next to JPEG and WebP at the same bpp.

    python -m benchmarks.dev_eval [--model PATH] [--out benchmarks/results/dev_eval.json]

Every number comes from real bytes and uint8 pixels. JPEG (Pillow, optimize=True) and WebP (Pillow, method 6)
are swept over their quality range per image, and their PSNR is interpolated at hitcodec's bpp for that image.
Times are wall-clock on the CPU (torch threads as set), median of 3 after one warm-up run.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.args import output_file, whole
from hitcodec import codec
from hitcodec.api import resolve_model
from hitcodec.cli import json_safe
from hitcodec.data import dev_eval_photos
from hitcodec.image import read_image

BETAS = ((0.2, 0.2), (1.0, 1.0), (5.0, 5.0), (2.0, 0.5), (0.5, 2.0))


def classical_curve(rgb: np.ndarray, fmt: str) -> list[tuple[float, float]]:
    """(bpp, PSNR) of Pillow's JPEG or WebP over the quality range, sorted by bpp."""
    im = Image.fromarray(rgb)
    points = []
    for q in list(range(1, 10)) + list(range(10, 101, 5)):
        buf = io.BytesIO()
        if fmt == "jpeg":
            im.save(buf, format="JPEG", quality=q, optimize=True)
        else:
            im.save(buf, format="WEBP", quality=q, method=6)
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        points.append((8 * buf.tell() / (rgb.shape[0] * rgb.shape[1]), codec.psnr(rgb, dec)))
    return sorted(points)


def psnr_at(curve: list[tuple[float, float]], bpp: float) -> float:
    """PSNR interpolated at ``bpp``; NaN outside the curve's range."""
    xs, ys = zip(*curve)
    if not xs[0] <= bpp <= xs[-1]:
        return float("nan")
    return float(np.interp(bpp, xs, ys))


def timed(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--out", default="benchmarks/results/dev_eval.json",
                        help="JSON file to write (default: %(default)s, the committed result)")
    parser.add_argument("--threads", type=whole(1), default=2, help="torch CPU threads (default: %(default)s)")
    args = parser.parse_args()
    output_file(parser, args.out)
    torch.set_num_threads(args.threads)
    try:
        loaded = resolve_model(args.model)
    except (ValueError, OSError) as exc:
        parser.exit(1, f"benchmarks.dev_eval: error: {exc}\n")
    photos = dev_eval_photos()
    rows = {b: [] for b in BETAS}
    for path in photos:
        # an ICC profile is not applied: the stored values, as training, the dev score and every earlier
        # result read them (of the dev photos only rocket.jpg has one, Adobe RGB)
        image = read_image(path, srgb=False)
        rgb = image.rgb
        curves = {fmt: classical_curve(rgb, fmt) for fmt in ("jpeg", "webp")}
        for beta2, beta1 in BETAS:
            coded = codec.encode(loaded, image, beta2, beta1)
            decoded = codec.decode(loaded, coded.data)
            pixels = rgb.shape[0] * rgb.shape[1]
            rows[(beta2, beta1)].append({
                "image": path.name, "bpp": coded.bpp, "psnr": codec.psnr(rgb, decoded.image.rgb),
                "bpp_z2": 8 * coded.layers[0].payload_bytes / pixels,
                "bpp_z1": 8 * coded.layers[1].payload_bytes / pixels,
                "jpeg_psnr": psnr_at(curves["jpeg"], coded.bpp), "webp_psnr": psnr_at(curves["webp"], coded.bpp),
            })
    summary = []
    for (beta2, beta1), items in rows.items():
        entry = {"beta2": beta2, "beta1": beta1, **{k: float(np.mean([r[k] for r in items]))
                                                    for k in ("bpp", "bpp_z2", "bpp_z1", "psnr")}}
        for fmt in ("jpeg", "webp"):  # where a codec cannot reach hitcodec's bpp on a photo, that photo is left out
            shared = [r for r in items if not np.isnan(r[f"{fmt}_psnr"])]  # of both means, so they compare
            entry[f"{fmt}_n"] = len(shared)
            entry[f"{fmt}_psnr"] = float(np.mean([r[f"{fmt}_psnr"] for r in shared])) if shared else float("nan")
            entry[f"psnr_where_{fmt}"] = float(np.mean([r["psnr"] for r in shared])) if shared else float("nan")
        summary.append(entry)

    sample = read_image(photos[0], srgb=False)
    data = codec.encode(loaded, sample, 1.0, 1.0).data
    enc_s = timed(lambda: codec.encode(loaded, sample, 1.0, 1.0))
    dec_s = timed(lambda: codec.decode(loaded, data))
    timing = {"image": photos[0].name, "size": list(sample.rgb.shape[:2]), "threads": args.threads,
              "encode_s": enc_s, "decode_s": dec_s}
    result = {"model_id": loaded.model_id_hex, "model": loaded.path, "images": [p.name for p in photos],
              "summary": summary, "per_image": {f"{b2},{b1}": r for (b2, b1), r in rows.items()}, "timing": timing}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(json_safe(result), indent=2))

    print(f"model {loaded.model_id_hex}, {len(photos)} dev photos (mean over photos; JPEG/WebP PSNR at the same bpp)")
    print("| beta2 | beta1 | bpp | z2 bpp | z1 bpp | PSNR dB | JPEG dB | WebP dB |")
    print("|---|---|---|---|---|---|---|---|")
    def cell(s: dict, fmt: str) -> str:  # on fewer photos: which, and hitcodec's own PSNR on those
        if s[f"{fmt}_n"] == len(photos):
            return f"{s[f'{fmt}_psnr']:.2f}"
        if not s[f"{fmt}_n"]:
            return "–"
        photos_n = f"{s[f'{fmt}_n']} photo{'s' if s[f'{fmt}_n'] > 1 else ''}"
        return f"{s[f'{fmt}_psnr']:.2f} ({photos_n}; hitcodec {s[f'psnr_where_{fmt}']:.2f})"

    for s in summary:
        print(f"| {s['beta2']:g} | {s['beta1']:g} | {s['bpp']:.3f} | {s['bpp_z2']:.3f} | {s['bpp_z1']:.3f} | "
              f"{s['psnr']:.2f} | {cell(s, 'jpeg')} | {cell(s, 'webp')} |")
    print(f"CPU time, {timing['image']} {timing['size'][1]}x{timing['size'][0]}, {args.threads} threads: "
          f"encode {enc_s:.2f} s, decode {dec_s:.2f} s")


if __name__ == "__main__":
    main()
