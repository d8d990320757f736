"""Rate/distortion benchmark: the GHVAE's (beta2, beta1) grid, its hull and diagonal, classical codecs, speed.

    python -m benchmarks.rd --images DIR --out DIR [--grid N] [--codecs jpeg,webp,avif,jpeg2000] [--model PATH]
                            [--baseline-model PATH] [--device cpu|cuda|auto] [--no-speed]

Everything is measured from real bytes and uint8 pixels. Curves are averages over the images of each setting
(a grid point, a codec quality), as CompressAI does. Writes into --out:
- ``<name>.json`` per curve in CompressAI's results schema, ``grid.json`` with every grid point and image,
- ``rd.png`` (RD curves), ``beta_surface.png`` (PSNR over (beta2, beta1) and over (R(z2), R(z1|z2)), as the
  paper's Figure 3, with the beta-VAE diagonal and the hull marked), ``REPORT.md`` with the tables.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from hitcodec import codec, coding
from hitcodec.api import resolve_model
from hitcodec.cli import json_safe
from hitcodec.data import dev_eval_photos, list_images
from hitcodec.image import CodecImage, read_image
from hitcodec.weights import resolve_device

CLASSICAL = {
    "jpeg": ("JPEG", {"optimize": True}, list(range(5, 96, 5))),
    "webp": ("WEBP", {"method": 6}, list(range(0, 101, 5))),
    "avif": ("AVIF", {"speed": 4}, list(range(0, 101, 5))),
    "jpeg2000": ("JPEG2000", {"quality_mode": "rates", "irreversible": True},
                 [2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192]),
}


PSNR_CAP_DB = 100.0  # an exact reconstruction (PSNR inf: flat graphics, a constant colour) counts as this


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    return min(codec.psnr(a, b), PSNR_CAP_DB)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (pytorch-msssim, data range 255) of two uint8 RGB arrays; NaN below its minimum size (161 px)."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(a.shape[:2]) <= 160:
        return float("nan")
    ta, tb = (torch.from_numpy(np.array(v)).permute(2, 0, 1)[None].float() for v in (a, b))
    return float(_ms_ssim(ta, tb, data_range=255))


def benchmark_image(path: Path) -> CodecImage:
    """The colour of an image file: every codec here is compared on RGB, so an alpha plane (which hitcodec would
    code losslessly beside it, and JPEG not at all) is left out. An ICC profile is not applied: every codec gets the
    stored values, as the earlier results did (`hitcodec compress` would convert them to sRGB first). A ValueError
    names the file."""
    try:
        image = read_image(path, srgb=False)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if min(image.rgb.shape[:2]) < 2:
        raise ValueError(f"{path}: {image.rgb.shape[1]}x{image.rgb.shape[0]} is too small to benchmark")
    return replace(image, alpha=None, mode=image.mode.rstrip("A"))


def log_grid(n: int, lo: float = 0.1, hi: float = 10.0) -> list[float]:
    """n values log-spaced over [lo, hi] (a model's beta range), rounded to 4 decimals."""
    return [float(v) for v in np.round(np.logspace(math.log10(lo), math.log10(hi), n), 4)]


def measure_ghvae(loaded, images: list[tuple[str, CodecImage]], betas: list[tuple[float, float]],
                  desc: str, device: str = "cpu", refine_steps: int = 0) -> list[dict]:
    """Per (beta2, beta1): averages over images of bpp, per-layer bpp, PSNR, MS-SSIM and encode seconds; plus
    per-image rows. ``refine_steps``: encode with that many steps of z1 refinement (``compress --refine``)."""
    points = []
    for beta2, beta1 in tqdm(betas, desc=desc, leave=False, disable=None):
        rows = []
        for name, image in images:
            start = time.perf_counter()
            coded = codec.encode(loaded, image, beta2, beta1, device=device, refine_steps=refine_steps)
            seconds = time.perf_counter() - start
            decoded = codec.decode(loaded, coded.data, device=device)
            pixels = image.rgb.shape[0] * image.rgb.shape[1]
            rows.append({"image": name, "bpp": coded.bpp,
                         "bpp_z2": 8 * coded.layers[0].payload_bytes / pixels,
                         "bpp_z1": 8 * coded.layers[1].payload_bytes / pixels,
                         "psnr": psnr_db(image.rgb, decoded.image.rgb),
                         "ms_ssim": ms_ssim(image.rgb, decoded.image.rgb), "encode_s": seconds})
        points.append({"beta2": beta2, "beta1": beta1, **_mean(rows), "images": rows})
    return points


def _mean(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k != "image"]
    return {k: float(np.nanmean([r[k] for r in rows])) if not all(np.isnan(r[k]) for r in rows) else float("nan")
            for k in keys}


def measure_classical(fmt: str, images: list[tuple[str, CodecImage]]) -> list[dict]:
    pil_format, options, qualities = CLASSICAL[fmt]
    points = []
    for q in tqdm(qualities, desc=fmt, leave=False, disable=None):
        rows = []
        for name, image in images:
            buf = io.BytesIO()
            kw = dict(options)
            if fmt == "jpeg2000":
                kw["quality_layers"] = [q]
            else:
                kw["quality"] = q
            Image.fromarray(image.rgb).save(buf, format=pil_format, **kw)
            dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            pixels = image.rgb.shape[0] * image.rgb.shape[1]
            rows.append({"image": name, "bpp": 8 * buf.tell() / pixels, "psnr": psnr_db(image.rgb, dec),
                         "ms_ssim": ms_ssim(image.rgb, dec)})
        points.append({"quality": q, **_mean(rows), "images": rows})
    return sorted(points, key=lambda p: p["bpp"])


def upper_hull(points: list[dict], x: str = "bpp", y: str = "psnr") -> list[dict]:
    """Upper convex hull of ``y`` over ``x`` (the paper's best model per total rate), sorted by ``x``."""
    pts = sorted(points, key=lambda p: (p[x], -p[y]))
    hull: list[dict] = []
    for p in pts:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = (hull[-2][x], hull[-2][y]), (hull[-1][x], hull[-1][y])
            if (x2 - x1) * (p[y] - y1) - (y2 - y1) * (p[x] - x1) >= 0:  # hull[-1] is not above the chord
                hull.pop()
            else:
                break
        hull.append(p)
    # keep the rising part only: past the best value more rate buys nothing
    best = max(range(len(hull)), key=lambda i: hull[i][y])
    return hull[:best + 1]


def bd_rate(anchor: list[dict], test: list[dict]) -> float:
    """Bjøntegaard delta rate (%) of test against anchor, PCHIP interpolation of log rate over PSNR.

    Negative means test needs fewer bits for the same PSNR. NaN when the PSNR ranges do not overlap.
    """
    from scipy.interpolate import PchipInterpolator

    def curve(points):
        pts = sorted((p["psnr"], math.log(p["bpp"])) for p in points if p["bpp"] > 0)
        xs, ys = [], []
        for x, y in pts:  # PCHIP needs strictly increasing x
            if not xs or x > xs[-1] + 1e-9:
                xs.append(x)
                ys.append(y)
        return np.array(xs), np.array(ys)

    xa, ya = curve(anchor)
    xt, yt = curve(test)
    if len(xa) < 2 or len(xt) < 2:
        return float("nan")
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if hi <= lo:
        return float("nan")
    grid = np.linspace(lo, hi, 200)
    diff = np.mean(PchipInterpolator(xt, yt)(grid) - PchipInterpolator(xa, ya)(grid))
    return float((math.exp(diff) - 1) * 100)


def per_image_bd_rates(anchor: list[dict], test: list[dict]) -> dict[str, float]:
    """Each image's BD-rate (%) of ``test`` against ``anchor``, from the per-image rows of both curves' points (the
    other common convention: `bd_rate` of the mean curves weighs every image's bits and PSNR into one curve)."""
    names = [r["image"] for r in test[0]["images"]]
    return {name: bd_rate([r for p in anchor for r in p["images"] if r["image"] == name],
                          [r for p in test for r in p["images"] if r["image"] == name]) for name in names}


def rate_gap(anchor: list[dict], point: dict) -> float:
    """How many more bits (%) ``point`` takes than the ``anchor`` curve at the point's PSNR (log rate interpolated
    over PSNR, as in `bd_rate`); NaN outside the anchor's PSNR range."""
    from scipy.interpolate import PchipInterpolator

    pts = sorted((p["psnr"], math.log(p["bpp"])) for p in anchor if p["bpp"] > 0)
    pts = [pt for i, pt in enumerate(pts) if i == 0 or pt[0] > pts[i - 1][0] + 1e-9]  # strictly increasing PSNR
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    if len(xs) < 2 or not xs[0] <= point["psnr"] <= xs[-1]:
        return float("nan")
    return float((point["bpp"] / math.exp(PchipInterpolator(xs, ys)(point["psnr"])) - 1) * 100)


def _percent(value: float) -> str:
    return f"{value:+.1f} %" if math.isfinite(value) else "n/a"


def compressai_json(name: str, description: str, points: list[dict]) -> dict:
    pts = sorted(points, key=lambda p: p["bpp"])
    return {"name": name, "description": description,
            "results": {"bpp": [p["bpp"] for p in pts], "psnr-rgb": [p["psnr"] for p in pts],
                        "ms-ssim-rgb": [p["ms_ssim"] for p in pts]}}


def _median_time(fn, repeats: int = 3, device: str = "cpu") -> float:
    """Median wall time of ``fn`` after one warm-up call, synchronising CUDA around each call."""
    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure_speed(loaded, image: CodecImage, codecs: list[str], device: str = "cpu") -> dict:
    """Encode/decode seconds per megapixel (median of 3 after a warm-up) on the CPU and, with ``device`` cuda, on
    the GPU too; entropy-coder throughput; peak GPU memory."""
    mp = image.rgb.shape[0] * image.rgb.shape[1] / 1e6
    devices = ["cpu"] + (["cuda"] if device != "cpu" else [])
    out = {"image_megapixels": mp, "threads": torch.get_num_threads(), "devices": devices}
    for dev in devices:
        suffix = "" if dev == "cpu" else f" ({dev})"
        data = codec.encode(loaded, image, 1.0, 1.0, device=dev).data
        out[f"hitcodec{suffix}"] = {
            "encode_s_per_mp": _median_time(lambda: codec.encode(loaded, image, 1.0, 1.0, device=dev), device=dev) / mp,
            "decode_s_per_mp": _median_time(lambda: codec.decode(loaded, data, device=dev), device=dev) / mp}
        out[f"mbt2018-mean{suffix}"] = _speed_mbt2018_mean(image, mp, dev)
    if "cuda" in devices:
        out["cuda_device"] = torch.cuda.get_device_name()
        out["cuda_peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    for fmt in codecs:
        pil_format, options, qualities = CLASSICAL[fmt]
        kw = dict(options)
        if fmt == "jpeg2000":
            kw["quality_layers"] = [32]
        else:
            kw["quality"] = 75
        buf = io.BytesIO()

        def enc():
            buf.seek(0)
            buf.truncate()
            Image.fromarray(image.rgb).save(buf, format=pil_format, **kw)

        enc_s = _median_time(enc)
        blob = buf.getvalue()
        dec_s = _median_time(lambda: Image.open(io.BytesIO(blob)).load())
        out[fmt] = {"encode_s_per_mp": enc_s / mp, "decode_s_per_mp": dec_s / mp}
    # entropy coding alone, with the symbols and scale indices of a real image
    n = 200_000
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 20, n).astype(np.int32)
    sym = coding.clamp_symbols(np.round(rng.normal(0, coding.SCALE_TABLE[idx])))
    payload = coding.encode_symbols(sym, idx)
    out["ans_symbols_per_s"] = {"encode": n / _median_time(lambda: coding.encode_symbols(sym, idx)),
                                "decode": n / _median_time(lambda: coding.decode_symbols(payload, idx))}
    return out


def _speed_mbt2018_mean(image: CodecImage, mp: float, device: str = "cpu") -> dict:
    """CompressAI's mbt2018-mean at quality 3 (N=128, M=192, as hitcodec's widths), random weights."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from compressai.zoo import mbt2018_mean

        net = mbt2018_mean(quality=3, pretrained=False).eval()
        net.update(force=True)
        net.to(device)
    x = torch.from_numpy(np.array(image.rgb)).permute(2, 0, 1)[None].float() / 255
    from hitcodec.models.ghvae import pad_to_stride

    x = pad_to_stride(x).to(device)
    with torch.inference_mode():
        enc = net.compress(x)
        enc_s = _median_time(lambda: net.compress(x), device=device)
        dec_s = _median_time(lambda: net.decompress(enc["strings"], enc["shape"]), device=device)
    return {"encode_s_per_mp": enc_s / mp, "decode_s_per_mp": dec_s / mp}


def peak_rss_mb(image_path: str, model: str | None) -> float:
    """Peak RSS (MB) of a fresh process that compresses and decompresses one image."""
    code = ("import resource,sys,hitcodec;"
            f"d=hitcodec.compress(sys.argv[1], model={model!r});hitcodec.decompress(d, model={model!r});"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, image_path], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def plot(out: Path, grid: list[dict], diagonal: list[dict], hull: list[dict], classical: dict,
         baseline: list[dict] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([p["bpp"] for p in grid], [p["psnr"] for p in grid], s=8, c="0.7", label="GHVAE grid")
    ax.plot([p["bpp"] for p in hull], [p["psnr"] for p in hull], "-o", c="C3", ms=4, label="GHVAE hull (best split)")
    ax.plot([p["bpp"] for p in diagonal], [p["psnr"] for p in diagonal], "--s", c="C0", ms=4,
            label="β-VAE diagonal (β2 = β1)")
    if baseline:
        ax.plot([p["bpp"] for p in baseline], [p["psnr"] for p in baseline], ":^", c="C4", ms=4,
                label="β-VAE model (equal budget)")
    for i, (fmt, pts) in enumerate(classical.items()):
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "-", c=f"C{i + 5}", lw=1, label=fmt)
    top = max(p["bpp"] for p in grid) * 1.3
    shown = [p["psnr"] for pts in [grid, *classical.values()] for p in pts if p["bpp"] <= top]
    ax.set(xlabel="bits per pixel", ylabel="PSNR (dB)", xlim=(0, top), ylim=(min(shown) - 1, max(shown) + 1),
           title="Rate/distortion")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "rd.png", dpi=120)
    plt.close(fig)

    n = int(round(math.sqrt(len(grid))))
    b2s = sorted({p["beta2"] for p in grid})
    b1s = sorted({p["beta1"] for p in grid})
    psnr = np.full((len(b2s), len(b1s)), np.nan)
    for p in grid:
        psnr[b2s.index(p["beta2"]), b1s.index(p["beta1"])] = p["psnr"]
    hull_keys = {(p["beta2"], p["beta1"]) for p in hull}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    lo, hi = math.log10(b1s[0]), math.log10(b1s[-1])  # the model's own square (the same range for both betas)
    half = (hi - lo) / (2 * (n - 1))  # grid values sit at cell centres
    im = a1.imshow(psnr, origin="lower", cmap="viridis", extent=(lo - half, hi + half, lo - half, hi + half),
                   aspect="auto")
    a1.plot([lo, hi], [lo, hi], "w--", lw=1, label="β-VAE diagonal")
    hx = [math.log10(b1) for b2, b1 in hull_keys]
    hy = [math.log10(b2) for b2, b1 in hull_keys]
    a1.scatter(hx, hy, marker="*", c="r", s=60, label="hull")
    a1.set(xlabel="log10 β1", ylabel="log10 β2", title=f"PSNR (dB) over (β2, β1), {n}×{n} grid")
    fig.colorbar(im, ax=a1)
    a1.legend(fontsize=8, loc="lower right")
    sc = a2.scatter([p["bpp_z2"] for p in grid], [p["bpp_z1"] for p in grid], c=[p["psnr"] for p in grid],
                    cmap="viridis", s=40)
    a2.plot([p["bpp_z2"] for p in diagonal], [p["bpp_z1"] for p in diagonal], "k--", lw=1, label="β-VAE diagonal")
    a2.scatter([p["bpp_z2"] for p in hull], [p["bpp_z1"] for p in hull], marker="*", c="r", s=60, label="hull")
    a2.set(xlabel="R(z2) (bpp)", ylabel="R(z1|z2) (bpp)", title="PSNR over the two layers' rates")
    fig.colorbar(sc, ax=a2)
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "beta_surface.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="hitcodec rate/distortion benchmark")
    parser.add_argument("--images", required=True,
                        help="folder of images, or 'dev' for the dev-eval photos bundled in pip packages")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--grid", type=int, default=7,
                        help="N for the N×N log grid of (beta2, beta1) over the model's square ([0.1, 10]² for the "
                             "shipped model)")
    parser.add_argument("--codecs", default="jpeg,webp,avif,jpeg2000")
    parser.add_argument("--model", default=None, help="model file; default: the shipped model")
    parser.add_argument("--baseline-model", default=None, help="equal-budget beta-VAE model (diagonal-trained)")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed section")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                        help="where hitcodec's networks run for the grid; cuda adds GPU rows to the speed table")
    args = parser.parse_args(argv)
    try:
        device = str(resolve_device(args.device))
    except ValueError as exc:
        parser.error(str(exc))
    codecs = [c for c in args.codecs.split(",") if c]
    unknown = set(codecs) - set(CLASSICAL)
    if unknown or args.grid < 2:
        parser.error(f"unknown codecs {sorted(unknown)}" if unknown else "--grid must be at least 2")
    out = Path(args.out)
    paths = dev_eval_photos() if args.images == "dev" else list_images(Path(args.images))
    if args.images != "dev" and Path(args.images).resolve() in out.resolve().parents:  # --out inside --images:
        paths = [p for p in paths if out.resolve() not in p.resolve().parents]  # not an earlier run's plots
    if not paths:
        parser.error(f"no images in {args.images}")
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder")
    try:  # everything that can fail on bad input, before the first output is written
        loaded = resolve_model(args.model)
        baseline_model = resolve_model(args.baseline_model) if args.baseline_model else None
        images = [(p.name, benchmark_image(p)) for p in paths]
        out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:
        sys.exit(f"benchmarks.rd: error: {' '.join(str(exc).split())}")

    betas = log_grid(args.grid, loaded.model.config.beta_min, loaded.model.config.beta_max)
    grid = measure_ghvae(loaded, images, [(b2, b1) for b2 in betas for b1 in betas], "GHVAE grid", device)
    diagonal = sorted([p for p in grid if p["beta2"] == p["beta1"]], key=lambda p: p["bpp"])
    hull = upper_hull(grid)
    baseline = None
    if baseline_model is not None:
        baseline = measure_ghvae(baseline_model, images, [(b, b) for b in betas], "baseline", device)
    classical = {fmt: measure_classical(fmt, images)
                 for fmt in tqdm(codecs, desc="classical", leave=False, disable=None)}

    curves = {"hitcodec-hull": (hull, "GHVAE, best (beta2, beta1) per total rate (upper convex hull)"),
              "hitcodec-diagonal": (diagonal, "GHVAE on the beta-VAE diagonal beta2 = beta1")}
    if baseline:
        curves["beta-vae-model"] = (baseline, "same architecture trained on the diagonal only")
    curves.update({fmt: (pts, f"Pillow {CLASSICAL[fmt][0]} {CLASSICAL[fmt][1]}") for fmt, pts in classical.items()})
    speed = None if args.no_speed else measure_speed(loaded, max((im for _, im in images),
                                                                 key=lambda im: im.rgb.size), codecs, device)
    if speed is not None:
        speed["peak_rss_mb_compress_decompress"] = peak_rss_mb(str(max(paths, key=lambda p: p.stat().st_size)),
                                                               args.model)
    anchors = [a for a in ("jpeg", "webp") if a in classical]
    bd = {name: {a: bd_rate(classical[a], pts) for a in anchors} for name, (pts, _) in curves.items()}
    bd_per_image = {name: {a: per_image_bd_rates(classical[a], curves[name][0]) for a in anchors}
                    for name in curves if name.startswith("hitcodec") or name == "beta-vae-model"}
    for name in bd:  # the paper's question: does choosing the split beat the beta-VAE diagonal?
        bd[name]["diagonal"] = bd_rate(diagonal, curves[name][0])
        if baseline:  # and against the same architecture trained as a beta-VAE with the same steps
            bd[name]["beta-vae-model"] = bd_rate(baseline, curves[name][0])
    # every output is written here, after all measuring: a failure or Ctrl-C before leaves no partial set, and the
    # curves an earlier run wrote to this folder but this one did not measure go, so no stale curve sits beside it
    for stale in {"beta-vae-model", *CLASSICAL} - set(curves):
        (out / f"{stale}.json").unlink(missing_ok=True)
    for name, (pts, desc) in curves.items():
        (out / f"{name}.json").write_text(json.dumps(json_safe(compressai_json(name, desc, pts)), indent=2))
    (out / "grid.json").write_text(json.dumps(json_safe({
        "model_id": loaded.model_id_hex, "images": [n for n, _ in images], "grid": grid,
        "hull": [(p["beta2"], p["beta1"]) for p in hull], "bd_rate_percent": bd,
        "bd_rate_percent_per_image": bd_per_image, "speed": speed}), indent=2))
    plot(out, grid, diagonal, hull, classical, baseline)
    source = "the dev-eval photos (`--images dev`)" if args.images == "dev" else f"`{args.images}`"
    report = write_report(out, loaded, images, source, grid, diagonal, hull, curves, bd, speed, baseline_model,
                          bd_per_image, classical.get("webp"))
    print(report)


def write_report(out: Path, loaded, images, source: str, grid, diagonal, hull, curves, bd, speed,
                 baseline_model=None, bd_per_image=None, webp=None) -> str:
    anchors = list(next(iter(bd.values())).keys())
    baseline = (f" β-VAE model (`beta-vae-model`, the same architecture trained on β2 = β1 only): "
                f"`{baseline_model.model_id_hex}` ({baseline_model.path}).") if baseline_model else ""
    lines = ["# hitcodec rate/distortion report", "",
             f"Model `{loaded.model_id_hex}` ({loaded.path}); {len(images)} images from {source}; "
             f"{len(grid)} grid points.{baseline} Generated by `python -m benchmarks.rd`; numbers are means over "
             "images of real file sizes and uint8 PSNR.", "",
             "![RD curves](rd.png)", "", "![beta surface](beta_surface.png)", "",
             f"## BD-rate (%) against {', '.join(anchors)} (`diagonal`: the GHVAE's own β-VAE diagonal; negative = "
             "fewer bits for the same PSNR; each over the PSNR range the two curves share)", ""]
    lines += ["| curve | " + " | ".join(f"vs {a}" for a in anchors) + " |", "|---" * (len(anchors) + 1) + "|"]
    for name, row in bd.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[a]:+.1f}" for a in anchors) + " |")
    if bd_per_image and any(bd_per_image.values()):  # (empty where no anchor codec was measured)
        classical = list(next(iter(bd_per_image.values())))
        lines += ["", "BD-rate per image, then the mean over images (the other common convention; the table above is "
                      "of the mean curves, as CompressAI reports), with the range over images:", "",
                  "| curve | " + " | ".join(f"vs {a}: mean (min, max)" for a in classical) + " |",
                  "|---" * (len(classical) + 1) + "|"]
        for name, row in bd_per_image.items():
            cells = []
            for a in classical:
                values = [v for v in row[a].values() if math.isfinite(v)]
                cells.append(f"{np.mean(values):+.1f} ({min(values):+.1f}, {max(values):+.1f})" if values else "n/a")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    gap = webp is not None
    lines += ["", "## GHVAE hull (best split per total rate) and diagonal", "",
              "| curve | beta2 | beta1 | bpp | z2 bpp | z1 bpp | PSNR dB | MS-SSIM |"
              + (" bits vs WebP |" if gap else ""),
              "|---|---|---|---|---|---|---|---|" + ("---|" if gap else "")]
    for name, pts in (("hull", hull), ("diagonal", diagonal)):
        for p in pts:
            lines.append(f"| {name} | {p['beta2']:g} | {p['beta1']:g} | {p['bpp']:.4f} | {p['bpp_z2']:.4f} | "
                         f"{p['bpp_z1']:.4f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} |"
                         + (f" {_percent(rate_gap(webp, p))} |" if gap else ""))
    if gap:
        lines += ["", "bits vs WebP: the point's bits against WebP's mean curve at the same PSNR (negative = fewer): "
                      "the BD-rate is an average of such gaps over the PSNR range both curves share."]
    if speed:
        gpu = f"; GPU rows: {speed['cuda_device']}" if "cuda_device" in speed else ""
        lines += ["", f"## Speed (CPU with {speed['threads']} threads{gpu}; {speed['image_megapixels']:.2f} MP "
                      "image, median of 3 after warm-up, CUDA synchronised)", "",
                  "| codec | encode s/MP | decode s/MP |", "|---|---|---|"]
        for name, v in speed.items():
            if isinstance(v, dict) and "encode_s_per_mp" in v:
                lines.append(f"| {name} | {v['encode_s_per_mp']:.3f} | {v['decode_s_per_mp']:.3f} |")
        ans = speed["ans_symbols_per_s"]
        lines += ["", f"ANS coder alone: {ans['encode'] / 1e6:.1f} M symbols/s encode, "
                      f"{ans['decode'] / 1e6:.1f} M symbols/s decode. Peak RSS of a process compressing and "
                      f"decompressing the largest image: {speed['peak_rss_mb_compress_decompress']:.0f} MB."]
        if "cuda_peak_memory_mb" in speed:
            lines.append(f"Peak GPU memory allocated: {speed['cuda_peak_memory_mb']:.0f} MB.")
    text = "\n".join(lines) + "\n"
    (out / "REPORT.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
