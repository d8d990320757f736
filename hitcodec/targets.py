"""Rate targets from real coded sizes: a total size at a fixed split ratio, or one rate per layer.

Both searches encode for real (no estimates) and stop at the first result within tolerance; they return the
closest result found, with a message, when the target cannot be reached inside the beta square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from hitcodec import codec


@dataclass(frozen=True)
class TargetResult:
    coded: codec.Coded
    reached: bool  # within tolerance
    encodes: int  # how many real encodes the search used
    message: str  # what was reached, for the user


def _clamp(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi)


def search_scale(bits_at: Callable[[float], float], target: float, lo: float, hi: float, tolerance: float,
                 max_evals: int) -> tuple[float, int]:
    """Find log c in [lo, hi] with bits_at(log c) within ``tolerance`` of ``target``; bits fall as c grows.

    Secant steps on log bits, safeguarded by bisection. Returns the best log c and the evaluations used.
    """
    seen: list[tuple[float, float]] = []

    def ev(u: float) -> float:
        b = bits_at(u)
        seen.append((u, b))
        return b

    def err(b: float) -> float:
        return math.log(max(b, 1.0)) - math.log(target)

    def best() -> float:
        return min(seen, key=lambda p: abs(err(p[1])))[0]

    u0 = _clamp(0.0, lo, hi)
    e0 = err(ev(u0))
    if abs(e0) <= tolerance:
        return u0, len(seen)
    # bracket: bits fall with u, so too many bits (e > 0) means go up
    u1 = _clamp(u0 + (1.0 if e0 > 0 else -1.0) * min(abs(e0) * 1.5, 2.0), lo, hi)
    e1 = err(ev(u1))
    lo_u, hi_u = (u0, u1) if u0 < u1 else (u1, u0)
    lo_e, hi_e = (e0, e1) if u0 < u1 else (e1, e0)
    while lo_e * hi_e > 0 and len(seen) < max_evals:  # not bracketed yet: extend towards the target
        if lo_e > 0:  # even the upper end gives too many bits
            if hi_u >= hi:
                return best(), len(seen)
            lo_u, lo_e, hi_u = hi_u, hi_e, _clamp(hi_u + 1.5, lo, hi)
            hi_e = err(ev(hi_u))
        else:
            if lo_u <= lo:
                return best(), len(seen)
            hi_u, hi_e, lo_u = lo_u, lo_e, _clamp(lo_u - 1.5, lo, hi)
            lo_e = err(ev(lo_u))
    while len(seen) < max_evals:
        if abs(lo_e) <= tolerance or abs(hi_e) <= tolerance:
            break
        u = lo_u + (hi_u - lo_u) * lo_e / (lo_e - hi_e) if lo_e != hi_e else (lo_u + hi_u) / 2
        if not lo_u + 0.05 * (hi_u - lo_u) < u < hi_u - 0.05 * (hi_u - lo_u):
            u = (lo_u + hi_u) / 2
        e = err(ev(u))
        if e > 0:
            lo_u, lo_e = u, e
        else:
            hi_u, hi_e = u, e
    return best(), len(seen)


MIN_RATE, MAX_RATE = 1e-6, 1e6  # per-layer targets, bits per pixel: beyond them the search's ratios overflow
MAX_TARGET_BYTES = 2**53  # larger size targets are searched as this one (out of reach all the same)


def bytes_for_bpp(bpp: float, pixels: int) -> int:
    """File-size target in bytes (at least 1, at most MAX_TARGET_BYTES) for ``bpp`` bits per pixel over
    ``pixels`` pixels."""
    if not (math.isfinite(bpp) and bpp > 0):
        raise ValueError(f"the target bpp must be a finite positive number, not {bpp}")
    size = bpp * pixels / 8
    return MAX_TARGET_BYTES if size >= MAX_TARGET_BYTES else max(1, round(size))


def compress_to_size(loaded, image, target_bytes: int, ratio: float = 1.0, tolerance: float = 0.02,
                     max_encodes: int = 8, device: str = "cpu") -> TargetResult:
    """Encode with beta2 = ratio * c and beta1 = c, searching c until the file is within ``tolerance`` of
    ``target_bytes`` (or the square's edge is reached)."""
    beta_min, beta_max = loaded.model.config.beta_min, loaded.model.config.beta_max
    if not math.isfinite(ratio) or not beta_min / beta_max <= ratio <= beta_max / beta_min:
        raise ValueError(f"the ratio beta2/beta1 must lie in [{beta_min / beta_max:g}, {beta_max / beta_min:g}], "
                         f"got {ratio}")
    if target_bytes <= 0:
        raise ValueError("the target size must be positive")
    target_bytes = min(target_bytes, MAX_TARGET_BYTES)
    log_min, log_max = math.log(beta_min), math.log(beta_max)
    lo = max(log_min, log_min - math.log(ratio))
    hi = min(log_max, log_max - math.log(ratio))
    cache: dict[float, codec.Coded] = {}

    def betas(u: float) -> tuple[float, float]:
        c = math.exp(u)
        return _clamp(ratio * c, beta_min, beta_max), _clamp(c, beta_min, beta_max)

    def bits_at(u: float) -> float:
        cache[u] = codec.encode(loaded, image, *betas(u), device=device)
        return 8.0 * len(cache[u].data)

    u, n = search_scale(bits_at, 8.0 * target_bytes, lo, hi, math.log1p(tolerance), max_encodes)
    coded = cache[u]
    off = len(coded.data) / target_bytes - 1
    reached = abs(off) <= tolerance
    beta2, beta1 = coded.header.beta2, coded.header.beta1
    versus = f"{off:+.1%} of the target {target_bytes} bytes" if target_bytes < MAX_TARGET_BYTES else \
        "the target: 2^53 or more"
    msg = f"{len(coded.data)} bytes ({versus}) at beta2 {beta2:.4g}, beta1 {beta1:.4g} after {n} encodes"
    if not reached:
        sizes = {len(c.data) for c in cache.values()}
        below, above = [b for b in sizes if b < target_bytes], [b for b in sizes if b > target_bytes]
        if not below and hi in cache:  # every encode too large, the largest betas' end (the smallest file) included
            msg += (f"; the target is out of reach: the smallest file the model made at this beta2/beta1 ratio is "
                    f"{min(above)} bytes")
        elif not above and lo in cache:
            msg += (f"; the target is out of reach: the largest file the model made at this beta2/beta1 ratio is "
                    f"{max(below)} bytes")
        elif below and above:  # (the sizes of a small image step by whole 4-byte words)
            msg += f"; no size within {tolerance:.0%}: the nearest were {max(below)} and {min(above)} bytes"
        else:
            msg += "; no closer size found within the encode budget"
    return TargetResult(coded, reached, n, msg)


def compress_to_layer_rates(loaded, image, target_bpp_z2: float, target_bpp_z1: float, tolerance: float = 0.05,
                            max_encodes: int = 12, device: str = "cpu") -> TargetResult:
    """Search (beta2, beta1) until each layer's actual coded bits are within ``tolerance`` of its target."""
    if not (MIN_RATE <= target_bpp_z2 <= MAX_RATE and MIN_RATE <= target_bpp_z1 <= MAX_RATE):  # refuses nan too
        raise ValueError(f"per-layer target rates must lie in [{MIN_RATE:g}, {MAX_RATE:g}] bits per pixel")
    beta_min, beta_max = loaded.model.config.beta_min, loaded.model.config.beta_max
    log_min, log_max = math.log(beta_min), math.log(beta_max)
    pixels = image.rgb.shape[0] * image.rgb.shape[1]
    targets = (target_bpp_z2, target_bpp_z1)
    logs = [_clamp(0.0, log_min, log_max)] * 2  # log beta2, log beta1: start at 1 where the range allows
    slopes = [1.0, 1.0]  # -d log R_layer / d log beta_layer, refined by secant steps
    history: list[tuple[list[float], list[float], codec.Coded]] = []
    for _ in range(max_encodes):
        coded = codec.encode(loaded, image, *(_clamp(math.exp(v), beta_min, beta_max) for v in logs), device=device)
        rates = [max(8 * layer.payload_bytes / pixels, 1e-6) for layer in coded.layers]
        errs = [math.log(r / t) for r, t in zip(rates, targets)]
        history.append((list(logs), errs, coded))
        if all(abs(e) <= math.log1p(tolerance) for e in errs):
            break
        if len(history) >= 2:
            (prev_logs, prev_errs, _) = history[-2]
            for i in range(2):
                d = logs[i] - prev_logs[i]
                if abs(d) > 1e-3:
                    slopes[i] = _clamp(-(errs[i] - prev_errs[i]) / d, 0.2, 5.0)
        logs = [_clamp(logs[i] + errs[i] / slopes[i], log_min, log_max) for i in range(2)]
        if logs == history[-1][0]:  # pinned at the square's edge
            break
    logs, errs, coded = min(history, key=lambda h: max(abs(e) for e in h[1]))
    reached = all(abs(e) <= math.log1p(tolerance) for e in errs)
    parts = []
    for i, (name, layer, target, e) in enumerate(zip(("z2", "z1"), coded.layers, targets, errs)):
        ok = abs(e) <= math.log1p(tolerance)
        met_alone = any(abs(h[1][i]) <= math.log1p(tolerance) for h in history)  # at betas where the other was off
        why = "" if ok else ", not reached together with the other layer" if met_alone else ", out of reach"
        parts.append(f"{name} {8 * layer.payload_bytes / pixels:.4f} bpp (target {target:g}{why})")
    msg = (", ".join(parts) + f" at beta2 {coded.header.beta2:.4g}, beta1 {coded.header.beta1:.4g} "
           f"after {len(history)} encodes")
    return TargetResult(coded, reached, len(history), msg)
