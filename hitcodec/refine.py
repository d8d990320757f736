"""Encoder-side refinement of z1: gradient steps on the paper's objective for one image.

The encoder's posterior means are an amortised guess: one network for every image and every (β2, β1). For one
image, steps of Adam on D + β1·R(z1|ẑ2) over z1's offsets from its prior mean find integers that code it better
(Campos et al. 2019; Yang et al., NeurIPS 2020, "Improving inference for neural image compression"). z2 is kept
as the encoder chose it: a changed z2 changes the prior and context of every z1, and refining it as well made the
rounded objective jump from check to check. The decoder and the format are unchanged: only which integers the
encoder codes changes.

Relaxation: ẑ1 = mean1 + round(o1) with a straight-through gradient, and R(z1|ẑ2) taken at o1 plus uniform
noise, as in training. The objective of the rounded latents (their rate under the prior's Gaussian, which
the coder's scale table approximates) is evaluated at the start and every ``check_every`` steps, and the best
offsets seen are returned: never worse than the encoder's own by that measure. In real bytes more steps are not
always better: a small conditioned model did worse with 300 steps than with 100 (benchmarks/results/refine-n64).
"""

from __future__ import annotations

import torch

from hitcodec.models.ghvae import GHVAE, distortion, gaussian_rate, quantize_ste


def z1_context(model: GHVAE, y2: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Context, prior mean and prior scale of z1 (bin units) given the posterior mean y2 of z2, rounded."""
    mean2, _ = model.prior_z2(e, y2.shape[2], y2.shape[3])
    ctx = model.top_down(mean2 + torch.round(y2 - mean2), e)
    mean1, scale1 = model.prior_z1(ctx, e)
    return ctx, mean1, scale1


def refine_z1(model: GHVAE, x: torch.Tensor, e: torch.Tensor, mean1: torch.Tensor, scale1: torch.Tensor,
              o1: torch.Tensor, beta1: float, steps: int, lr: float = 0.01,
              check_every: int = 10) -> tuple[torch.Tensor, list[float]]:
    """Refine z1's offsets o1 (bin units) for the image x (1, 3, H, W) in [0, 1]; returns the best offsets and
    D + β1·R(z1|ẑ2) of the rounded offsets at each check (nats; the first is the encoder's own)."""
    e, mean1, scale1 = e.detach(), mean1.detach(), scale1.detach()
    zero = torch.zeros_like(o1)
    noise = torch.Generator(device=o1.device).manual_seed(0)  # the same image gives the same file

    def objective(o: torch.Tensor, noisy: bool) -> torch.Tensor:
        x_hat = model.synthesis(mean1 + quantize_ste(o, zero), e)[:, :, :x.shape[2], :x.shape[3]]
        u = torch.rand(o.shape, generator=noise, device=o.device, dtype=o.dtype) - 0.5 if noisy else None
        rate = gaussian_rate(o + u if noisy else torch.round(o), zero, scale1)
        return distortion(x, x_hat, model.config.sigma_x).sum() + beta1 * rate.sum()

    o = o1.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([o], lr=lr)
    best, history = None, []
    for step in range(steps + 1):
        if step % check_every == 0 or step == steps:
            with torch.no_grad():
                value = float(objective(o, noisy=False))
            history.append(value)
            if best is None or value < best[0]:
                best = (value, o.detach().clone())
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        objective(o, noisy=True).backward()
        opt.param_groups[0]["lr"] = lr * (1 - step / steps)  # linear decay to 0, so that the last steps settle
        opt.step()
    return best[1], history
