"""Loading models and their ids. The id of a model is derived from its weights, never from a list order."""

from __future__ import annotations

import copy
import errno
import functools
import hashlib
import pickle
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hitcodec.models.ghvae import GHVAE, GHVAEConfig

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "ghvae-default.pt"
# what torch.load(weights_only=True) raises for a file that is not a torch file or holds other objects
LOAD_ERRORS = (RuntimeError, KeyError, TypeError, ValueError, EOFError, AttributeError, IndexError, struct.error,
               pickle.UnpicklingError)


def _reason(exc: BaseException, limit: int = 100) -> str:
    """The gist of a load error in one short line: torch's messages span many lines and open with boilerplate."""
    text = str(exc).split("WeightsUnpickler error:")[-1]  # torch's weights_only message: the cause follows this
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().endswith(":")]
    first = lines[0].split(". ")[0] if lines else type(exc).__name__  # a line ending in ":" only introduces others
    return first if len(first) <= limit else first[:limit - 3] + "..."


def _load_reason(exc: BaseException, path: str | Path) -> str:
    """Why torch.load could not read ``path``, for a user: torch's own words only where they say more."""
    try:
        if Path(path).stat().st_size == 0:
            return "the file is empty"
    except OSError:
        pass
    text = str(exc)
    if "Unsupported global" in text:  # a torch file holding other objects than tensors: name them
        return _reason(exc)
    if isinstance(exc, RuntimeError) and any(m in text for m in ("PytorchStreamReader", "inline_container",
                                                                  "hasRecord")):
        return "a damaged PyTorch file, or a zip file of another kind"
    if isinstance(exc, (pickle.UnpicklingError, KeyError, EOFError, struct.error, IndexError, OSError)):
        return "not a PyTorch file, or a damaged or cut-short one"  # (OSError: EINVAL, below)
    return _reason(exc)


def load_state(path: str | Path, what: str = "model file", map_location: str = "cpu") -> dict:
    """The dict of a shipped-model file or training checkpoint; a one-line ValueError if ``path`` is neither."""
    try:
        with warnings.catch_warnings():  # a damaged file may declare any pickle protocol: the error below says it
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        if exc.errno != errno.EINVAL or exc.filename:  # a missing or unreadable file: said as it is
            raise
        raise ValueError(f"{path} is not a hitcodec {what} ({_load_reason(exc, path)})") from None  # cut short
    except LOAD_ERRORS as exc:
        raise ValueError(f"{path} is not a hitcodec {what} ({_load_reason(exc, path)})") from None
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise ValueError(f"{path} is not a hitcodec {what} (no model weights and config)")
    return state


@dataclass(frozen=True)
class LoadedModel:
    model: GHVAE  # on the CPU: the priors are always evaluated here, so files decode the same on every device
    model_id: bytes  # 8 bytes
    path: str
    _copies: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def model_id_hex(self) -> str:
        return self.model_id.hex()

    def on(self, device: torch.device) -> GHVAE:
        """The model on ``device``, for the full-resolution transforms (a cached copy unless it is the CPU)."""
        if device.type == "cpu":
            return self.model
        if str(device) not in self._copies:
            self._copies[str(device)] = copy.deepcopy(self.model).to(device)
        return self._copies[str(device)]

    def priors(self) -> GHVAE:
        """A float64 copy of the networks that compute the priors (format version 2), cached: the float32 ones can
        round differently on another CPU (another BLAS kernel), enough to move a scale across a table boundary."""
        if "priors" not in self._copies:
            model = copy.deepcopy(self.model)
            for name in ("g_a", "h_a", "enc_z1", "g_s"):  # image-side networks: never part of a prior
                setattr(model, name, None)
            self._copies["priors"] = model.double()
        return self._copies["priors"]


def resolve_device(name: "str | torch.device" = "cpu") -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available) -> torch.device; ValueError if unusable, TypeError
    unless it is a str or a torch.device."""
    if not isinstance(name, (str, torch.device)):
        raise TypeError(f"device must be a str such as 'cpu' or 'cuda', or a torch.device, not {type(name).__name__}")
    text = str(name)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {text!r}: use cpu, cuda, cuda:N or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested, but torch finds no usable CUDA GPU here; use cpu or auto")
    return device


def model_id(model: GHVAE) -> bytes:
    """First 8 bytes of SHA-256 over the config and every tensor (name, shape, float32 little-endian bytes)."""
    digest = hashlib.sha256(repr(sorted(model.config.to_dict().items())).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(repr(tuple(t.shape)).encode())
        digest.update(t.numpy().astype("<f4").tobytes())
    return digest.digest()[:8]


def model_from_state(state: dict, source: str = "the state") -> GHVAE:
    """The fp32 GHVAE of a model file's or checkpoint's dict; a one-line ValueError if its weights do not fit."""
    try:
        # float32 on the CPU whatever default dtype and device the calling application set, and without drawing
        # from its random generator: the initial weights are replaced at once
        with torch.device("cpu"), torch.random.fork_rng(devices=[]):
            model = GHVAE(GHVAEConfig(**state["model_config"])).float()
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
    except LOAD_ERRORS as exc:
        raise ValueError(f"{source} is not a hitcodec model file (its weights do not fit its config: "
                         f"{_reason(exc)})") from None
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:  # a damaged file, or a diverged run: it would code garbage, or fail inside the entropy coder
        more = f" and {len(bad) - 1} more tensors hold" if len(bad) > 1 else " holds"
        raise ValueError(f"{source} is damaged: {bad[0]}{more} nan or inf values")
    return model.eval()


def load_model(path: str | None = None) -> LoadedModel:
    """Load a shipped-model file or a training checkpoint (``weights_only=True``) onto the CPU, in eval mode (once
    per path: later calls return the same LoadedModel)."""
    return _load_model(str(DEFAULT_WEIGHTS if path is None else path))


@functools.lru_cache(maxsize=4)
def _load_model(path: str) -> LoadedModel:
    if not path:
        raise ValueError("the model path is empty (leave the option out for the shipped model)")
    if not Path(path).exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if not Path(path).is_file():
        raise ValueError(f"{path} is not a model file (not a regular file)")
    model = model_from_state(load_state(path), path)
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model, model_id(model), path)
