from pathlib import Path

import numpy as np
import pytest
import torch

from hitcodec.models.ghvae import GHVAE, GHVAEConfig
from hitcodec.weights import LoadedModel, model_id

TINY = GHVAEConfig(n=16, z1_channels=8, z2_channels=4, embed=8)


def make_tiny(seed: int = 0, config: GHVAEConfig = TINY) -> GHVAE:
    """A tiny random model whose latents are not all zero (posterior offsets scaled up)."""
    torch.manual_seed(seed)
    model = GHVAE(config)
    with torch.no_grad():
        model.enc_z1[-1].weight.mul_(30)
        model.h_a[-1].weight.mul_(30)
    return model.eval()


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    model = make_tiny()
    return LoadedModel(model, model_id(model), "tiny")


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory) -> Path:
    """The tiny model saved as a shipped-model file."""
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    model = make_tiny()
    torch.save({"model_config": TINY.to_dict(), "model": model.state_dict(), "step": 0}, path)
    return path


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A natural-looking test image: the bundled sample photo, cropped."""
    from PIL import Image

    from hitcodec.samples import SAMPLE_PHOTO

    return np.asarray(Image.open(SAMPLE_PHOTO).convert("RGB"))[:96, :128].copy()
