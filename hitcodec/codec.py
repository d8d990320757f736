"""Image <-> bytes with a GHVAE: the top-down walk over the layers, shared by encoder and decoder.

    image (uint8) ─► x ─► bottom_up ─► [z2: prior_z2(β) ─ code] ─► top_down ─► [z1: prior_z1(ctx) ─ code] ─► bytes
    bytes ─► [z2: prior_z2(β) ─ decode] ─► top_down ─► [z1: prior_z1(ctx) ─ decode] ─► synthesis ─► image (uint8)

`walk_layers` is the only place where the layers' priors are evaluated for coding; the encoder and the decoder
differ only in the `take` callback that turns a layer's prior into integer symbols (by rounding the posterior
mean and coding, or by decoding).
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hitcodec import bitstream, coding, refine
from hitcodec.bitstream import BitstreamError, Header
from hitcodec.image import CodecImage
from hitcodec.models.ghvae import BETA_MAX, BETA_MIN, GHVAE, STRIDE, GHVAEConfig, log_beta_input, pad_to_stride
from hitcodec.weights import DEFAULT_WEIGHTS, LoadedModel, resolve_device

LAYERS = ("z2", "z1")  # coding order: top layer first
# oneDNN off for the priors (walk_layers); None leaves the TF32 settings that newer torch versions also take alone
_NO_ONEDNN = {"enabled": False, **{k: None for k in ("deterministic", "allow_tf32", "fp32_precision")
                                   if k in inspect.signature(torch.backends.mkldnn.flags).parameters}}
# That switch is one for the whole process (torch has none per thread), so encode and decode run one at a time:
# a call in another thread could otherwise compute its priors with oneDNN (a file its decoder cannot read), or
# its transforms without it (other pixels), and leave the switch off when the two calls' restores cross.
_ONE_AT_A_TIME = threading.RLock()


def _new_lock_after_fork() -> None:  # a child forked while another thread coded would wait forever on a copy
    global _ONE_AT_A_TIME  # of the held lock (as the logging module does for its locks)
    _ONE_AT_A_TIME = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _one_at_a_time(fn):
    """Run ``fn`` under the lock above, and as under torch's defaults whatever the calling application set: no
    autocast (it would run the transforms, and version 1's float32 priors, in 16 bits: other bytes, or a file that
    does not decode), and new tensors on the CPU (``torch.set_default_device``). The autocast switch is per thread;
    the device one, under the lock, as good as."""
    @functools.wraps(fn)
    def locked(*args, **kwargs):
        with _ONE_AT_A_TIME, torch.device("cpu"), torch.autocast("cpu", enabled=False), \
                torch.autocast("cuda", enabled=False):
            return fn(*args, **kwargs)
    return locked


class ModelMismatchError(ValueError):
    """A bitstream made by another model than the one given for decoding."""


def check_whole(name: str, value, minimum: int) -> int:
    """``value`` as an int (numpy's integers too): TypeError unless it is a whole number (bool is not), ValueError
    if it is below ``minimum``."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be a whole number, not {type(value).__name__}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return value


def check_real(name: str, value) -> float:
    """``value`` as a float (nan where float() fails, e.g. 10**400): TypeError unless it is a number (a str, whose
    float() would parse it, and bool are not)."""
    if isinstance(value, (str, bytes, bool)) or not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def check_bool(name: str, value) -> bool:
    """``value`` if it is a bool (numpy's too): TypeError otherwise ("no" would count as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}")
    return bool(value)


def check_betas(beta2: float, beta1: float, config: GHVAEConfig | None = None) -> tuple[float, float]:
    """Validate the multipliers against the model's trained range (``config``; default [0.1, 10]) and round them
    to float32, the precision stored in the bitstream. Each end of the range is accepted as given and as float32
    rounds it, so that a file written at an end reads back (float32(0.01) lies below 0.01)."""
    lo, hi = (config.beta_min, config.beta_max) if config is not None else (BETA_MIN, BETA_MAX)
    lo, hi = min(lo, float(np.float32(lo))), max(hi, float(np.float32(hi)))  # float32(0.01) < 0.01 < float32(0.1)
    checked = []
    for name, beta in (("beta2", beta2), ("beta1", beta1)):
        value = check_real(name, beta)
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {beta!r}")
        checked.append(float(np.float32(value)))
    return checked[0], checked[1]


@dataclass(frozen=True)
class LayerStats:
    name: str
    symbols: int  # number of coded latents
    payload_bytes: int  # actual bytes in the file
    estimated_bits: float  # ideal code length under the (snapped) prior; the ANS coder lands within ~0.1 %

    def to_dict(self) -> dict:
        return {"name": self.name, "symbols": self.symbols, "payload_bytes": self.payload_bytes,
                "actual_bits": 8 * self.payload_bytes, "estimated_bits": round(self.estimated_bits, 1)}


@dataclass(frozen=True)
class Coded:
    data: bytes
    header: Header
    layers: tuple[LayerStats, ...]
    symbols: dict[str, np.ndarray]  # integer latents per layer, as coded

    @property
    def bpp(self) -> float:
        return 8 * len(self.data) / (self.header.width * self.header.height)


Take = Callable[[str, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def walk_layers(model: GHVAE, e: torch.Tensor, z2_height: int, z2_width: int, take: Take) -> torch.Tensor:
    """Walk the layers top-down; ``take(layer, mean, scale, ctx)`` returns the layer's integer symbols.

    Returns ẑ1 = mean1 + z1_sym, the input of the synthesis transform, in the dtype of ``model`` and ``e``
    (`prior_networks`). A scale that lands on the other side of a table boundary in the decoder than in the
    encoder desynchronises the decoder, so the priors are computed in float64 (format version 2): in float32,
    another CPU's BLAS kernels moved about 1.5 scales per million across a boundary (docs/bitstream.md). They
    are also computed without oneDNN, whose convolutions can round differently with the number of threads.
    (These networks run at 1/16 and 1/64 resolution, so float64 and the slower kernels cost little.)
    """
    with torch.backends.mkldnn.flags(**_NO_ONEDNN):
        mean2, scale2 = model.prior_z2(e, z2_height, z2_width)
        z2_hat = mean2 + take("z2", mean2, scale2, None)
        ctx = model.top_down(z2_hat, e)
        mean1, scale1 = model.prior_z1(ctx, e)
        return mean1 + take("z1", mean1, scale1, ctx)


# Tiles for the full-resolution transforms, so memory stays bounded whatever the image size. Halos exceed the
# receptive fields (g_a: 61 px; g_s: under 3 latents), so tiles only differ from a whole-image pass by float
# rounding. Tiling is encoder-only for g_a and pixels-only for g_s: it never changes what the decoder decodes.
ANALYSIS_TILE, ANALYSIS_HALO = 1024, 128  # pixels (multiples of 16)
SYNTHESIS_TILE, SYNTHESIS_HALO = 64, 4  # z1 positions (1/16 resolution)


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, factor: float, tile: int,
          halo: int) -> torch.Tensor:
    """Apply a fully convolutional ``fn`` (output size = input size * factor) tile by tile with halos."""
    height, width = x.shape[2:]
    if height <= tile + halo and width <= tile + halo:
        return fn(x)
    out = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            t0, l0 = max(top - halo, 0), max(left - halo, 0)
            t1, l1 = min(top + tile + halo, height), min(left + tile + halo, width)
            y = fn(x[:, :, t0:t1, l0:l1])
            if out is None:
                out = y.new_empty(y.shape[0], y.shape[1], int(height * factor), int(width * factor))
            bottom, right = min(top + tile, height), min(left + tile, width)
            out[:, :, int(top * factor):int(bottom * factor), int(left * factor):int(right * factor)] = y[
                :, :, int((top - t0) * factor):int((bottom - t0) * factor),
                int((left - l0) * factor):int((right - l0) * factor)]
    return out


def _bottom_up(model: GHVAE, x: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = tiled(lambda t: model.analysis(t, e), x, 1 / 16, ANALYSIS_TILE, ANALYSIS_HALO)
    return h, model.posterior_z2(h, e)


def _synthesis(model: GHVAE, z1_hat: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    return tiled(lambda t: model.synthesis(t, e), z1_hat, 16, SYNTHESIS_TILE, SYNTHESIS_HALO)


def _embed(model: GHVAE, beta2: float, beta1: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return model.embed(log_beta_input(torch.tensor([beta2], dtype=dtype), torch.tensor([beta1], dtype=dtype), dtype))


def prior_networks(loaded: LoadedModel, beta2: float, beta1: float,
                   version: int = bitstream.VERSION) -> tuple[GHVAE, torch.Tensor]:
    """The model and β embedding that `walk_layers` computes the priors with: float64 from format version 2 on,
    the float32 model in version 1 (whose files decode as they were made)."""
    if version == 1:
        return loaded.model, _embed(loaded.model, beta2, beta1)
    model = loaded.priors()
    return model, _embed(model, beta2, beta1, torch.float64)


def latents_crc(symbols: dict[str, np.ndarray]) -> int:
    """CRC-32 of the latent symbols as int32 little-endian, layer by layer in coding order (format version 2)."""
    crc = 0
    for name in LAYERS:
        crc = zlib.crc32(np.ascontiguousarray(symbols[name], dtype="<i4").tobytes(), crc)
    return crc


def _to_uint8(x_hat: torch.Tensor, height: int, width: int) -> np.ndarray:
    x = x_hat[0, :, :height, :width].clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


@_one_at_a_time
@torch.inference_mode()
def encode(loaded: LoadedModel, image: CodecImage, beta2: float, beta1: float,
           device: str | torch.device = "cpu", refine_steps: int = 0) -> Coded:
    """Code an image at (beta2, beta1); returns the .hit bytes with per-layer statistics.

    ``device`` runs the image-side networks (analysis and the posteriors); the priors, which both sides must
    compute bit for bit alike, always run on the CPU, so a file decodes the same whichever device encoded it.
    ``refine_steps`` > 0 refines z1 for this image by that many gradient steps (`hitcodec.refine`; tile by tile
    on images with a side above 1088 pixels, so that its memory stays bounded).
    """
    beta2, beta1 = check_betas(beta2, beta1, loaded.model.config)
    refine_steps = check_whole("refine_steps", refine_steps, 0)
    model, device = loaded.model, resolve_device(device)
    net = loaded.on(device)
    height, width = image.rgb.shape[:2]
    x = torch.from_numpy(np.array(image.rgb)).permute(2, 0, 1)[None].float() / 255  # (1, 3, H, W)
    e = _embed(model, beta2, beta1)
    e_dev = e.to(device)
    h, y2 = _bottom_up(net, pad_to_stride(x).to(device), e_dev)  # (1, n, H/16, W/16), (1, c2, H/64, W/64)
    o1 = None
    if refine_steps:
        ctx, mean1, scale1 = refine.z1_context(net, y2, e_dev)
        o1 = net.posterior_z1(h, ctx, mean1, e_dev) - mean1
        with torch.inference_mode(False):  # (autograd takes clones of the tensors made in inference mode)
            args = (t.clone() for t in (x.to(device), e_dev, mean1, scale1, o1))
            o1, _ = refine.refine_z1(net, *args, beta1, refine_steps)
        o1 = o1.cpu()
    y2 = y2.cpu()
    payloads: dict[str, bytes] = {}
    stats: dict[str, LayerStats] = {}
    symbols: dict[str, np.ndarray] = {}

    def take(name: str, mean: torch.Tensor, scale: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
        if name == "z2":
            offset = y2.to(mean.dtype) - mean
        elif o1 is not None:  # refined offsets from the prior mean
            offset = o1.to(mean.dtype)
        else:  # the posterior runs on the image side, in float32, from the float64 prior mean and context
            y = net.posterior_z1(h, ctx.to(device, torch.float32), mean.to(device, torch.float32), e_dev).cpu()
            offset = y.to(mean.dtype) - mean
        if not (torch.isfinite(offset).all() and torch.isfinite(scale).all()):  # overflow in damaged weights
            raise ValueError(f"the model gives non-finite {name} latents for this image (a damaged model file?)")
        sym = coding.clamp_symbols(torch.round(offset).numpy())
        idx = coding.scale_index(scale.numpy())
        payloads[name] = coding.encode_symbols(sym, idx)
        stats[name] = LayerStats(name, sym.size, len(payloads[name]), coding.information_bits(sym, idx))
        symbols[name] = sym
        return torch.from_numpy(sym).to(mean.dtype).view(mean.shape)

    walk_layers(*prior_networks(loaded, beta2, beta1), y2.shape[2], y2.shape[3], take)
    parts = [payloads[name] for name in LAYERS]
    if image.alpha is not None:
        parts.append(zlib.compress(np.ascontiguousarray(image.alpha).tobytes(), 9))
    header = Header(loaded.model_id, beta2, beta1, width, height, image.mode, latents_crc(symbols))
    data = bitstream.pack(header, parts)
    return Coded(data, header, tuple(stats[name] for name in LAYERS), symbols)


@dataclass(frozen=True)
class Decoded:
    image: CodecImage | None  # None when decoded with pixels=False
    header: Header
    layers: tuple[LayerStats, ...]
    symbols: dict[str, np.ndarray]


@_one_at_a_time
@torch.inference_mode()
def decode(loaded: LoadedModel, data: bytes, max_pixels: int = bitstream.DEFAULT_MAX_PIXELS,
           pixels: bool = True, device: str | torch.device = "cpu") -> Decoded:
    """Decode .hit bytes; raises BitstreamError, ModelMismatchError or coding.CodingError on bad data.

    With ``pixels=False`` only the latents are decoded (no synthesis): enough for statistics. ``device`` runs
    the synthesis transform; the latents are decoded on the CPU and are the same whatever the device.
    """
    device = resolve_device(device)
    header, parts = bitstream.unpack(data, max_pixels=max_pixels)
    if header.model_id != loaded.model_id:
        which = ("the shipped model" if Path(loaded.path) == DEFAULT_WEIGHTS else loaded.path)
        raise ModelMismatchError(f"file was made by model {header.model_id_hex}, but the loaded model is "
                                 f"{loaded.model_id_hex} ({which}): give the model file that made it (--model, "
                                 "model= in Python)")
    has_alpha = header.mode in ("LA", "RGBA")
    if len(parts) != len(LAYERS) + has_alpha:
        raise BitstreamError(f"hitcodec file has {len(parts)} payload{'s' * (len(parts) != 1)}, expected "
                             f"{len(LAYERS) + has_alpha}")
    try:
        beta2, beta1 = check_betas(header.beta2, header.beta1, loaded.model.config)
    except ValueError as exc:
        raise BitstreamError(f"corrupt hitcodec header: {exc}") from exc
    alpha = _decode_alpha(parts[-1], header.height, header.width) if has_alpha else None  # cheap, so first
    payloads = dict(zip(LAYERS, parts))
    for name, payload in payloads.items():  # checks of the bytes alone, before the priors of the declared size
        try:
            coding.payload_words(payload)
        except coding.CodingError as exc:
            raise coding.CodingError(f"corrupt hitcodec file: {name} {exc}") from None
    stats: dict[str, LayerStats] = {}
    symbols: dict[str, np.ndarray] = {}

    def take(name: str, mean: torch.Tensor, scale: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
        idx = coding.scale_index(scale.numpy())
        try:
            sym = coding.decode_symbols(payloads[name], idx)
        except coding.CodingError as exc:
            raise coding.CodingError(f"corrupt hitcodec file: {name} {exc}") from None
        stats[name] = LayerStats(name, sym.size, len(payloads[name]), coding.information_bits(sym, idx))
        symbols[name] = sym
        return torch.from_numpy(sym).to(mean.dtype).view(mean.shape)

    z2_height = -(-header.height // STRIDE)
    z2_width = -(-header.width // STRIDE)
    z1_hat = walk_layers(*prior_networks(loaded, beta2, beta1, header.version), z2_height, z2_width, take)
    if header.latents_crc is not None and latents_crc(symbols) != header.latents_crc:
        raise coding.CodingError("the latents decode differently here than where the file was made (latents "
                                 "CRC-32 mismatch): a damaged file, or a decoder whose arithmetic differs")
    layers = tuple(stats[n] for n in LAYERS)
    if not pixels:
        return Decoded(None, header, layers, symbols)
    e = _embed(loaded.model, beta2, beta1).to(device)
    z1_hat = z1_hat.to(device, torch.float32)
    rgb = _to_uint8(_synthesis(loaded.on(device), z1_hat, e).cpu(), header.height, header.width)
    return Decoded(CodecImage(rgb, alpha, header.mode), header, layers, symbols)


def _decode_alpha(payload: bytes, height: int, width: int) -> np.ndarray:
    inflater = zlib.decompressobj()
    try:
        plane = inflater.decompress(payload, height * width + 1)
    except zlib.error as exc:
        raise BitstreamError(f"corrupt alpha plane: {exc}") from exc
    if len(plane) != height * width or not inflater.eof or inflater.unused_data:
        raise BitstreamError("corrupt alpha plane (wrong size)")
    return np.frombuffer(plane, dtype=np.uint8).reshape(height, width)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays (data range 255)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)
