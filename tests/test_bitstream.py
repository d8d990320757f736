import struct
import zlib

import pytest

from hitcodec import bitstream
from hitcodec.bitstream import BitstreamError, Header

HEADER = Header(model_id=bytes.fromhex("0123456789abcdef"), beta2=2.0, beta1=0.5, width=33, height=47, mode="RGB",
                latents_crc=0xDEADBEEF)
HEADER_V1 = Header(HEADER.model_id, 2.0, 0.5, 33, 47, "RGB", latents_crc=None, version=1)

# The header of version 2, pinned: magic, version 2, mode RGB (1), flags 0, model id, beta2 2.0, beta1 0.5 (f32),
# width 33, height 47, 2 payloads of 3 and 2 bytes, the latents' CRC-32, then the CRC32 and the payloads.
GOLDEN = bytes.fromhex(
    "48495443" "02" "01" "0000" "0123456789abcdef" "00000040" "0000003f" "21000000" "2f000000" "02"
    "03000000" "02000000" "efbeadde"
)
# Version 1 (still read): the same without the latents' CRC-32.
GOLDEN_V1 = bytes.fromhex(
    "48495443" "01" "01" "0000" "0123456789abcdef" "00000040" "0000003f" "21000000" "2f000000" "02"
    "03000000" "02000000"
)


@pytest.mark.parametrize("header, golden", [(HEADER, GOLDEN), (HEADER_V1, GOLDEN_V1)])
def test_golden_header_bytes(header, golden):
    data = bitstream.pack(header, [b"abc", b"de"])
    assert data[:len(golden)] == golden
    crc = zlib.crc32(b"abcde", zlib.crc32(golden))
    assert data[len(golden):] == struct.pack("<I", crc) + b"abcde"


@pytest.mark.parametrize("header", [HEADER, HEADER_V1])
def test_round_trip(header):
    header_back, payloads = bitstream.unpack(bitstream.pack(header, [b"abc", b"de"]))
    assert header_back == header and payloads == [b"abc", b"de"]


def test_the_latents_crc_belongs_to_version_2_only():
    with pytest.raises(ValueError, match="CRC"):
        bitstream.pack(Header(HEADER.model_id, 2.0, 0.5, 33, 47, "RGB"), [b"abc"])
    with pytest.raises(ValueError, match="CRC"):
        bitstream.pack(Header(HEADER.model_id, 2.0, 0.5, 33, 47, "RGB", 1, version=1), [b"abc"])
    with pytest.raises(ValueError, match="version 3"):
        bitstream.pack(Header(HEADER.model_id, 2.0, 0.5, 33, 47, "RGB", 1, version=3), [b"abc"])


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"JUNK" + d[4:], "magic"),
    (lambda d: d[:4] + b"\x03" + d[5:], "version"),
    (lambda d: d[:4] + b"\x01" + d[5:], "trailing"),  # read as version 1, without the latents' CRC
    (lambda d: d[:41] + bytes([d[41] ^ 1]) + d[42:], "CRC32"),  # the latents' CRC is covered by the file's
    (lambda d: d[:10], "truncated"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d + b"x", "trailing"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "CRC32"),
    (lambda d: d[:16] + bytes([d[16] ^ 0x80]) + d[17:], "CRC32"),  # beta2 changed
    (lambda d: d[:5] + b"\x09" + d[6:], "mode"),
    (lambda d: b"", "not a hitcodec file \\(the file is empty\\)"),
    (lambda d: b"HIT", "magic"),
])
def test_corrupted_files_are_rejected(mutate, message):
    data = bitstream.pack(HEADER, [b"abc", b"de"])
    with pytest.raises(BitstreamError, match=message):
        bitstream.unpack(mutate(data))


def test_declared_size_is_capped():
    data = bitstream.pack(Header(HEADER.model_id, 1.0, 1.0, 100_000, 100_000, "RGB", 0), [b"a", b"b"])
    with pytest.raises(BitstreamError, match="outside the allowed range"):
        bitstream.unpack(data)
    assert bitstream.unpack(data, max_pixels=10**10)[0].width == 100_000


@pytest.mark.parametrize("header", [HEADER, HEADER_V1])
def test_declared_size_from_the_first_bytes(header):
    """What a reader of a stream needs to know how much to read: the whole file's length, from HEADER_MAX bytes;
    None for bytes that unpack refuses before the lengths (it says why)."""
    for payloads in ([b"abc", b"de"], [b"x" * 1000], [b"a", b"", b"c" * 70]):
        data = bitstream.pack(header, payloads)
        assert bitstream.declared_size(data[:bitstream.HEADER_MAX]) == len(data)
        assert bitstream.declared_size(data[:bitstream.HEADER_MAX] + b"more") == len(data)
    data = bitstream.pack(header, [b"abc", b"de"])
    for refused in (b"", b"HIT", data[:20], b"JUNK" + data[4:], data[:4] + b"\x03" + data[5:],
                    data[:32] + b"\x04" + data[33:]):
        assert bitstream.declared_size(refused) is None
        with pytest.raises(BitstreamError):
            bitstream.unpack(refused)


def test_read_a_stream_as_far_as_its_header_declares():
    """bitstream.read: the whole file from a stream, in short reads too (an unbuffered pipe), and no further than
    the declared end plus TRAILING_READ bytes (so unpack counts trailing bytes): an endless stream is not read."""
    import io
    import itertools

    class Trickle(io.RawIOBase):  # 7 bytes per read, then zeros for ever
        def __init__(self, data):
            self.chunks = itertools.chain((data[i:i + 7] for i in range(0, len(data), 7)), itertools.repeat(b"\0" * 7))
            self.served = 0

        def readable(self):
            return True

        def read(self, size=-1):
            chunk = next(self.chunks)[:size]
            self.served += len(chunk)
            return chunk

    data = bitstream.pack(HEADER, [b"abc" * 30, b"de"])
    assert bitstream.read(io.BytesIO(data)) == data
    assert bitstream.read(io.BytesIO(data + b"xyz")) == data + b"xyz"
    with pytest.raises(BitstreamError, match="trailing"):
        bitstream.unpack(bitstream.read(io.BytesIO(data + b"xyz")))
    endless = Trickle(data)
    with pytest.raises(BitstreamError, match=f"more than {bitstream.TRAILING_READ} after the {len(data)} bytes"):
        bitstream.read(endless)
    assert endless.served == len(data) + bitstream.TRAILING_READ + 1
    zeros = Trickle(b"")
    assert bitstream.read(zeros) == bytes(bitstream.HEADER_MAX) and zeros.served == bitstream.HEADER_MAX
    assert bitstream.read(io.BytesIO(data[:30])) == data[:30]
