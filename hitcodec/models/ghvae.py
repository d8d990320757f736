"""Generalized top-down hierarchical VAE (GHVAE) with two layers of latents, conditioned on (beta2, beta1).

Xiao & Bamler, "Trading Information between Latents in Hierarchical Variational Autoencoders", ICLR 2023.

Generative model  p(z2) p(z1|z2) p(x|z1);  inference (same order)  q(z2|x) q(z1|z2, x):

    x ──g_a──► h ──h_a──► y2 ──Q──► ẑ2 ─────────h_s──────────► ctx ──prior_z1──► (mean1, scale1)
               │          (prior_z2(β): mean2, scale2)          │
               └────────────────────── enc_z1([h, ctx]) ────────┴─► y1 = mean1 + Δ ──Q──► ẑ1 ──g_s──► x_hat

All sub-networks get e = embed(log beta2, log beta1) through FiLM layers, so one network serves every
(beta2, beta1) in [0.1, 10]^2. Latents are quantized around their prior mean: z_sym = round(y - mean),
ẑ = mean + z_sym. With ``latent_bins`` (GHVAEConfig) each latent channel's quantization bin has a width
Δ(β) > 0 learned as a function of beta (like the gain and inverse-gain units of Cui et al., CVPR 2021): the
latents and their priors are expressed in units of Δ, so the rounding, the rates and the bitstream stay on the
unit grid, and the transforms that read ẑ multiply by Δ again. In training, z2 gets additive uniform noise
(rate and top-down path); z1 gets noise for its rate and straight-through rounding for the synthesis path.
Rates are in nats.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import asdict, dataclass

import warnings

import torch
import torch.nn.functional as F
from torch import nn


def _compressai_layers() -> tuple[type, type]:
    """compressai's GDN and LowerBound, loaded without running compressai/__init__.py where compressai is not
    imported yet.

    That file imports all of compressai, its point-cloud datasets (torch_geometric, torch._dynamo) and
    scipy.stats included: 3.0 s of the 5.7 s that `hitcodec compress` took for a 512² photo on 2 cores, of
    which the coding was 0.3 s. Only the two subpackages are loaded, under a bare (not executed) package entry
    that is removed again, so a later `import compressai` runs the package as usual and reuses these modules:
    compressai.layers.GDN stays the class used here."""
    spec = importlib.util.find_spec("compressai") if "compressai" not in sys.modules else None
    if spec is not None and spec.submodule_search_locations:
        before = set(sys.modules)
        sys.modules["compressai"] = importlib.util.module_from_spec(spec)
        try:
            from compressai.layers.gdn import GDN
            from compressai.ops.bound_ops import LowerBound
            return GDN, LowerBound
        except ImportError:  # a compressai whose layers need the package: import it as usual below
            for name in set(sys.modules) - before:
                del sys.modules[name]
        finally:
            sys.modules.pop("compressai", None)
    from compressai.layers import GDN
    from compressai.ops import LowerBound
    return GDN, LowerBound


with warnings.catch_warnings():  # compressai calls the deprecated torch.jit.script at import time
    warnings.simplefilter("ignore", FutureWarning)
    GDN, LowerBound = _compressai_layers()

BETA_MIN = 0.1  # the default trained range of beta2 and beta1; a model's own is GHVAEConfig.beta_min/beta_max
BETA_MAX = 10.0
FLOAT32_TINY, FLOAT32_MAX = 1.1754943508222875e-38, 3.4028234663852886e38  # a beta range must lie within these
SCALE_MIN = 0.11
STRIDE = 64  # total down-sampling of z2; inputs are padded to a multiple of this


@dataclass(frozen=True)
class GHVAEConfig:
    n: int = 128  # channels of the transforms
    z1_channels: int = 192  # channels of z1 (1/16 resolution)
    z2_channels: int = 128  # channels of z2 (1/64 resolution)
    embed: int = 64  # width of the beta embedding
    sigma_x: float = 0.07  # std of the Gaussian likelihood p(x|z1) on [0, 1] pixels; D = |x - x_hat|^2 / (2 sigma_x^2)
    beta_min: float = BETA_MIN  # the square [beta_min, beta_max]^2 the model is trained on and accepts
    beta_max: float = BETA_MAX
    latent_bins: bool = False  # a learned bin width per latent channel as a function of beta (module docstring)
    cond_kernels: int = 0  # > 0: every conv of g_a and g_s adds a beta-weighted mixture of this many kernels (CondConv)
    bins_max: float = 0.0  # > 0: the learned bin widths are capped at this (`GHVAE.bin_width`); 0 = no cap
    z1_min_channels: int = 0  # > 0: z1 channels in use at beta1 = beta_max, all at beta_min (`GHVAE.z1_mask`)
    mask_synthesis: bool = False  # with z1_min_channels: the synthesis reads 0 for the z1 channels not in use
    decoder_gains: bool = False  # a learned gain per latent channel and beta on the decoder side (`GHVAE.decoder_gain`)

    def __post_init__(self):
        for name in ("n", "z1_channels", "z2_channels", "embed"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a whole number >= 1, not {getattr(self, name)!r}")
        if not (math.isfinite(self.sigma_x) and self.sigma_x > 0):
            raise ValueError(f"sigma_x must be > 0, not {self.sigma_x!r}")
        if not (isinstance(self.cond_kernels, int) and self.cond_kernels >= 0):
            raise ValueError(f"cond_kernels must be a whole number >= 0, not {self.cond_kernels!r}")
        if not (isinstance(self.z1_min_channels, int) and 0 <= self.z1_min_channels <= self.z1_channels):
            raise ValueError(f"z1_min_channels must be a whole number in [0, z1_channels = {self.z1_channels}], "
                             f"not {self.z1_min_channels!r}")
        if self.mask_synthesis and not self.z1_min_channels:
            raise ValueError("mask_synthesis needs z1_min_channels > 0")
        if not (math.isfinite(self.bins_max) and self.bins_max >= 0):
            raise ValueError(f"bins_max must be 0 (no cap) or a width > 0, not {self.bins_max!r}")
        if not (FLOAT32_TINY <= self.beta_min < self.beta_max <= FLOAT32_MAX):  # as the file header stores them
            raise ValueError(f"the beta range must satisfy 0 < beta_min < beta_max, within float32's normal numbers "
                             f"[{FLOAT32_TINY:.3g}, {FLOAT32_MAX:.3g}], not [{self.beta_min:g}, {self.beta_max:g}]")

    def to_dict(self) -> dict:
        """The config as stored in model files. The beta range is left out where it is the default, so that
        models trained before it was configurable keep their files and ids (`hitcodec.weights.model_id`)."""
        d = asdict(self)
        if (self.beta_min, self.beta_max) == (BETA_MIN, BETA_MAX):
            del d["beta_min"], d["beta_max"]
        if not self.latent_bins:
            del d["latent_bins"]
        if not self.cond_kernels:
            del d["cond_kernels"]
        if not self.bins_max:
            del d["bins_max"]
        if not self.z1_min_channels:
            del d["z1_min_channels"]
        if not self.mask_synthesis:
            del d["mask_synthesis"]
        if not self.decoder_gains:
            del d["decoder_gains"]
        return d


def log_beta_input(beta2: torch.Tensor, beta1: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, 2) network input from the multipliers: log10(beta) lies in [-1, 1] on the trained square."""
    return torch.stack([torch.log10(beta2), torch.log10(beta1)], dim=-1).to(dtype)


