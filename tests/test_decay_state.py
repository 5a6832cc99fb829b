"""DecayState: online == batch, exact merges, time-order freedom, persistence."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decayrec.decay import DecayState, decayed_sums

HOUR = 1 / 24
SCALES = np.array([HOUR, 1.0, 7.0, 30.0, 120.0])
N_KEYS = 6
RTOL = 1e-9
ATOL = 1e-250  # only subnormal noise is forgiven: every other value must agree to RTOL

# Times on a coarse grid make exact ties common; weights are positive like event weights.
event = st.tuples(
    st.integers(0, N_KEYS - 1),
    st.one_of(st.integers(0, 40).map(float), st.floats(0, 200, allow_nan=False)),
    st.floats(0.01, 10, allow_nan=False),
)
events = st.lists(event, min_size=1, max_size=60)
common = settings(max_examples=60, deadline=None)


def arrays(evs):
    keys = np.array([e[0] for e in evs], dtype=np.int64)
    times = np.array([e[1] for e in evs])
    weights = np.array([e[2] for e in evs])
    return keys, times, weights


def online(evs, n_keys=0):
    state = DecayState(SCALES, n_keys=n_keys)
    for k, t, w in evs:
        state.update(k, t, w)
    return state


def values(state, at):
    return state.value_at(np.arange(N_KEYS), at)


def assert_same(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@common
@given(events)
def test_online_updates_equal_batch_recomputation(evs):
    keys, times, weights = arrays(evs)
    at = times.max()
    expected = decayed_sums(keys, times, weights, SCALES, at=at, n_keys=N_KEYS)
    assert_same(values(online(evs), at), expected)
    assert_same(values(online(evs), at + 3.0), decayed_sums(keys, times, weights, SCALES, at=at + 3.0, n_keys=N_KEYS))


@common
@given(events, st.integers(1, 7), st.booleans())
def test_update_many_equals_batch_in_any_chunking(evs, chunk, presized):
    keys, times, weights = arrays(evs)
    # A large pre-sized state takes the small-batch (touched keys only) path.
    state = DecayState(SCALES, n_keys=10_000 if presized else 0)
    for i in range(0, len(evs), chunk):
        state.update_many(keys[i : i + chunk], times[i : i + chunk], weights[i : i + chunk])
    at = times.max()
    assert_same(values(state, at), decayed_sums(keys, times, weights, SCALES, at=at, n_keys=N_KEYS))


@common
@given(events, st.data())
def test_merge_equals_build_for_any_split(evs, data):
    keys, times, weights = arrays(evs)
    side = np.array(data.draw(st.lists(st.booleans(), min_size=len(evs), max_size=len(evs))))
    a = DecayState.from_events(keys[side], times[side], weights[side], SCALES)
    b = DecayState.from_events(keys[~side], times[~side], weights[~side], SCALES)
    whole = DecayState.from_events(keys, times, weights, SCALES)
    at = times.max()
    assert_same(values(a.merge(b), at), values(whole, at))
    assert_same(values(b.merge(a), at), values(whole, at))
    np.testing.assert_array_equal(a.merge(b).last, whole.last)


@common
@given(events, event, st.floats(0, 200, allow_nan=False))
def test_advance_then_add_equals_add_then_advance(evs, extra, t_advance):
    first = online(evs)
    second = online(evs)
    t_advance = max(t_advance, float(first.last.max()))
    k, t, w = extra
    first.advance(t_advance)
    first.update(k, t, w)
    second.update(k, t, w)
    second.advance(max(t_advance, t))
    end = max(t_advance, t) + 1.0
    assert_same(values(first, end), values(second, end))


@common
@given(events, st.randoms(use_true_random=False))
def test_update_order_does_not_matter(evs, rnd):
    shuffled = list(evs)
    rnd.shuffle(shuffled)
    at = max(t for _, t, _ in evs)
    assert_same(values(online(shuffled), at), values(online(evs), at))


@common
@given(events)
def test_npz_round_trip_is_exact(evs):
    state = online(evs)
    buf = io.BytesIO()
    state.to_npz(buf)
    buf.seek(0)
    back = DecayState.from_npz(buf)
    np.testing.assert_array_equal(back.value, state.value)
    np.testing.assert_array_equal(back.last, state.last)
    np.testing.assert_array_equal(back.half_lives, state.half_lives)
    back.update(0, 1e3, 1.0)  # and it keeps working
    assert back.value[0, 0] == 1.0


# -- plain unit tests ----------------------------------------------------------------------
def test_hand_values_and_late_event():
    state = DecayState([7.0])
    state.update(0, 0.0, 2.0)
    assert state.value_at([0], 7.0)[0, 0] == pytest.approx(1.0, rel=1e-15)
    assert state.value_at([0], 14.0)[0, 0] == pytest.approx(0.5, rel=1e-15)
    state.update(0, 14.0, 1.0)
    state.update(0, 7.0, 2.0)  # late: decayed to 14 rather than moving time back
    assert state.last[0] == 14.0
    assert state.value[0, 0] == pytest.approx(0.5 + 1.0 + 1.0, rel=1e-15)


def test_state_grows_and_unknown_keys_read_zero():
    state = DecayState(SCALES)
    state.update(1000, 1.0, 1.0)
    state.update_many(np.array([5000]), np.array([2.0]), 3.0)
    assert state.n_keys == 5001 and len(state) == 5001
    assert state.value_at([1000], 1.0)[0, 0] == 1.0
    np.testing.assert_array_equal(state.value_at([3, 99_999], 5.0), 0.0)
    assert state.last[3] == -np.inf
    assert state.nbytes == 5001 * 6 * 8


def test_value_at_never_modifies_and_refuses_the_past():
    state = DecayState([1.0])
    state.update(0, 5.0, 1.0)
    before = state.value.copy()
    state.value_at([0], 9.0)
    np.testing.assert_array_equal(state.value, before)
    with pytest.raises(ValueError, match="cannot move back"):
        state.value_at([0], 4.0)
    with pytest.raises(ValueError, match="cannot move back"):
        state.advance(4.0)


def test_from_events_as_of_excludes_later_events():
    keys = np.array([0, 0, 1])
    times = np.array([0.0, 2.0, 5.0])
    state = DecayState.from_events(keys, times, 1.0, [1.0], at=2.0, n_keys=3)
    np.testing.assert_allclose(state.value[:, 0], [1.25, 0.0, 0.0])
    np.testing.assert_array_equal(state.last, [2.0, -np.inf, -np.inf])


def test_views_are_read_only_and_bad_input_is_refused():
    state = DecayState([1.0, 2.0])
    state.update(0, 0.0)
    with pytest.raises(ValueError):
        state.value[0, 0] = 5.0
    with pytest.raises(ValueError, match="non-negative"):
        state.update(-1, 0.0)
    with pytest.raises(ValueError, match="finite"):
        state.update(0, float("nan"))
    with pytest.raises(ValueError, match="finite"):
        state.update_many(np.array([0]), np.array([np.inf]))
    with pytest.raises(ValueError, match="half-lives"):
        state.merge(DecayState([1.0, 3.0]))
