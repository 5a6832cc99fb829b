"""Decay kernels: hand-computed values, as-of exclusion, and naive O(n^2) references."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from decayrec.decay import (
    IdMap,
    PairMap,
    counts,
    decayed_sums,
    event_weights,
    from_days,
    last_event_time,
    pair_codes,
    peak_time,
    peak_times,
    states_after_events,
    states_before_events,
    time_to_fade,
    to_days,
)

HOUR = 1 / 24
SCALES = np.array([HOUR, 1.0, 7.0, 30.0, 120.0])


def naive_states(keys, times, weights, h, strict):
    """S of each event's key at its time: strict=True excludes events at that time (left limit)."""
    out = np.zeros(len(keys))
    for i in range(len(keys)):
        m = (keys == keys[i]) & ((times < times[i]) if strict else (times <= times[i]))
        out[i] = np.sum(weights[m] * 2.0 ** (-(times[i] - times[m]) / h))
    return out


def naive_sums(keys, times, weights, h, at, n_keys):
    out = np.zeros((n_keys, len(h)))
    for k, t, w in zip(keys, times, weights):
        if t <= at:
            out[k] += w * 2.0 ** (-(at - t) / np.asarray(h))
    return out


def close(a, b, rtol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-300)


# -- decayed_sums ----------------------------------------------------------------------
def test_one_event_halves_every_half_life():
    for at, expected in [(0.0, 2.0), (7.0, 1.0), (14.0, 0.5)]:
        assert decayed_sums([0], [0.0], [2.0], [7.0], at=at)[0, 0] == pytest.approx(expected, rel=1e-15)


def test_several_scales_and_keys_match_hand_values():
    keys = np.array([0, 0, 1])
    times = np.array([0.0, 1.0, 2.0])
    weights = np.array([1.0, 3.0, 5.0])
    got = decayed_sums(keys, times, weights, [1.0, 2.0], at=2.0)
    close(got, [[0.25 + 1.5, 0.5 + 3 * 2**-0.5], [5.0, 5.0]])


def test_future_events_are_ignored_as_of():
    keys = np.array([0, 0, 1])
    times = np.array([0.0, 5.0, 6.0])
    got = decayed_sums(keys, times, np.ones(3), [1.0], at=4.0)
    assert got.shape == (2, 1)  # the shape never depends on `at`
    close(got[:, 0], [2.0**-4, 0.0])


def test_decayed_sums_matches_naive_on_random_data():
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 30, 3000)
    times = rng.uniform(0, 400, 3000)
    weights = rng.uniform(0, 5, 3000)
    close(decayed_sums(keys, times, weights, SCALES, at=300.0, n_keys=40), naive_sums(keys, times, weights, SCALES, 300.0, 40))


