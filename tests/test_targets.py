import math

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
