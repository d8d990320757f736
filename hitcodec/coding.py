"""Entropy coding of integer latents with constriction's ANS coder. Knows nothing of networks.

Every latent is coded as an integer symbol (its rounded offset from the prior mean) under a quantized Gaussian
of mean 0 whose standard deviation is taken from the fixed table ``SCALE_TABLE`` by integer index. Encoder and
decoder therefore agree bit for bit as long as they agree on the integer indices; the prior means never reach
the coder.
"""

from __future__ import annotations

import constriction
import numpy as np

# 64 standard deviations, log-spaced from 0.11 to 256, written out so no platform's exp() can change them.
SCALE_TABLE = np.array([
    0.11, 0.124404, 0.140694, 0.159118, 0.179954, 0.203518, 0.230168, 0.260308, 0.294394, 0.332944, 0.376542,
    0.425848, 0.481612, 0.544677, 0.616, 0.696663, 0.787889, 0.89106, 1.00774, 1.1397, 1.28894, 1.45772, 1.64861,
    1.86449, 2.10863, 2.38475, 2.69703, 3.05019, 3.4496, 3.90132, 4.41218, 4.98994, 5.64335, 6.38233, 7.21807,
    8.16326, 9.2322, 10.4411, 11.8084, 13.3546, 15.1034, 17.0811, 19.3178, 21.8474, 24.7082, 27.9437, 31.6028,
    35.7411, 40.4212, 45.7143, 51.7004, 58.4704, 66.1268, 74.7859, 84.5789, 95.6541, 108.18, 122.345, 138.366,
    156.485, 176.976, 200.15, 226.359, 256.0,
], dtype=np.float64)
SYMBOL_MAX = 1023  # symbols are clamped to [-SYMBOL_MAX, SYMBOL_MAX]
_TABLE32 = SCALE_TABLE.astype(np.float32)
_MODEL = constriction.stream.model.QuantizedGaussian(-SYMBOL_MAX, SYMBOL_MAX)


class CodingError(ValueError):
    """A payload that does not decode to the expected symbols."""


def scale_index(scale: np.ndarray) -> np.ndarray:
    """Index of the smallest table entry >= scale (the last entry for larger scales), as int32. Float64 scales
    (format version 2) are compared with the table in float64, others in float32 (version 1)."""
    scale = np.asarray(scale)
    if scale.dtype == np.float64:
        idx = np.searchsorted(SCALE_TABLE, scale.ravel(), side="left")
    else:
        idx = np.searchsorted(_TABLE32, scale.astype(np.float32).ravel(), side="left")
    return np.minimum(idx, len(SCALE_TABLE) - 1).astype(np.int32)


def clamp_symbols(symbols: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(symbols).ravel(), -SYMBOL_MAX, SYMBOL_MAX).astype(np.int32)


def encode_symbols(symbols: np.ndarray, idx: np.ndarray) -> bytes:
    """ANS-code integer symbols (already clamped) with per-symbol scale indices; returns the payload."""
    symbols = np.ascontiguousarray(symbols, dtype=np.int32).ravel()
    idx = np.asarray(idx).ravel()
    if symbols.size != idx.size:
        raise ValueError("symbols and scale indices differ in length")
    if symbols.size and np.abs(symbols).max() > SYMBOL_MAX:
        raise ValueError(f"symbols must lie in [-{SYMBOL_MAX}, {SYMBOL_MAX}]")
    coder = constriction.stream.stack.AnsCoder()
    if symbols.size:
        try:
            coder.encode_reverse(symbols, _MODEL, np.zeros(symbols.size), SCALE_TABLE[idx])
        except KeyError as exc:  # constriction: a symbol of zero probability (cannot happen for valid inputs)
            raise ValueError(f"the entropy coder refused a symbol: {exc}") from None
    return coder.get_compressed().astype("<u4").tobytes()


def payload_words(payload: bytes) -> np.ndarray:
    """The 32-bit words of an ANS payload; CodingError unless it is whole words ending in a nonzero one. A valid ANS
    stream ends with a nonzero head word, or is empty: the stream of symbols that are all -SYMBOL_MAX, whose
    cumulative probability is 0, leaves the coder in its empty state (and decodes back from it)."""
    if len(payload) % 4:
        raise CodingError("payload length is not a multiple of 4 bytes")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    if words.size and words[-1] == 0:
        raise CodingError("payload is truncated (its last word is zero)")
    return words


def decode_symbols(payload: bytes, idx: np.ndarray) -> np.ndarray:
    """Inverse of `encode_symbols`; raises CodingError if the payload is malformed."""
    idx = np.asarray(idx).ravel()
    words = payload_words(payload)
    if idx.size == 0:
        if words.size:
            raise CodingError("payload holds data where none is expected")
        return np.zeros(0, dtype=np.int32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        symbols = coder.decode(_MODEL, np.zeros(idx.size), SCALE_TABLE[idx])
    except Exception as exc:  # constriction raises plain exceptions on exhausted or invalid data
        raise CodingError(f"payload does not decode: {exc}") from exc
    if not coder.is_empty():
        raise CodingError("payload has data left over after decoding")
    return np.asarray(symbols, dtype=np.int32)


def information_bits(symbols: np.ndarray, idx: np.ndarray) -> float:
    """Ideal code length in bits of the symbols under the table model (what the ANS coder aims for)."""
    import torch  # (scipy.special's ndtr would add a warnings filter to the caller's process on first import)

    def ndtr(v: np.ndarray) -> np.ndarray:
        return torch.special.ndtr(torch.from_numpy(v)).numpy()

    s = np.abs(np.asarray(symbols, dtype=np.float64).ravel())
    sigma = SCALE_TABLE[np.asarray(idx).ravel()]
    p = ndtr((0.5 - s) / sigma) - ndtr((-0.5 - s) / sigma)
    return float(-np.log2(np.maximum(p, 2.0**-24)).sum())