def test_long_spans_underflow_to_zero_without_warnings():
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is the point
        got = decayed_sums([0, 0], [-1e6, 0.0], [1.0, 1.0], [HOUR, 1e9], at=1.0)
    assert got[0, 0] == pytest.approx(2.0**-24, rel=1e-13)
    assert got[0, 1] == pytest.approx(2.0 ** (-(1e6 + 1) / 1e9) + 2.0 ** (-1 / 1e9), rel=1e-13)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="half-lives"):
        decayed_sums([0], [0.0], [1.0], [0.0], at=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        decayed_sums([-1], [0.0], [1.0], [1.0], at=1.0)
    with pytest.raises(ValueError, match="out of range"):
        decayed_sums([3], [0.0], [1.0], [1.0], at=1.0, n_keys=2)
    with pytest.raises(TypeError):
        decayed_sums([0.5], [0.0], [1.0], [1.0], at=1.0)


def test_event_weights_look_up_types():
    close(event_weights(np.array([0, 4, 4, 2]), [1.0, 2.0, 3.0, 4.0, 10.0]), [1.0, 10.0, 10.0, 3.0])


# -- per-key aggregates --------------------------------------------------------------
def test_last_event_time_and_counts_are_as_of():
    keys = np.array([0, 0, 1, 1, 2])
    types = np.array([0, 4, 1, 1, 0])
    times = np.array([1.0, 3.0, 2.0, 9.0, 10.0])
    np.testing.assert_array_equal(last_event_time(keys, times, at=5.0), [3.0, 2.0, -np.inf])
    got = counts(keys, types, times, at=5.0)
    assert got.shape == (3, 5)
    np.testing.assert_array_equal(got[0], [1, 0, 0, 0, 1])
    np.testing.assert_array_equal(got[1], [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(got[2], 0)


# -- time to fade ----------------------------------------------------------------------
def test_time_to_fade_closed_form_matches_brute_force():
    rng = np.random.default_rng(2)
    values = rng.uniform(0, 10, 50)
    h, threshold = 3.5, 0.4
    got = time_to_fade(values, h, threshold)
    grid = np.linspace(0, 40, 400_001)  # 1e-4 day steps
    for v, g in zip(values, got):
        below = grid[v * 2.0 ** (-grid / h) <= threshold]
        assert g == pytest.approx(below[0], abs=1.1e-4)


def test_time_to_fade_broadcasts_over_scales_and_handles_zero():
    got = time_to_fade(np.array([[4.0, 4.0], [0.0, 0.5]]), np.array([1.0, 10.0]), 1.0)
    close(got, [[2.0, 20.0], [0.0, 0.0]])


# -- per-event states ----------------------------------------------------------------------
@pytest.mark.parametrize("h", [HOUR, 1.0, 30.0, 1e5])
def test_states_match_naive_reference(h):
    rng = np.random.default_rng(3)
    n = 1500
    keys = rng.integers(0, 12, n)
    times = np.round(rng.uniform(0, 900, n), 1)  # rounding makes ties
    weights = rng.uniform(0.1, 3, n)
    close(states_after_events(keys, times, weights, h), naive_states(keys, times, weights, h, strict=False))
    # The left limit of a far-away event is a tiny number whose exponent carries the
    # rounding of t/h, so compare at the precision exp gives for |x| ~ 1e4.
    close(states_before_events(keys, times, weights, h), naive_states(keys, times, weights, h, strict=True), 1e-11)


def test_time_ordered_log_gives_the_same_states():
    # The store scans events in time order: keys interleave, the sort packs (key, rank).
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 25, 2000)
    times = np.sort(np.round(rng.uniform(0, 50, 2000), 1))
    weights = rng.uniform(0.1, 3, 2000)
    close(states_after_events(keys, times, weights, 2.0), naive_states(keys, times, weights, 2.0, strict=False))


def test_years_of_events_with_an_hour_half_life():
    rng = np.random.default_rng(4)
    n = 1200
    keys = rng.integers(0, 4, n)
    times = rng.uniform(0, 3 * 365, n)
    times[:300] = 500 + rng.uniform(0, 0.2, 300)  # a dense burst: many live terms at once
    weights = rng.uniform(0.5, 2, n)
    with np.errstate(over="raise", invalid="raise"):
        after = states_after_events(keys, times, weights, HOUR)
    close(after, naive_states(keys, times, weights, HOUR, strict=False))
    assert np.isfinite(after).all()


def test_long_single_sequence_uses_every_doubling_pass():
    times = np.arange(5000) * 0.01
    weights = np.ones(5000)
    after = states_after_events(np.zeros(5000, dtype=int), times, weights, 1000.0)
    # Geometric series: sum_{j<=i} q^j with q = 2^(-0.01/1000).
    q = 2.0 ** (-0.01 / 1000)
    close(after, (1 - q ** np.arange(1, 5001)) / (1 - q), 1e-10)


def test_states_keep_input_order_and_ties_are_order_free():
    keys = np.array([1, 0, 1, 0, 1])
    times = np.array([2.0, 0.0, 2.0, 1.0, 0.0])
    weights = np.array([1.0, 1.0, 2.0, 1.0, 4.0])
    before = states_before_events(keys, times, weights, 1.0)
    after = states_after_events(keys, times, weights, 1.0)
    close(before, [1.0, 0.0, 1.0, 0.5, 0.0])
    close(after, [4.0, 1.0, 4.0, 1.5, 4.0])


def test_recursion_identity_after_equals_before_plus_weight():
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 50, 5000)
    times = rng.uniform(0, 100, 5000)
    weights = rng.uniform(0, 1, 5000)
    after = states_after_events(keys, times, weights, 2.0)
    close(after, states_before_events(keys, times, weights, 2.0) + weights, 1e-12)


# -- peaks ---------------------------------------------------------------------------------
def test_peak_time_on_a_hand_example():
    # h = 1: states after events are 1, 1.5, 1.75, then 1.75 * 2^-8 + 1.5 < 1.75.
    t, v = peak_time([0.0, 1.0, 2.0, 10.0], [1.0, 1.0, 1.0, 1.5], 1.0, at=20.0)
    assert (t, v) == (2.0, pytest.approx(1.75))
    # A later, stronger burst takes over; and `at` hides it.
    assert peak_time([0.0, 1.0, 2.0, 10.0], [1.0, 1.0, 1.0, 3.0], 1.0, at=20.0)[0] == 10.0
    assert peak_time([0.0, 1.0, 2.0, 10.0], [1.0, 1.0, 1.0, 3.0], 1.0, at=9.0)[0] == 2.0


def test_peak_times_per_key_match_brute_force():
    rng = np.random.default_rng(6)
    keys = rng.integers(0, 20, 800)
    times = rng.uniform(0, 60, 800)
    weights = rng.uniform(0.2, 2, 800)
    pt, pv = peak_times(keys, times, weights, 3.0, at=50.0, n_keys=22)
    s = naive_states(keys, times, weights, 3.0, strict=False)
    for k in range(22):
        m = (keys == k) & (times <= 50.0)
        if not m.any():
            assert pt[k] == -np.inf and pv[k] == 0.0
            continue
        best = s[m].max()
        assert pv[k] == pytest.approx(best, rel=1e-12)
        assert pt[k] == times[m][np.isclose(s[m], best, rtol=1e-12)].max()


# -- time conversion -------------------------------------------------------------------------
def test_to_days_from_arrow_and_numpy():
    origin = datetime(2024, 1, 1)
    arrow = pa.array([datetime(2024, 1, 1, 12), datetime(2024, 1, 3)], pa.timestamp("us"))
    close(to_days(arrow, origin), [0.5, 2.0])
    aware = pa.array([datetime(2024, 1, 2, tzinfo=UTC)], pa.timestamp("ms", tz="UTC"))
    close(to_days(aware, "2024-01-01"), [1.0])
    chunked = pa.chunked_array([arrow, arrow])
    close(to_days(chunked, origin), [0.5, 2.0, 0.5, 2.0])
    np_times = np.array(["2023-12-31T18:00", "2024-01-01"], dtype="datetime64[m]")
    close(to_days(np_times, np.datetime64("2024-01-01")), [-0.25, 0.0])
    back = from_days(np.array([0.5, -np.inf]), origin)
    assert back[0] == np.datetime64("2024-01-01T12:00") and np.isnat(back[1])
    with pytest.raises(ValueError, match="null"):
        to_days(pa.array([None], pa.timestamp("us")), origin)


# -- ids ------------------------------------------------------------------------------------------
def test_idmap_round_trip_unknowns_and_json():
    m = IdMap.from_values(pa.array(["b", "a", "c", "a", None]))
    assert len(m) == 3 and m.ids.to_pylist() == ["a", "b", "c"]
    codes = m.encode(["c", "zz", None, "a"])
    assert codes.dtype == np.int32
    np.testing.assert_array_equal(codes, [2, -1, -1, 0])
    assert m.decode(codes).to_pylist() == ["c", None, None, "a"]
    assert IdMap.from_json(m.to_json()) == m
    grown = m.extend(["d", "a", "0"])
    np.testing.assert_array_equal(grown.encode(["a", "b", "c", "0", "d"]), [0, 1, 2, 3, 4])
    with pytest.raises(ValueError):
        IdMap.from_json('{"ids": ["a"]}')


def test_pair_codes_are_dense_sorted_and_decode():
    users = np.array([3, 0, 3, 1, 0, 3])
    keys = np.array([2, 1, 0, 1, 1, 2])
    codes, pairs = pair_codes(users, keys, n_keys=4)
    assert len(pairs) == 4
    np.testing.assert_array_equal(codes, [3, 0, 2, 1, 0, 3])  # (0,1) (1,1) (3,0) (3,2)
    u, k = pairs.decode(codes)
    np.testing.assert_array_equal(u, users)
    np.testing.assert_array_equal(k, keys)
    np.testing.assert_array_equal(pairs.encode([3, 2, 0, -1], [0, 2, 1, 1]), [2, -1, 0, -1])
    assert pairs.user_pairs(3) == slice(2, 4)
    assert pairs.user_pairs(2) == slice(2, 2)
    with pytest.raises(ValueError):
        PairMap([0, 0], [1, 1], 4)


def test_pair_codes_hash_fallback_for_huge_key_spaces():
    users = np.array([7, 1, 7, 1_000_000])
    keys = np.array([2**39, 5, 2**39, 0])
    codes, pairs = pair_codes(users, keys, n_keys=2**40)  # user * n_keys overflows the packed sort
    np.testing.assert_array_equal(codes, [1, 0, 1, 2])
    u, k = pairs.decode(codes)
    np.testing.assert_array_equal(u, users)
    np.testing.assert_array_equal(k, keys)
