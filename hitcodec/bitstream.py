"""The .hit container: a fixed little-endian header, per-layer payloads and a CRC32. Only frames bytes.

See docs/bitstream.md for the byte layout. Parsing checks magic, version, sizes, lengths and the CRC before
anything is allocated or decoded. Version 2 (written) adds a CRC-32 of the latent symbols, which the decoder
checks after decoding them (`hitcodec.codec.latents_crc`); version 1 files are still read.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"HITC"
VERSION = 2  # the version written
READ_VERSIONS = (1, 2)
MODES = ("L", "RGB", "LA", "RGBA")  # mode byte -> Pillow mode of the decoded image
MAX_PAYLOADS = 3  # z2, z1 and, for images with alpha, the zlib-compressed alpha plane
DEFAULT_MAX_PIXELS = 1 << 28  # refuse to decode declared sizes above this (about 268 megapixels)
_FIXED = struct.Struct("<4sBBH8sffIIB")  # magic, version, mode, flags, model id, beta2, beta1, width, height, n
HEADER_MAX = _FIXED.size + 4 * MAX_PAYLOADS + 4 + 4  # the longest header: payload lengths, latents CRC, CRC
TRAILING_READ = 1 << 20  # bytes after the declared end that `read` reads, so that `unpack` can count them


class BitstreamError(ValueError):
    """Bytes that are not a valid .hit file."""


@dataclass(frozen=True)
class Header:
    model_id: bytes  # 8 bytes, from the model weights (see hitcodec.weights.model_id)
    beta2: float  # float32 value
    beta1: float
    width: int
    height: int
    mode: str  # one of MODES
    latents_crc: int | None = None  # CRC-32 of the latent symbols: an int in version 2, None in version 1
    version: int = VERSION

    @property
    def model_id_hex(self) -> str:
        return self.model_id.hex()


def pack(header: Header, payloads: list[bytes]) -> bytes:
    """Header, payload lengths, CRC32 of everything else, then the payloads."""
    if header.mode not in MODES:
        raise ValueError(f"unknown image mode {header.mode!r}")
    if len(header.model_id) != 8:
        raise ValueError("model id must be 8 bytes")
    if not 1 <= len(payloads) <= MAX_PAYLOADS:
        raise ValueError(f"between 1 and {MAX_PAYLOADS} payloads expected")
    if header.version not in READ_VERSIONS:
        raise ValueError(f"unknown format version {header.version}")
    if (header.version >= 2) != (header.latents_crc is not None):
        raise ValueError("format version 2 needs the latents' CRC-32, and version 1 has none")
    head = _FIXED.pack(MAGIC, header.version, MODES.index(header.mode), 0, header.model_id, header.beta2,
                       header.beta1, header.width, header.height, len(payloads))
    head += struct.pack(f"<{len(payloads)}I", *(len(p) for p in payloads))
    if header.latents_crc is not None:
        head += struct.pack("<I", header.latents_crc)
    body = b"".join(payloads)
    crc = zlib.crc32(body, zlib.crc32(head))
    return head + struct.pack("<I", crc) + body


def _head_size(version: int, n: int) -> int:
    """Bytes before the CRC32: the fixed part, the payload lengths and, from version 2, the latents' CRC-32."""
    return _FIXED.size + 4 * n + 4 * (version >= 2)


def declared_size(head: bytes) -> int | None:
    """The length of the whole file that a header declares, from the first bytes of a file (`HEADER_MAX` are
    enough); None where they are not a header that `unpack` would go on to read (it says why), so that a reader
    of a stream knows how much to read."""
    if len(head) < _FIXED.size or head[:4] != MAGIC:
        return None
    fields = _FIXED.unpack_from(head)
    version, n = fields[1], fields[-1]
    head_size = _head_size(version, n)
    if version not in READ_VERSIONS or not 1 <= n <= MAX_PAYLOADS or len(head) < head_size + 4:
        return None
    return head_size + 4 + sum(struct.unpack_from(f"<{n}I", head, _FIXED.size))


def read_up_to(stream: BinaryIO, size: int) -> bytes:
    """``size`` bytes of ``stream``, fewer only at its end (an unbuffered pipe's read returns what has arrived).
    Read a MiB at a time (a file object's read(n) allocates n bytes before it reads any) into one growing buffer
    (no second copy at the end, as a join of the pieces would make)."""
    out, left = io.BytesIO(), size
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        out.write(chunk)
        left -= len(chunk)
    return out.getvalue()


def read(stream: BinaryIO) -> bytes:
    """The bytes of a .hit file from a binary stream, read as far as its header declares and up to `TRAILING_READ`
    bytes more (so that `unpack` counts trailing bytes): a stream that never ends (/dev/zero, a pipe) is not read
    until memory runs out. Bytes that are not a header that `unpack` reads are returned as read (it says why)."""
    head = read_up_to(stream, HEADER_MAX)
    size = declared_size(head)
    if size is None:
        return head
    data = head + read_up_to(stream, max(size - len(head), 0) + TRAILING_READ + 1)
    if len(data) > size + TRAILING_READ:
        raise BitstreamError(f"hitcodec file has trailing bytes: more than {TRAILING_READ} after the {size} bytes "
                             "that its header declares")
    return data


def unpack(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Header, list[bytes]]:
    """Parse and check a .hit file; raises BitstreamError with a message a user can act on."""
    data = bytes(data)
    if not data:
        raise BitstreamError("not a hitcodec file (the file is empty)")
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not a hitcodec file (bad magic bytes)")
    if len(data) < _FIXED.size:
        raise BitstreamError("truncated hitcodec header")
    magic, version, mode, flags, model_id, beta2, beta1, width, height, n = _FIXED.unpack_from(data)
    if version not in READ_VERSIONS:
        raise BitstreamError(f"unsupported hitcodec format version {version} (this build reads versions "
                             f"{', '.join(map(str, READ_VERSIONS))})")
    if mode >= len(MODES) or flags != 0:
        raise BitstreamError("corrupt hitcodec header (unknown mode or flags)")
    if not 1 <= n <= MAX_PAYLOADS:
        raise BitstreamError(f"corrupt hitcodec header ({n} payloads)")
    head_size = _head_size(version, n)
    if len(data) < head_size + 4:
        raise BitstreamError("truncated hitcodec header")
    lengths = struct.unpack_from(f"<{n}I", data, _FIXED.size)
    latents_crc = struct.unpack_from("<I", data, _FIXED.size + 4 * n)[0] if version >= 2 else None
    (crc,) = struct.unpack_from("<I", data, head_size)
    body = data[head_size + 4:]
    if len(body) != sum(lengths):
        what = "truncated" if len(body) < sum(lengths) else "has trailing bytes"
        raise BitstreamError(f"hitcodec file {what}: {len(body)} payload bytes, header declares {sum(lengths)}")
    if zlib.crc32(body, zlib.crc32(data[:head_size])) != crc:
        raise BitstreamError("hitcodec file is corrupt (CRC32 mismatch)")
    if width < 1 or height < 1 or width * height > max_pixels:
        raise BitstreamError(f"image size {width}x{height} is outside the allowed range (max {max_pixels} pixels; "
                             "raise it with --max-pixels, max_pixels= in Python)")
    header = Header(model_id, beta2, beta1, width, height, MODES[mode], latents_crc, version)
    payloads, offset = [], 0
    for length in lengths:
        payloads.append(body[offset:offset + length])
        offset += length
    return header, payloads
