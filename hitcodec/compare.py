"""A side-by-side picture of hitcodec against JPEG, WebP and AVIF at matched file size (``hitcodec compare``)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from hitcodec import codec, targets
from hitcodec.image import CodecImage, written_rgb

SPLIT_RATIOS = (0.25, 0.5, 1.0, 2.0, 4.0)  # beta2/beta1 tried for "best split"
PILLOW_CODECS = {"JPEG": ("JPEG", {"optimize": True}), "WebP": ("WEBP", {"method": 6}), "AVIF": ("AVIF", {})}


@dataclass(frozen=True)
class Panel:
    label: str
    rgb: np.ndarray  # (H, W, 3) uint8
    bytes: int
    psnr: float

    @property
    def bpp(self) -> float:
        return 8 * self.bytes / (self.rgb.shape[0] * self.rgb.shape[1])


def _pillow_at_size(rgb: np.ndarray, fmt: str, target_bytes: int, gray: bool = False) -> tuple[np.ndarray, int]:
    """The largest quality whose file is at most target_bytes (the smallest quality if none is); a ``gray`` image
    is coded as one ("L")."""
    pil_format, options = PILLOW_CODECS[fmt]
    im = Image.fromarray(rgb).convert("L") if gray else Image.fromarray(rgb)

    def encode(q: int) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format=pil_format, quality=q, **options)
        return buf.getvalue()

    lo, hi, best = 1, 100, encode(1)
    while lo <= hi:
        mid = (lo + hi) // 2
        data = encode(mid)
        if len(data) <= target_bytes:
            best, lo = data, mid + 1
        else:
            hi = mid - 1
    return np.asarray(Image.open(io.BytesIO(best)).convert("RGB")), len(best)


def _hitcodec_at_size(loaded, image: CodecImage, target_bytes: int,
                      ratio: float) -> tuple[np.ndarray, int, float, float]:
    coded = targets.compress_to_size(loaded, image, target_bytes, ratio=ratio).coded
    decoded = codec.decode(loaded, coded.data)
    return written_rgb(decoded.image), len(coded.data), coded.header.beta2, coded.header.beta1


def panels_at(loaded, image: CodecImage, bpp: float) -> list[Panel]:
    """Original, hitcodec at its best split, hitcodec on the beta-VAE diagonal, then JPEG, WebP, AVIF."""
    rgb = image.rgb
    target = targets.bytes_for_bpp(bpp, rgb.shape[0] * rgb.shape[1])
    found = []
    for ratio in SPLIT_RATIOS:
        out, size, b2, b1 = _hitcodec_at_size(loaded, image, target, ratio)
        found.append((codec.psnr(rgb, out), ratio, out, size, b2, b1))
    fair = [f for f in found if f[3] <= target * 1.02]  # a split that overshot the size is no winner; where
    fair = fair or [min(found, key=lambda f: f[3])]  # every split overshot, the one closest to the size
    best = max(fair, key=lambda f: f[0])
    diag = next(f for f in found if f[1] == 1.0)
    panels = [Panel("original", rgb, 0, float("inf"))]
    for name, f in (("hitcodec best split", best), ("hitcodec β2 = β1", diag)):
        panels.append(Panel(f"{name} (β2 {f[4]:.2g}, β1 {f[5]:.2g})", f[2], f[3], f[0]))
    from PIL import features

    for fmt in PILLOW_CODECS:
        if fmt == "AVIF" and not features.check("avif"):
            continue
        out, size = _pillow_at_size(rgb, fmt, target, gray=image.mode in ("L", "LA"))
        panels.append(Panel(fmt, out, size, codec.psnr(rgb, out)))
    return panels


def render(panels: list[Panel], out, zoom: int = 4, fmt: str | None = None) -> None:
    """One figure: the images in a row with bpp and PSNR, and a zoomed detail (the image's centre) below each;
    ``out`` a path or a binary file, ``fmt`` a matplotlib format (png, pdf, svg, ...; default: by the suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = panels[0].rgb.shape[:2]
    dh, dw = max(8, h // (2 * zoom)), max(8, w // (2 * zoom))
    top, left = (h - dh) // 2, (w - dw) // 2
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(3 * n, 6.4), squeeze=False)
    for i, p in enumerate(panels):
        axes[0, i].imshow(p.rgb)
        axes[0, i].add_patch(plt.Rectangle((left, top), dw, dh, fill=False, ec="r", lw=1))
        title = p.label if p.bytes == 0 else f"{p.label}\n{p.bpp:.3f} bpp, {p.psnr:.2f} dB"
        axes[0, i].set_title(title, fontsize=8)
        axes[1, i].imshow(p.rgb[top:top + dh, left:left + dw], interpolation="nearest")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=110, format=fmt)
    plt.close(fig)
