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


REFINE_TILE, REFINE_HALO = 64, 4  # z1 positions: 1024² pixels refined at a time, with 64 pixels of context


def refine_z1(model: GHVAE, x: torch.Tensor, e: torch.Tensor, mean1: torch.Tensor, scale1: torch.Tensor,
              o1: torch.Tensor, beta1: float, steps: int, lr: float = 0.01, check_every: int = 10,
              tile: int | None = None, halo: int | None = None) -> tuple[torch.Tensor, list[float]]:
    """Refine z1's offsets o1 (bin units) for the image x (1, 3, H, W) in [0, 1]; returns the best offsets and
    D + β1·R(z1|ẑ2) of the rounded offsets at each check (nats; the first is the encoder's own), summed over tiles.

    A z1 grid with a side above ``tile + halo`` positions (default `REFINE_TILE` and `REFINE_HALO`) is refined
    ``tile`` positions a side at a time, in raster order, so that memory stays bounded (the synthesis is kept for
    its gradient: about 1.3 GB per megapixel on the CPU). Each tile sees ``halo`` positions of its neighbours as
    fixed context, already refined above and to its left, and its objective counts its own pixels and rates; the
    halo covers the synthesis's reach, so those pixels are exactly what the decoder computes from the window."""
    tile, halo = REFINE_TILE if tile is None else tile, REFINE_HALO if halo is None else halo
    height, width = o1.shape[2:]
    if height <= tile + halo and width <= tile + halo:
        return _refine_window(model, x, e, mean1, scale1, o1, beta1, steps, lr, check_every)
    o = o1.detach().clone()
    total: list[float] = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            t0, l0 = max(top - halo, 0), max(left - halo, 0)
            t1, l1 = min(top + tile + halo, height), min(left + tile + halo, width)
            bottom, right = min(top + tile, height), min(left + tile, width)
            window = (slice(None), slice(None), slice(t0, t1), slice(l0, l1))
            free = torch.zeros_like(o[window], dtype=torch.bool)
            free[:, :, top - t0:bottom - t0, left - l0:right - l0] = True
            target = x[:, :, top * 16:bottom * 16, left * 16:right * 16]  # (the padding is not the image's)
            best, history = _refine_window(model, target, e, mean1[window], scale1[window], o[window], beta1, steps,
                                           lr, check_every, free, ((top - t0) * 16, (left - l0) * 16))
            o[window] = best
            total = [a + b for a, b in zip(total, history)] if total else history
    return o, total


def _refine_window(model: GHVAE, x: torch.Tensor, e: torch.Tensor, mean1: torch.Tensor, scale1: torch.Tensor,
                   o1: torch.Tensor, beta1: float, steps: int, lr: float, check_every: int,
                   free: torch.Tensor | None = None,
                   corner: tuple[int, int] = (0, 0)) -> tuple[torch.Tensor, list[float]]:
    """`refine_z1` on one window of z1: only the ``free`` offsets (all without it) change and count in the rate,
    and the window's synthesis from pixel ``corner`` on is compared with x."""
    e, mean1, scale1, start = e.detach(), mean1.detach(), scale1.detach(), o1.detach()
    zero = torch.zeros_like(o1)
    noise = torch.Generator(device=o1.device).manual_seed(0)  # the same image gives the same file
    rows, cols = slice(corner[0], corner[0] + x.shape[2]), slice(corner[1], corner[1] + x.shape[3])

    def objective(o: torch.Tensor, noisy: bool) -> torch.Tensor:
        if free is not None:
            o = torch.where(free, o, start)
        x_hat = model.synthesis(mean1 + quantize_ste(o, zero), e)[:, :, rows, cols]
        u = torch.rand(o.shape, generator=noise, device=o.device, dtype=o.dtype) - 0.5 if noisy else None
        rate = gaussian_rate(o + u if noisy else torch.round(o), zero, scale1)
        rate = rate.sum() if free is None else rate[free.expand_as(rate)].sum()
        return distortion(x, x_hat, model.config.sigma_x).sum() + beta1 * rate

    o = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([o], lr=lr)
    best, history = None, []
    for step in range(steps + 1):
        if step % check_every == 0 or step == steps:
            with torch.no_grad():
                value = float(objective(o, noisy=False))
            history.append(value)
            if best is None or value < best[0]:
                best = (value, o.detach().clone() if free is None else torch.where(free, o.detach(), start))
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        objective(o, noisy=True).backward()
        opt.param_groups[0]["lr"] = lr * (1 - step / steps)  # linear decay to 0, so that the last steps settle
        opt.step()
    return best[1], history
