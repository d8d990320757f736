"""The paper's small two-layer HVAEs for 28x28 binary images (MNIST, Fashion-MNIST), conditioned on (beta2, beta1).

Same contract as the codec model (`ghvae.py`): generative model p(z2) p(z1|z2) p(x|z1), rates in nats per layer,
objective D + beta2 R(z2) + beta1 R(z1|z2) (`rd_objective`), and FiLM conditioning on embed(log beta2, log beta1)
so that one network scans the whole [0.1, 10]^2 grid. As in the paper's Section 5.1 (MNIST):

- p(z2) = N(0, I) (fixed), p(z1|z2) = N(g_mu(z2), g_sigma(z2)^2), p(x|z1) = Bern(sigmoid(g_mu'(z1))).
- q(z2|x) and q(z1|x, z2) are diagonal Gaussians; rates are their analytic KLs to the priors, R(z1|z2) at a
  sample z2 ~ q(z2|x); D = -ln p(x|z1) at a sample z1 (reparameterised).
- ``inference="ghvae"``: explicit top-down, q(z1|x, z2) is a network of the image features and z2.
  ``inference="lvae"``: implicit top-down (Ladder VAE), q(z1|x, z2) is the precision-weighted combination of a
  bottom-up Gaussian and the prior p(z1|z2); z2's bottom-up path runs through z1's.

Networks: two strided convolutions and one fully connected layer for the image features, two transposed
convolutions for p(x|z1), small MLPs for the priors and posteriors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hitcodec.models.ghvae import CondSequential, FiLM, beta_embedding, log_beta_input, rd_objective

SIDE = 28
MIN_SCALE = 1e-3


@dataclass(frozen=True)
class PaperConfig:
    z1: int = 32  # dimensions of z1
    z2: int = 16  # dimensions of z2
    channels: int = 32  # of the first convolution (the second has twice as many)
    hidden: int = 256  # width of the fully connected layers
    embed: int = 32  # width of the beta embedding
    inference: str = "ghvae"  # or "lvae"

    def to_dict(self) -> dict:
        return asdict(self)


def gaussian_params(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, s = raw.chunk(2, dim=-1)
    return mean, F.softplus(s) + MIN_SCALE


def gaussian_kl(mean_q, scale_q, mean_p, scale_p) -> torch.Tensor:
    """KL(N(mean_q, scale_q^2) || N(mean_p, scale_p^2)) in nats, summed over the last dimension."""
    kl = torch.log(scale_p / scale_q) + (scale_q**2 + (mean_q - mean_p) ** 2) / (2 * scale_p**2) - 0.5
    return kl.sum(dim=-1)


def gaussian_log_prob(z, mean, scale) -> torch.Tensor:
    """ln N(z; mean, scale^2), summed over the last dimension (broadcasts)."""
    return (-0.5 * ((z - mean) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(dim=-1)


def _mlp(cin: int, hidden: int, cout: int, emb: int) -> CondSequential:
    return CondSequential(nn.Linear(cin, hidden), nn.LeakyReLU(), FiLM(hidden, emb), nn.Linear(hidden, cout))


class PaperHVAE(nn.Module):
    def __init__(self, config: PaperConfig = PaperConfig()):
        super().__init__()
        if config.inference not in ("ghvae", "lvae"):
            raise ValueError(f"inference must be 'ghvae' or 'lvae', not {config.inference!r}")
        self.config = config
        c, hid, emb, d1, d2 = config.channels, config.hidden, config.embed, config.z1, config.z2
        self.embed = beta_embedding(emb)
        self.features = CondSequential(  # bottom-up image features, (B, hidden)
            nn.Conv2d(1, c, 4, 2, 1), nn.LeakyReLU(), FiLM(c, emb),  # 14x14
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.LeakyReLU(), FiLM(2 * c, emb),  # 7x7
            nn.Flatten(), nn.Linear(2 * c * 49, hid), nn.LeakyReLU(), FiLM(hid, emb),
        )
        if config.inference == "ghvae":
            self.q_z2 = nn.Linear(hid, 2 * d2)
            self.q_z1 = _mlp(hid + d2, hid, 2 * d1, emb)  # from [features, z2]
        else:
            self.q_z1_up = nn.Linear(hid, 2 * d1)  # bottom-up Gaussian of layer 1
            self.q_z2 = _mlp(hid, hid, 2 * d2, emb)  # layer 2 above layer 1's features
        self.p_z1 = _mlp(d2, hid, 2 * d1, emb)
        self.p_x = CondSequential(
            nn.Linear(d1, 2 * c * 49), nn.LeakyReLU(), FiLM(2 * c * 49, emb),
            nn.Unflatten(1, (2 * c, 7, 7)),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.LeakyReLU(), FiLM(c, emb),  # 14x14
            nn.ConvTranspose2d(c, 1, 4, 2, 1),  # 28x28 logits
        )

    # -- the priors: one function per layer, used by training, evaluation and sampling --------------
    @staticmethod
    def prior_z2(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z2) = N(0, I), shaped like ``like``."""
        return torch.zeros_like(like), torch.ones_like(like)

    def prior_z1(self, z2: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of p(z1|z2)."""
        return gaussian_params(self.p_z1(z2, e))

    # -- inference, top-down like the generative model ---------------------------------------------
    def posterior_z2(self, h: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.inference == "ghvae":
            return gaussian_params(self.q_z2(h))
        return gaussian_params(self.q_z2(h, e))

    def posterior_z1(self, h: torch.Tensor, z2: torch.Tensor, e: torch.Tensor):
        """Mean and scale of q(z1|x, z2), and of the prior p(z1|z2)."""
        prior = self.prior_z1(z2, e)
        if self.config.inference == "ghvae":
            return gaussian_params(self.q_z1(torch.cat([h, z2], dim=1), e)), prior
        up_mean, up_scale = gaussian_params(self.q_z1_up(h))
        prec_up, prec_p = up_scale**-2, prior[1] ** -2
        var = 1 / (prec_up + prec_p)
        return ((up_mean * prec_up + prior[0] * prec_p) * var, var.sqrt()), prior

    def embedding(self, beta2: torch.Tensor, beta1: torch.Tensor) -> torch.Tensor:
        return self.embed(log_beta_input(beta2, beta1))

    def encode(self, x: torch.Tensor, e: torch.Tensor, sample: bool = True,
               h: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Posterior parameters and rates. x: (B, 1, 28, 28) binary. With ``sample`` z2 ~ q(z2|x) feeds layer 1
        (the paper's mu1); otherwise the posterior mean does. Returns h (the image features, which may be passed
        back in), mu2, sigma2, z2, mu1, sigma1, rate_z2, rate_z1 (nats per image)."""
        h = self.features(x * 2 - 1, e) if h is None else h
        mu2, sigma2 = self.posterior_z2(h, e)
        z2 = mu2 + sigma2 * torch.randn_like(mu2) if sample else mu2
        (mu1, sigma1), (pm1, ps1) = self.posterior_z1(h, z2, e)
        rate_z2 = gaussian_kl(mu2, sigma2, *self.prior_z2(mu2))
        rate_z1 = gaussian_kl(mu1, sigma1, pm1, ps1)
        return {"h": h, "mu2": mu2, "sigma2": sigma2, "z2": z2, "mu1": mu1, "sigma1": sigma1,
                "rate_z2": rate_z2, "rate_z1": rate_z1}

    def logits(self, z1: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x|z1), (B, 1, 28, 28)."""
        return self.p_x(z1, e)

    def forward(self, x: torch.Tensor, beta2: torch.Tensor, beta1: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass: the paper's objective with a one-sample estimate; see `rd_objective`."""
        e = self.embedding(beta2, beta1)
        q = self.encode(x, e)
        z1 = q["mu1"] + q["sigma1"] * torch.randn_like(q["mu1"])
        d = F.binary_cross_entropy_with_logits(self.logits(z1, e), x, reduction="none").sum(dim=(1, 2, 3))
        out = rd_objective(d, q["rate_z2"], q["rate_z1"], beta2, beta1, SIDE * SIDE)
        return {**out, "rate_z2": q["rate_z2"], "rate_z1": q["rate_z1"]}

    @torch.no_grad()
    def sample(self, n: int, e: torch.Tensor) -> torch.Tensor:
        """n binary images x ~ p(x) = p(z2) p(z1|z2) p(x|z1); ``e`` is one embedding, (1, embed)."""
        e = e.expand(n, -1)
        z2 = torch.randn(n, self.config.z2, device=e.device)
        mean1, scale1 = self.prior_z1(z2, e)
        z1 = mean1 + scale1 * torch.randn_like(mean1)
        return torch.bernoulli(torch.sigmoid(self.logits(z1, e)))
