"""Loading models and their ids. The id of a model is derived from its weights, never from a list order."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from hitcodec.models.ghvae import GHVAE, GHVAEConfig

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "ghvae-default.pt"


@dataclass(frozen=True)
class LoadedModel:
    model: GHVAE
    model_id: bytes  # 8 bytes
    path: str

    @property
    def model_id_hex(self) -> str:
        return self.model_id.hex()


def model_id(model: GHVAE) -> bytes:
    """First 8 bytes of SHA-256 over the config and every tensor (name, shape, float32 little-endian bytes)."""
    digest = hashlib.sha256(repr(sorted(model.config.to_dict().items())).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(repr(tuple(t.shape)).encode())
        digest.update(t.numpy().astype("<f4").tobytes())
    return digest.digest()[:8]


def model_from_state(state: dict) -> GHVAE:
    model = GHVAE(GHVAEConfig(**state["model_config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
    return model.eval()


@functools.lru_cache(maxsize=4)
def load_model(path: str | None = None) -> LoadedModel:
    """Load a shipped-model file or a training checkpoint (``weights_only=True``) onto the CPU, in eval mode."""
    path = str(path or DEFAULT_WEIGHTS)
    if not Path(path).is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = model_from_state(state)
    except (RuntimeError, KeyError, TypeError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} is not a hitcodec model file ({type(exc).__name__})") from exc
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model, model_id(model), path)
