import numpy as np
import pytest

from hitcodec import coding


def _random_symbols(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(coding.SCALE_TABLE), n).astype(np.int32)
    sym = coding.clamp_symbols(np.round(rng.normal(0, coding.SCALE_TABLE[idx])))
    return sym, idx


def test_round_trip_is_exact():
    sym, idx = _random_symbols(20_000)
    assert np.array_equal(coding.decode_symbols(coding.encode_symbols(sym, idx), idx), sym)


def test_actual_bits_match_information_content():
    sym, idx = _random_symbols(50_000, seed=1)
    actual = 8 * len(coding.encode_symbols(sym, idx))
    estimated = coding.information_bits(sym, idx)
    assert abs(actual - estimated) / estimated < 0.01


def test_extreme_symbols_are_codable():
    sym = np.array([coding.SYMBOL_MAX, -coding.SYMBOL_MAX, 0, 5], dtype=np.int32)
    idx = np.zeros(4, dtype=np.int32)  # narrowest scale: far-out symbols are improbable but codable
    assert np.array_equal(coding.decode_symbols(coding.encode_symbols(sym, idx), idx), sym)
    with pytest.raises(ValueError):
        coding.encode_symbols(np.array([coding.SYMBOL_MAX + 1], dtype=np.int32), np.zeros(1, dtype=np.int32))


def test_scale_index_snaps_up_to_the_table():
    assert coding.scale_index(np.array([0.0, 0.11, 0.1101, 1e9])).tolist() == [0, 0, 1, 63]
    assert (coding.SCALE_TABLE[coding.scale_index(np.array([0.5, 3.3]))] >= [0.5, 3.3]).all()


def test_malformed_payloads_are_rejected():
    # The coder catches what is structurally wrong; content damage is the bitstream CRC's job.
    sym, idx = _random_symbols(1000)
    payload = coding.encode_symbols(sym, idx)
    for bad in (payload[:-1], b"\x00\x00\x00\x00", payload + b"\x00\x00\x00\x00"):
        with pytest.raises(coding.CodingError):
            coding.decode_symbols(bad, idx)
    assert coding.encode_symbols(np.zeros(0, np.int32), np.zeros(0, np.int32)) == b""


def test_symbols_that_all_lie_at_the_bottom_code_to_an_empty_payload():
    # their cumulative probability is 0, so the coder stays in its empty state; the decoder once refused b""
    idx = np.arange(7, dtype=np.int32)
    low = np.full(7, -coding.SYMBOL_MAX, np.int32)
    assert coding.encode_symbols(low, idx) == b""
    assert np.array_equal(coding.decode_symbols(b"", idx), low)
    high = coding.encode_symbols(np.array([-coding.SYMBOL_MAX, 0], np.int32), np.zeros(2, np.int32))
    assert len(high) > 0 and coding.decode_symbols(high, np.zeros(2, np.int32)).tolist() == [-coding.SYMBOL_MAX, 0]


def test_golden_payload_pins_the_entropy_model():
    """These bytes are part of the format (docs/bitstream.md): a constriction release that changed its
    QuantizedGaussian or its ANS words would make every stored file undecodable."""
    symbols = np.array([0, 1, -1, 5, -7, 1023, -1023, 0, 2, -3, 40, 0], np.int32)
    idx = np.array([0, 10, 20, 30, 40, 50, 63, 5, 15, 25, 35, 45], np.int32)
    payload = coding.encode_symbols(symbols, idx)
    assert payload.hex() == "0001fa4affffff677da761a17d150000"
    assert np.array_equal(coding.decode_symbols(payload, idx), symbols)
