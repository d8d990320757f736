import pytest
import torch

from hitcodec.models.ghvae import GHVAE, ghvae_loss, pad_to_stride

from conftest import TINY


def test_forward_shapes_and_rates():
    model = GHVAE(TINY)
    x = torch.rand(2, 3, 64, 128)
    beta2, beta1 = torch.tensor([0.1, 10.0]), torch.tensor([1.0, 0.3])
    out = model(x, beta2, beta1)
    assert out["x_hat"].shape == x.shape
    assert out["rate_z2"].shape == (2,) and (out["rate_z2"] > 0).all() and (out["rate_z1"] > 0).all()
    losses = ghvae_loss(out, x, beta2, beta1, TINY.sigma_x)
    expected = losses["distortion"] + beta2 * out["rate_z2"] + beta1 * out["rate_z1"]
    assert torch.allclose(losses["objective"], expected)
    pixels = x.shape[2] * x.shape[3]
    assert torch.allclose(losses["loss"], expected.mean() / pixels)
    normed = ghvae_loss(out, x, beta2, beta1, TINY.sigma_x, loss_norm="sqrt-beta")
    assert torch.allclose(normed["loss"], (expected / torch.sqrt(beta2 * beta1)).mean() / pixels)
    normed = ghvae_loss(out, x, beta2, beta1, TINY.sigma_x, loss_norm="root8-beta")
    assert torch.allclose(normed["loss"], (expected / (beta2 * beta1) ** 0.125).mean() / pixels)
    normed = ghvae_loss(out, x, beta2, beta1, TINY.sigma_x, loss_norm="times-root8-beta")
    assert torch.allclose(normed["loss"], (expected * (beta2 * beta1) ** 0.125).mean() / pixels)
    with pytest.raises(ValueError, match="loss_norm"):
        ghvae_loss(out, x, beta2, beta1, TINY.sigma_x, loss_norm="beta")
    losses["loss"].backward()
    assert model.enc_z1[0].weight.grad is not None and model.prior_z2_net[0].weight.grad is not None
    with torch.no_grad():  # for analysis: the rounded latents, and z1's posterior mean y1 that rounds to z1_hat
        seen = model.eval()(x, beta2, beta1, latents=True)
    assert torch.allclose(seen["z1_hat"], seen["mean1"] + torch.round(seen["y1"] - seen["mean1"]), atol=1e-5)
    assert not torch.equal(seen["y1"], seen["z1_hat"])


def test_priors_depend_on_beta():
    model = GHVAE(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    e = model.embed(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    mean, scale = model.prior_z2(e, 2, 3)
    assert mean.shape == (2, TINY.z2_channels, 2, 3)
    assert not torch.allclose(scale[0], scale[1])


def test_pad_to_stride_replicates_edges():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    y = pad_to_stride(x)
    assert y.shape == (1, 1, 64, 64) and y[0, 0, 63, 63] == x[0, 0, 1, 2]


def test_importing_hitcodec_is_light_and_skips_compressai_package_init_but_leaves_compressai_usable():
    import subprocess
    import sys

    script = """
import sys
import hitcodec.cli
assert "torch" not in sys.modules  # torch is imported on first use: --help and usage errors answer at once
from hitcodec.models.ghvae import GDN, LOSS_NORMS
assert hitcodec.cli.LOSS_NORMS == tuple(LOSS_NORMS)
heavy = sorted({"torch_geometric", "scipy.stats", "compressai"} & set(sys.modules))
assert not heavy, heavy  # compressai/__init__.py imports these: 3 s of a CLI call
import compressai
assert compressai.layers.GDN is GDN and "ans" in compressai.available_entropy_coders()
"""
    done = subprocess.run([sys.executable, "-W", "ignore::FutureWarning", "-c", script], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