class FiLM(nn.Module):
    """Per-channel affine modulation from the beta embedding; the identity at initialisation."""

    def __init__(self, channels: int, embed: int):
        super().__init__()
        self.proj = nn.Linear(embed, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        params = self.proj(e).reshape(e.shape[0], -1, *([1] * (x.dim() - 2)))  # (B, 2C) or (B, 2C, 1, 1)
        gain, shift = params.chunk(2, dim=1)
        return x * (1 + gain) + shift


def beta_embedding(width: int, keep_beta1: bool = False) -> nn.Sequential:
    """e = embed(log10 beta2, log10 beta1): the conditioning input of every FiLM layer. With ``keep_beta1`` e has
    log10 beta1 itself as a last column (width + 1 in all), from which `GHVAE.z1_mask` reads which z1 channels are
    in use."""
    layers = (nn.Linear(2, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU())
    return _KeepBeta1(*layers) if keep_beta1 else nn.Sequential(*layers)


class _KeepBeta1(nn.Sequential):
    """The embedding network, with its input's log10 beta1 appended to its output (`beta_embedding`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.cat([super().forward(x), x[:, 1:]], dim=1)


class CondConv(nn.Module):
    """A convolution whose kernel depends on beta: W(e) = W + sum_k a_k(e) W_k, with K extra kernels W_k and routing
    weights a(e) (CondConv, Yang et al., NeurIPS 2019, here as a residual to the plain kernel). The W_k start at 0,
    so the layer starts as the plain convolution, and the routing starts random, so that each W_k gets a
    beta-dependent gradient from the first step (with a = 0 and random W_k instead, a stayed near 0 and near
    constant in beta through 12 000 steps: docs/equal-steps.md). Each image of a batch gets its own kernel, through one
    grouped convolution over the batch."""

    def __init__(self, base: nn.Conv2d | nn.ConvTranspose2d, kernels: int, embed: int):
        super().__init__()
        self.base = base
        self.experts = nn.Parameter(torch.zeros(kernels, *base.weight.shape))
        self.route = nn.Linear(embed, kernels)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        b, base = x.shape[0], self.base
        weight = base.weight + torch.einsum("bk,k...->b...", self.route(e).to(base.weight.dtype), self.experts)
        weight = weight.reshape(-1, *weight.shape[2:])  # (B * out, in, k, k), or (B * in, out, k, k) transposed
        grouped = x.reshape(1, -1, *x.shape[2:])
        if isinstance(base, nn.ConvTranspose2d):
            y = F.conv_transpose2d(grouped, weight, None, base.stride, base.padding, base.output_padding, groups=b)
        else:
            y = F.conv2d(grouped, weight, None, base.stride, base.padding, groups=b)
        return y.reshape(b, -1, *y.shape[2:]) + base.bias[:, None, None]


class CondSequential(nn.Sequential):
    """nn.Sequential that passes the beta embedding to its FiLM and CondConv layers."""

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, e) if isinstance(layer, (FiLM, CondConv)) else layer(x)
        return x

    def with_cond_kernels(self, kernels: int, embed: int) -> CondSequential:
        """The same layers, each convolution made a CondConv with ``kernels`` extra kernels (itself for 0)."""
        if not kernels:
            return self
        return CondSequential(*(CondConv(layer, kernels, embed) if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))
                                else layer for layer in self))


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


def gaussian_rate(y: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-ln P(y) in nats, element-wise, for a Gaussian convolved with a unit-width box (quantization bin)."""
    v = (y.float() - mean.float()).abs()
    scale = scale.float()
    const = 1 / math.sqrt(2)
    upper = 0.5 * torch.erfc(-(0.5 - v) / scale * const)
    lower = 0.5 * torch.erfc(-(-0.5 - v) / scale * const)
    return -torch.log((upper - lower).clamp_min(1e-9))


def quantize_ste(y: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """mean + round(y - mean), with a straight-through gradient."""
    return y + (torch.round(y - mean) - (y - mean)).detach()


class GHVAE(nn.Module):
    """Two-layer GHVAE codec model; see the module docstring for the data flow."""

    def __init__(self, config: GHVAEConfig = GHVAEConfig()):
        super().__init__()
        self.config = config
        n, m, c2 = config.n, config.z1_channels, config.z2_channels
        self.embed = beta_embedding(config.embed, keep_beta1=bool(config.z1_min_channels))
        emb = config.embed + bool(config.z1_min_channels)  # the width of e
        # bottom-up features of x, 1/16 resolution
        self.g_a = CondSequential(
            conv(3, n), GDN(n), FiLM(n, emb),
            conv(n, n), GDN(n), FiLM(n, emb),
            conv(n, n), GDN(n), FiLM(n, emb),
            conv(n, n),
        ).with_cond_kernels(config.cond_kernels, emb)  # (B, n, H/16, W/16)
        # q(z2|x): mean of z2, 1/64 resolution
        self.h_a = CondSequential(
            conv(n, n, 3, 1), nn.LeakyReLU(inplace=True), FiLM(n, emb),
            conv(n, n), nn.LeakyReLU(inplace=True), FiLM(n, emb),
            conv(n, c2),
        )  # (B, c2, H/64, W/64)
        # p(z2): per-channel Gaussian whose parameters are a function of beta
        self.prior_z2_net = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, 2 * c2))
        # top-down path from ẑ2 to the context of layer 1
        self.h_s = CondSequential(
            deconv(c2, n), nn.LeakyReLU(inplace=True), FiLM(n, emb),
            deconv(n, n), nn.LeakyReLU(inplace=True), FiLM(n, emb),
            conv(n, n, 3, 1),
        )  # (B, n, H/16, W/16)
        # p(z1|z2): Gaussian mean and scale from the context
        self.prior_z1_net = CondSequential(
            conv(n, n, 3, 1), nn.LeakyReLU(inplace=True), FiLM(n, emb),
            conv(n, 2 * m, 3, 1),
        )
        # q(z1|z2, x): offset of z1 from its prior mean, from image features and the context
        self.enc_z1 = CondSequential(
            conv(2 * n, n, 3, 1), nn.LeakyReLU(inplace=True), FiLM(n, emb),
            conv(n, m, 3, 1),
        )
        # p(x|z1): synthesis
        self.g_s = CondSequential(
            deconv(m, n), GDN(n, inverse=True), FiLM(n, emb),
            deconv(n, n), GDN(n, inverse=True), FiLM(n, emb),
            deconv(n, n), GDN(n, inverse=True), FiLM(n, emb),
            deconv(n, 3),
        ).with_cond_kernels(config.cond_kernels, emb)
        self.scale_bound = LowerBound(SCALE_MIN)
        if config.latent_bins:  # ln Δ per channel of z2 and z1 from the embedding; Δ = 1 at initialisation
            self.bins_z2, self.bins_z1 = nn.Linear(emb, c2), nn.Linear(emb, m)
            for layer in (self.bins_z2, self.bins_z1):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        if config.decoder_gains:  # ln gain per channel of z2 and z1 from the embedding; 1 at initialisation
            self.gains_z2, self.gains_z1 = nn.Linear(emb, c2), nn.Linear(emb, m)
            for layer in (self.gains_z2, self.gains_z1):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def bin_width(self, layer: str, e: torch.Tensor) -> torch.Tensor | None:
        """Δ, (B, C, 1, 1), of latent layer "z2" or "z1"; None for a model without ``latent_bins`` (Δ = 1).

        With ``bins_max`` Δ is capped there, with a straight-through gradient: a width held at the cap still
        feels the pull of the betas that want it smaller, as the cap's own gradient (a plain clamp has none above
        it, and froze every width of a new model at the cap within 2 000 steps). Uncapped, a small model trained from
        scratch over the whole square let the widths of most z1 channels grow at every beta, until those channels
        carried nothing even at beta = 0.1. Capped at 1, it lost them through its encoder instead and coded far worse
        (docs/equal-steps.md)."""
        if not self.config.latent_bins:
            return None
        ln_width = (self.bins_z2 if layer == "z2" else self.bins_z1)(e)
        if self.config.bins_max:
            ln_width = ln_width - (ln_width - math.log(self.config.bins_max)).clamp(min=0).detach()
        return torch.exp(ln_width)[:, :, None, None]

    def decoder_gain(self, layer: str, e: torch.Tensor) -> torch.Tensor | None:
        """γ, (B, C, 1, 1): the decoder reads latent layer "z2" or "z1" as Δ·γ·ẑ, where the encoder divides by Δ
        alone (the asymmetric gain units of Cui et al., CVPR 2021), so that the decoder can scale each channel's
        symbols for each beta, e.g. shrink a coarsely quantized channel; None for a model without ``decoder_gains``
        (γ = 1). The decoder's first layers are linear in their input and FiLM modulates their outputs, so without
        it the decoder has no per-channel, per-beta scale of its input besides Δ. At small scale it made the model
        worse: freed from the decoder's input, the widths grew (median 3.9 at beta = 0.1, with γ ≈ 0.2) and took
        more z1 channels at every beta (docs/equal-steps.md)."""
        if not self.config.decoder_gains:
            return None
        return torch.exp((self.gains_z2 if layer == "z2" else self.gains_z1)(e))[:, :, None, None]

    def z1_mask(self, e: torch.Tensor) -> torch.Tensor | None:
        """1 for the z1 channels in use at this beta1, 0 for the others, (B, m, 1, 1); None for a model without
        ``z1_min_channels`` (all in use). The first z1_min_channels channels are in use at every beta1, and more
        come in as beta1 falls, linearly in ln beta1, until all m are in use at beta_min (the ordered channels of
        slimmable codecs). A channel not in use has no offset from its prior mean and the narrowest prior scale, so
        it codes the symbol 0 at a rate of about 1e-5 nats, and images at those betas send no gradient to its bin
        width, encoder offset or prior scale (nor, with ``mask_synthesis``, to the synthesis weights that read it).
        At small scale without ``mask_synthesis`` the low betas left the channels reserved for them unused all the
        same, and the model came out worse (docs/equal-steps.md)."""
        cfg = self.config
        if not cfg.z1_min_channels:
            return None
        top, bottom = math.log10(cfg.beta_max), math.log10(cfg.beta_min)
        spread = ((top - e[:, -1:]) / (top - bottom)).clamp(0, 1)  # 0 at beta_max, 1 at beta_min
        in_use = cfg.z1_min_channels + spread * (cfg.z1_channels - cfg.z1_min_channels)  # (B, 1)
        channel = torch.arange(cfg.z1_channels, device=e.device, dtype=e.dtype)
        return (channel < in_use).to(e.dtype)[:, :, None, None]

    # -- the per-layer priors: one function each, called by training, encoder and decoder ------------
    def prior_z2(self, e: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of p(z2), each (B, c2, height, width)."""
        mean, raw = (t[:, :, None, None] for t in self.prior_z2_net(e).chunk(2, dim=1))
        bins = self.bin_width("z2", e)
        mean, scale = _in_bins(mean, bins, divide=True), _in_bins(F.softplus(raw) * 4, bins, divide=True)
        shape = (-1, mean.shape[1], height, width)
        return mean.expand(shape), self.scale_bound(scale).expand(shape)

    def prior_z1(self, ctx: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of p(z1|ẑ2), each (B, m, H/16, W/16), from the top-down context of ẑ2."""
        mean, raw = self.prior_z1_net(ctx, e).chunk(2, dim=1)
        scale = F.softplus(raw)
        bins = self.bin_width("z1", e)
        scale = self.scale_bound(_in_bins(scale, bins, divide=True))
        mask = self.z1_mask(e)
        if mask is not None:  # a channel not in use: the narrowest prior, so its symbol 0 costs next to nothing
            scale = scale * mask + SCALE_MIN * (1 - mask)
        return _in_bins(mean, bins, divide=True), scale

    # -- the inference and generative steps -------------------------------------------------------
    def analysis(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Image features h, (B, n, H/16, W/16), of x in [0, 1]."""
        return self.g_a(x * 2 - 1, e)

    def bottom_up(self, x: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image features h and the mean y2 of q(z2|x)."""
        h = self.analysis(x, e)
        return h, self.posterior_z2(h, e)

    def posterior_z2(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Mean y2 of q(z2|x) from the image features h (in units of the bin width)."""
        return _in_bins(self.h_a(h, e), self.bin_width("z2", e), divide=True)

    def top_down(self, z2_hat: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.h_s(_times(_in_bins(z2_hat, self.bin_width("z2", e)), self.decoder_gain("z2", e)), e)

    def posterior_z1(self, h: torch.Tensor, ctx: torch.Tensor, mean1: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Mean y1 of q(z1|ẑ2, x), parameterised as an offset from the prior mean."""
        offset = _in_bins(self.enc_z1(torch.cat([h, ctx], dim=1), e), self.bin_width("z1", e), divide=True)
        mask = self.z1_mask(e)
        return mean1 + (offset if mask is None else offset * mask.to(offset.dtype))

    def synthesis(self, z1_hat: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x_hat in [0, 1] scale (not clamped). With ``mask_synthesis`` the z1 channels not in use (`z1_mask`) are
        read as 0, not as their prior mean, so images at the betas that leave them out train none of the weights
        that read them."""
        z1 = _times(_in_bins(z1_hat, self.bin_width("z1", e)), self.decoder_gain("z1", e))
        if self.config.mask_synthesis:
            z1 = z1 * self.z1_mask(e).to(z1.dtype)
        return (self.g_s(z1, e) + 1) / 2

    def forward(self, x: torch.Tensor, beta2: torch.Tensor, beta1: torch.Tensor,
                latents: bool = False) -> dict[str, torch.Tensor]:
        """Training pass. x: (B, 3, H, W) in [0, 1] with H, W multiples of 64; beta2, beta1: (B,).

        Returns x_hat and the per-image rates rate_z2 = -ln p(z̃2), rate_z1 = -ln p(z̃1|ẑ2) in nats, where z̃ is
        the noisy latent in training mode and the rounded one in eval mode; with ``latents`` also the rounded
        latents and their priors' means and scales (z2_hat, mean2, scale2, z1_hat, mean1, scale1) and the unrounded
        posterior mean y1 of z1, for analysis.
        """
        e = self.embed(log_beta_input(beta2, beta1))
        h, y2 = self.bottom_up(x, e)
        mean2, scale2 = self.prior_z2(e, y2.shape[2], y2.shape[3])
        # z2 trains with additive uniform noise on both paths, as hyperlatents do: with straight-through rounding
        # small posterior offsets round away, no information reaches the top-down path, and z2 collapses.
        if self.training:
            z2_hat = y2 + torch.rand_like(y2) - 0.5
        else:
            z2_hat = mean2 + torch.round(y2 - mean2)
        rate_z2 = gaussian_rate(z2_hat, mean2, scale2).sum(dim=(1, 2, 3))  # fp32 whatever the autocast

        ctx = self.top_down(z2_hat, e)
        mean1, scale1 = self.prior_z1(ctx, e)
        y1 = self.posterior_z1(h, ctx, mean1, e)
        z1_hat = quantize_ste(y1, mean1)
        z1_rate_input = z1_hat
        if self.training:  # no noise in the channels not in use, which code their prior mean exactly
            noise = torch.rand_like(y1, dtype=torch.float32) - 0.5
            mask = self.z1_mask(e)
            z1_rate_input = y1.float() + (noise if mask is None else noise * mask.float())
        rate_z1 = gaussian_rate(z1_rate_input, mean1, scale1).sum(dim=(1, 2, 3))
        out = {"x_hat": self.synthesis(z1_hat, e), "rate_z2": rate_z2, "rate_z1": rate_z1}
        if latents:
            out.update(z2_hat=z2_hat, mean2=mean2, scale2=scale2, z1_hat=z1_hat, mean1=mean1, scale1=scale1, y1=y1)
        return out


@torch.no_grad()
def init_bins_sqrt_beta(model: GHVAE, points: int = 21) -> float:
    """Start a new model's bin widths at Δ ≈ sqrt(beta) of each layer's own multiplier (beta1 for z1, beta2 for
    z2) instead of 1: the widths' linear readouts of the beta embedding are fitted by least squares to 0.5 ln beta
    on a ``points`` x ``points`` log grid of the model's square (every channel alike). A one-model-per-beta codec
    gets such a beta-dependent step for free; a conditioned one must learn it. Returns the fit's largest error in
    ln Δ."""
    cfg = model.config
    if not cfg.latent_bins:
        raise ValueError("the model has no learned bin widths (GHVAEConfig.latent_bins)")
    logs = torch.linspace(math.log(cfg.beta_min), math.log(cfg.beta_max), points)
    beta2, beta1 = (t.flatten() for t in torch.meshgrid(logs.exp(), logs.exp(), indexing="ij"))
    e = model.embed(log_beta_input(beta2, beta1)).double()
    a = torch.cat([e, torch.ones(len(e), 1, dtype=torch.float64)], dim=1)
    worst = 0.0
    for layer, beta in ((model.bins_z1, beta1), (model.bins_z2, beta2)):
        target = 0.5 * beta.double().log()
        w = torch.linalg.lstsq(a, target[:, None]).solution[:, 0]
        layer.weight.copy_(w[:-1].float().expand_as(layer.weight))
        layer.bias.fill_(float(w[-1]))
        worst = max(worst, float((a @ w - target).abs().max()))
    return worst


def _in_bins(t: torch.Tensor, bins: torch.Tensor | None, divide: bool = False) -> torch.Tensor:
    """t / Δ (``divide``, into units of the bin width) or t * Δ (back); t itself where Δ = 1 (no latent_bins)."""
    if bins is None:
        return t
    return t / bins if divide else t * bins


def _times(t: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
    """t * γ; t itself where γ = 1 (no decoder_gains)."""
    return t if gain is None else t * gain


def pad_to_stride(x: torch.Tensor, stride: int = STRIDE) -> torch.Tensor:
    """Replicate-pad (B, C, H, W) on the right and bottom to multiples of ``stride`` (cheaper than zeros)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def distortion(x: torch.Tensor, x_hat: torch.Tensor, sigma_x: float) -> torch.Tensor:
    """D = |x - x_hat|^2 / (2 sigma_x^2) per image, in nats (dropping the constant of the Gaussian)."""
    return ((x - x_hat.float()) ** 2).sum(dim=(1, 2, 3)) / (2 * sigma_x**2)


def ghvae_loss(out: dict[str, torch.Tensor], x: torch.Tensor, beta2: torch.Tensor, beta1: torch.Tensor,
               sigma_x: float, z2_weight: float = 1.0, loss_norm: str = "none") -> dict[str, torch.Tensor]:
    """The paper's objective D + beta2 R(z2) + beta1 R(z1|z2) per image (nats).

    ``loss`` is the mean for training, in nats per pixel, of each image's objective divided by
    (beta2 * beta1)^power, the power given by ``loss_norm`` (`LOSS_NORMS`): 0 for "none" (the objective as it
    is, the default), 1/2 for "sqrt-beta" (how models were trained before 2026-11-26), 1/8 for "root8-beta", -1/8
    for "times-root8-beta". The objective grows only slowly with beta (about as beta^(1/4) on the diagonal at
    small scale), so any power other than 0 tilts the gradient of the shared network towards one end of the beta
    range; at small scale each of the three did worse than "none" at every fixed point (docs/training.md).
    ``z2_weight`` < 1 discounts R(z2) in ``loss`` only (warm-up against the collapse of the top layer early in
    training); ``objective`` is always the paper's.
    """
    d = distortion(x, out["x_hat"], sigma_x)
    return rd_objective(d, out["rate_z2"], out["rate_z1"], beta2, beta1, x.shape[2] * x.shape[3], z2_weight,
                        loss_norm)


LOSS_NORMS = {"none": 0.0, "sqrt-beta": 0.5, "root8-beta": 0.125, "times-root8-beta": -0.125}  # loss / (b2 b1)^power


def rd_objective(d: torch.Tensor, rate_z2: torch.Tensor, rate_z1: torch.Tensor, beta2: torch.Tensor,
                 beta1: torch.Tensor, num_pixels: int, z2_weight: float = 1.0,
                 loss_norm: str = "none") -> dict[str, torch.Tensor]:
    """D + beta2 R(z2) + beta1 R(z1|z2) from per-image terms in nats; see `ghvae_loss` for ``loss``."""
    if loss_norm not in LOSS_NORMS:
        raise ValueError(f"loss_norm must be one of {', '.join(LOSS_NORMS)}, not {loss_norm!r}")
    objective = d + beta2 * rate_z2 + beta1 * rate_z1
    trained = objective - (1 - z2_weight) * beta2 * rate_z2
    if LOSS_NORMS[loss_norm]:
        trained = trained / (beta2 * beta1) ** LOSS_NORMS[loss_norm]
    loss = trained.mean() / num_pixels
    return {"loss": loss, "objective": objective, "distortion": d}
