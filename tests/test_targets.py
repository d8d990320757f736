import math

import numpy as np

from hitcodec.targets import search_scale


def test_search_scale_hits_a_monotone_target_in_few_steps():
    calls = []

    def bits(u):
        calls.append(u)
        return 1e5 * math.exp(-0.8 * u) + 3e3

    for target in (4e4, 2e5, 2.5e4, 5e5):
        calls.clear()
        u, n = search_scale(bits, target, math.log(0.1), math.log(10), math.log1p(0.02), 8)
        assert abs(bits(u) / target - 1) <= 0.02 and n <= 6


def test_search_scale_stops_at_the_edge_when_out_of_reach():
    u, n = search_scale(lambda u: 1e5 * math.exp(-u), 10.0, math.log(0.1), math.log(10), 0.02, 8)
    assert u == math.log(10) and n <= 8


def _fake_model(monkeypatch, size_of):
    """compress_to_size and compress_to_layer_rates over a fake encoder: ``size_of(beta2, beta1)`` gives the file's
    bytes, or (z2 bytes, z1 bytes)."""
    from types import SimpleNamespace

    from hitcodec import targets

    def encode(loaded, image, beta2, beta1, device="cpu"):
        sizes = size_of(beta2, beta1)
        z2, z1 = sizes if isinstance(sizes, tuple) else (0, sizes)
        layers = (SimpleNamespace(payload_bytes=z2), SimpleNamespace(payload_bytes=z1))
        return SimpleNamespace(data=bytes(z2 + z1), layers=layers, header=SimpleNamespace(beta2=beta2, beta1=beta1))

    monkeypatch.setattr(targets.codec, "encode", encode)
    loaded = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(beta_min=0.1, beta_max=10.0)))
    image = SimpleNamespace(rgb=np.zeros((64, 64, 3), np.uint8))
    return loaded, image


def test_size_messages_say_why_a_target_was_missed(monkeypatch):
    from hitcodec.targets import compress_to_size

    loaded, image = _fake_model(monkeypatch, lambda b2, b1: 97 if b1 > 1 else 101)  # sizes step by whole words
    result = compress_to_size(loaded, image, 99)  # was "out of reach: this is the smallest file" (of 101 bytes)
    assert not result.reached and "no size within 2%: the nearest were 97 and 101 bytes" in result.message
    loaded, image = _fake_model(monkeypatch, lambda b2, b1: 69 if b1 > 2 else 80)  # a plateau at the top
    result = compress_to_size(loaded, image, 50)  # was "no closer size found within the encode budget"
    assert "out of reach: the smallest file the model made at this beta2/beta1 ratio is 69 bytes" in result.message
    result = compress_to_size(loaded, image, 500)
    assert "out of reach: the largest file the model made at this beta2/beta1 ratio is 80 bytes" in result.message


def test_a_layer_met_at_other_betas_is_not_called_out_of_reach(monkeypatch):
    from hitcodec.targets import compress_to_layer_rates

    # z2's rate follows beta1 (not beta2), as the shipped model's does in part: z1 met, z2 then off
    loaded, image = _fake_model(monkeypatch, lambda b2, b1: (max(1, round(40 * b1)), max(1, round(2000 / b1))))
    result = compress_to_layer_rates(loaded, image, 0.02, 0.5)
    assert not result.reached
    assert "z1" in result.message and "out of reach" not in result.message.split("z1")[1], result.message
