"""Seeded mutation fuzzing of the decoder: every mutant decodes or fails with a codec error, never crashes."""

import dataclasses
import random

import numpy as np
import pytest

from benchmarks.fuzz import fix_crc
from hitcodec import codec
from hitcodec.bitstream import BitstreamError
from hitcodec.coding import CodingError
from hitcodec.image import CodecImage

CLEAN_ERRORS = (BitstreamError, CodingError, codec.ModelMismatchError)


def _mutants(data: bytes, rng: random.Random, count: int):
    for _ in range(count):
        b = bytearray(data)
        kind = rng.randrange(6)
        if kind == 0:  # flip bits
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
        elif kind == 1:  # truncate
            b = b[:rng.randrange(len(b))]
        elif kind == 2:  # trailing garbage
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif kind == 3:  # random bytes in place
            i = rng.randrange(len(b))
            b[i:i + 4] = bytes(rng.randrange(256) for _ in range(4))
        elif kind == 4:  # random file with a valid magic
            b = bytearray(b"HITC" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 80))))
        else:  # header field rewritten with a recomputed CRC: absurd sizes, betas, lengths
            b = bytearray(_rewrite(bytes(b), rng))
        yield bytes(b)


def _rewrite(data: bytes, rng: random.Random) -> bytes:
    import struct

    head_size = 33 + 4 * data[32] + 4 * (data[4] >= 2)  # version 2 adds the latents' CRC-32
    head = bytearray(data[:head_size])
    field = rng.choice([(16, "<f"), (20, "<f"), (24, "<I"), (28, "<I"), (33, "<I"), (head_size - 4, "<I")])
    value = rng.choice([0, 1, 7, 2**31, 2**32 - 1, float("nan"), float("inf"), -1.0, 1e30])
    try:
        struct.pack_into(field[1], head, field[0], value)
    except struct.error:
        struct.pack_into(field[1], head, field[0], 0)
    return fix_crc(bytes(head) + data[head_size:])


def test_fix_crc_keeps_valid_files_and_repairs_changed_headers(tiny):
    """benchmarks.fuzz --fix-crc recomputes the file CRC in both format versions (it once ignored version 2's
    latents CRC, so every mutant failed the CRC check and the header checks behind it were never reached)."""
    from hitcodec import bitstream

    image = CodecImage(np.full((24, 40, 3), 90, np.uint8), None, "RGB")
    data = codec.encode(tiny, image, 1.0, 1.0).data
    header, parts = bitstream.unpack(data)
    old = bitstream.pack(dataclasses.replace(header, version=1, latents_crc=None), parts)
    for valid in (data, old):
        assert fix_crc(valid) == valid
        changed = bytearray(valid)
        changed[24] ^= 1  # the width's low byte
        header = bitstream.unpack(fix_crc(bytes(changed)))[0]
        assert (header.width, header.version) == (41, valid[4])


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_mutated_bitstreams_fail_cleanly(tiny, mode):
    rng = np.random.default_rng(0)
    alpha = rng.integers(0, 256, (40, 56), dtype=np.uint8) if mode == "RGBA" else None
    image = CodecImage(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), alpha, mode)
    data = codec.encode(tiny, image, 0.5, 2.0).data
    outcomes = {"decoded": 0, "rejected": 0}
    for mutant in _mutants(data, random.Random(1234), 600):
        try:
            decoded = codec.decode(tiny, mutant, max_pixels=1 << 16)
        except CLEAN_ERRORS:
            outcomes["rejected"] += 1
        else:
            assert decoded.image.rgb.shape[2] == 3
            outcomes["decoded"] += 1
    assert outcomes["rejected"] >= 500, outcomes
