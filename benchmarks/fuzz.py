"""Coverage-guided fuzzing of the .hit decoder with atheris (libFuzzer), counting every outcome.

    pip install atheris
    python -m benchmarks.fuzz --seconds 600 --out runs/fuzz [--fix-crc]

Seeds are valid files (RGB, RGBA, gray) from a tiny random model; libFuzzer mutates them, keeping inputs that
reach new code of the instrumented hitcodec modules. Each input is decoded with ``max_pixels`` 2^16. Outcomes:
rejected cleanly (a codec error: BitstreamError, CodingError, ModelMismatchError), decoded, crashed (any
other exception; the input is saved under --out/crashes), slow (> 2 s). ``--fix-crc`` recomputes the CRC32 of
each mutant first, so that mutations get past the checksum into the header checks and the layer decoders.
Writes --out/summary.json and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

try:
    import atheris
except ImportError:  # only main() needs it: the rest imports without it (tests/test_fuzz.py uses fix_crc)
    atheris = None

with atheris.instrument_imports(include=["hitcodec"]) if atheris else contextlib.nullcontext():
    from hitcodec import codec
    from hitcodec.bitstream import BitstreamError
    from hitcodec.coding import CodingError
    from hitcodec.image import CodecImage
    from hitcodec.models.ghvae import GHVAE, GHVAEConfig
    from hitcodec.weights import LoadedModel, model_id

CLEAN_ERRORS = (BitstreamError, CodingError, codec.ModelMismatchError)
SLOW_S = 2.0


def tiny_model() -> LoadedModel:
    torch.manual_seed(0)
    model = GHVAE(GHVAEConfig(n=16, z1_channels=8, z2_channels=4, embed=8))
    with torch.no_grad():  # non-trivial latents, as in the tests
        model.enc_z1[-1].weight.mul_(30)
        model.h_a[-1].weight.mul_(30)
    model.eval()
    return LoadedModel(model, model_id(model), "tiny")


def seeds(loaded: LoadedModel) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for mode, (h, w), betas in (("RGB", (40, 56), (0.5, 2.0)), ("RGBA", (17, 23), (1.0, 1.0)),
                                ("L", (64, 64), (10.0, 0.1)), ("RGB", (1, 1), (0.1, 0.1))):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if mode == "L":
            rgb[:] = rgb[:, :, :1]
        alpha = rng.integers(0, 256, (h, w), dtype=np.uint8) if mode == "RGBA" else None
        out.append(codec.encode(loaded, CodecImage(rgb, alpha, mode), *betas).data)
    return out


def fix_crc(data: bytes) -> bytes:
    """Recompute the header CRC (over header and payloads) of a mutant, when its layout allows."""
    if len(data) < 33:  # fixed header fields; byte 4 is the version, byte 32 the payload count (docs/bitstream.md)
        return data
    head_size = 33 + 4 * data[32] + 4 * (data[4] >= 2)  # version 2 adds the latents' CRC-32
    if len(data) < head_size + 4:
        return data
    body = data[head_size + 4:]
    return data[:head_size] + struct.pack("<I", zlib.crc32(body, zlib.crc32(data[:head_size]))) + body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="coverage-guided fuzzing of the .hit decoder")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--runs", type=int, default=0, help="stop after this many inputs (0: time only)")
    parser.add_argument("--out", default="runs/fuzz")
    parser.add_argument("--fix-crc", action="store_true")
    args = parser.parse_args(argv)
    if atheris is None:
        parser.error("needs atheris: pip install atheris")
    torch.set_num_threads(1)
    out = Path(args.out)
    corpus, crashes = out / "corpus", out / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    loaded = tiny_model()
    for i, seed in enumerate(seeds(loaded)):
        (corpus / f"seed{i}.hit").write_bytes(seed)
    seed_count = len(list(corpus.iterdir()))
    counts = {"inputs": 0, "rejected": 0, "decoded": 0, "crashed": 0, "slow": 0}
    errors: dict[str, int] = {}
    start = time.perf_counter()

    def finish() -> None:
        summary = {**counts, "seconds": round(time.perf_counter() - start, 1), "fix_crc": args.fix_crc,
                   "corpus_seeds": seed_count, "corpus_final": len(list(corpus.iterdir())),
                   "max_slowest_s": round(counts.get("slowest", 0.0), 3), "rejection_messages": errors}
        summary.pop("slowest", None)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary, indent=1), flush=True)
        os._exit(0)

    def target(data: bytes) -> None:
        if args.fix_crc:
            data = fix_crc(data)
        t0 = time.perf_counter()
        try:
            codec.decode(loaded, data, max_pixels=1 << 16)
        except CLEAN_ERRORS as exc:
            counts["rejected"] += 1
            key = re.sub(r"[0-9a-f]{16}|\d+", "N", " ".join(str(exc).split()[:6]))
            errors[key] = errors.get(key, 0) + 1
        except Exception as exc:  # noqa: BLE001 - a crash: record it and go on
            counts["crashed"] += 1
            (crashes / f"crash{counts['crashed']}.hit").write_bytes(data)
            print(f"CRASH {type(exc).__name__}: {exc}", file=sys.stderr)
        else:
            counts["decoded"] += 1
        elapsed = time.perf_counter() - t0
        counts["slow"] += elapsed > SLOW_S
        counts["slowest"] = max(counts.get("slowest", 0.0), elapsed)
        counts["inputs"] += 1
        if time.perf_counter() - start > args.seconds or (args.runs and counts["inputs"] >= args.runs):
            finish()

    atheris.Setup([sys.argv[0], str(corpus), "-max_len=4096", "-print_final_stats=1"], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
