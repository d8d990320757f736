import struct
import zlib

import pytest

from hitcodec import bitstream
from hitcodec.bitstream import BitstreamError, Header

HEADER = Header(model_id=bytes.fromhex("0123456789abcdef"), beta2=2.0, beta1=0.5, width=33, height=47, mode="RGB")

# The header of version 1, pinned: magic, version 1, mode RGB (1), flags 0, model id, beta2 2.0, beta1 0.5 (f32),
# width 33, height 47, 2 payloads of 3 and 2 bytes, CRC32, then the payloads.
GOLDEN = bytes.fromhex(
    "48495443" "01" "01" "0000" "0123456789abcdef" "00000040" "0000003f" "21000000" "2f000000" "02"
    "03000000" "02000000"
)


def test_golden_header_bytes():
    data = bitstream.pack(HEADER, [b"abc", b"de"])
    assert data[:len(GOLDEN)] == GOLDEN
    crc = zlib.crc32(b"abcde", zlib.crc32(GOLDEN))
    assert data[len(GOLDEN):] == struct.pack("<I", crc) + b"abcde"


def test_round_trip():
    header, payloads = bitstream.unpack(bitstream.pack(HEADER, [b"abc", b"de"]))
    assert header == HEADER and payloads == [b"abc", b"de"]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"JUNK" + d[4:], "magic"),
    (lambda d: d[:4] + b"\x02" + d[5:], "version"),
    (lambda d: d[:10], "truncated"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d + b"x", "trailing"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "CRC32"),
    (lambda d: d[:16] + bytes([d[16] ^ 0x80]) + d[17:], "CRC32"),  # beta2 changed
    (lambda d: d[:5] + b"\x09" + d[6:], "mode"),
    (lambda d: b"", "magic"),
])
def test_corrupted_files_are_rejected(mutate, message):
    data = bitstream.pack(HEADER, [b"abc", b"de"])
    with pytest.raises(BitstreamError, match=message):
        bitstream.unpack(mutate(data))


def test_declared_size_is_capped():
    data = bitstream.pack(Header(HEADER.model_id, 1.0, 1.0, 100_000, 100_000, "RGB"), [b"a", b"b"])
    with pytest.raises(BitstreamError, match="outside the allowed range"):
        bitstream.unpack(data)
    assert bitstream.unpack(data, max_pixels=10**10)[0].width == 100_000
