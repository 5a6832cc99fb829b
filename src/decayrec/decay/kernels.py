"""Pure, vectorised decay kernels: functions of arrays and an explicit time ``at``.

The one quantity (DESIGN.md) is, for key ``k`` (a dense int: an item, a category or a
(user, key) pair) and half-life ``h``::

    S(k, t) = sum over events e on k with t_e <= t of  w_e * 2 ** (-(t - t_e) / h)

Times are float64 days since an origin of the caller's choice (:func:`to_days`); a
half-life is in days too. Every function here takes "now" (``at``) as an argument and
never reads an event with ``t_e > at``. "No event" times are ``-inf``: the time since
then is infinite and maxima merge naturally.

Stability: decay factors are only ever computed for non-negative ages, as
``exp(-ln 2 * age / h)`` in (0, 1], so events long before ``at`` underflow to 0 instead
of overflowing; the per-event recursion (:func:`states_after_events`) is a parallel scan
over such factors, never a cumulative sum of ``2 ** (+t / h)``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, TypeAlias, cast, overload

import numpy as np
import pyarrow as pa
from numpy.typing import ArrayLike

from decayrec.schema import EVENT_TYPES

__all__ = [
    "counts",
    "decayed_sums",
    "event_weights",
    "from_days",
    "last_event_time",
    "peak_time",
    "peak_times",
    "states_after_events",
    "states_before_events",
    "time_to_fade",
    "to_days",
]

LN2 = float(np.log(2.0))
# Scan factors below the smallest normal double are flushed to 0: their products would
# go subnormal (slow on x86) while contributing less than 1e-308 of a state.
_TINY = float(np.finfo(np.float64).tiny)
_UNITS_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}

TimeLike: TypeAlias = pa.Array | pa.ChunkedArray | np.ndarray
OriginLike: TypeAlias = datetime | np.datetime64 | str


# -- time ----------------------------------------------------------------------------
def _origin_in(origin: OriginLike, unit: str) -> int:
    """The origin as an integer count of ``unit`` since the Unix epoch (naive = UTC)."""
    if isinstance(origin, datetime) and origin.tzinfo is not None:
        origin = origin.astimezone(UTC).replace(tzinfo=None)
    # numpy's stubs have no overload for a datetime64 origin with a unit, nor for a unit known only at run time.
    value = np.datetime64(origin, unit)  # type: ignore[call-overload]
    if np.isnat(value):
        raise ValueError("the origin is NaT; give a real time as the origin")
    return int(value.astype(np.int64))


def to_days(timestamps: TimeLike, origin: OriginLike) -> np.ndarray:
    """Times as float64 days since ``origin``.

    Parameters
    ----------
    timestamps
        A pyarrow timestamp array (any unit; tz-aware arrays are UTC instants, naive
        ones are taken as UTC, as the store keeps them) or a numpy ``datetime64`` array.
    origin
        A ``datetime`` (naive = UTC), ``np.datetime64`` or ISO string. Pick one near the
        data: float64 days keep sub-microsecond resolution for centuries around it.

    Returns
    -------
    numpy.ndarray
        float64 days; the integer difference is taken first, so no precision is lost
        to the epoch offset.
    """
    if isinstance(timestamps, (pa.Array, pa.ChunkedArray)):
        if not pa.types.is_timestamp(timestamps.type):
            raise TypeError(f"expected a timestamp array, got {timestamps.type}")
        if timestamps.null_count:
            raise ValueError("timestamps contain nulls; drop or fill them before decaying")
        unit = timestamps.type.unit
        raw = timestamps.cast(pa.int64())
        ticks = raw.to_numpy() if isinstance(raw, pa.Array) else np.asarray(raw.to_numpy())
    else:
        arr = np.asarray(timestamps)
        if not np.issubdtype(arr.dtype, np.datetime64):
            raise TypeError(f"expected datetime64 values, got {arr.dtype}")
        unit, _ = np.datetime_data(arr.dtype)
        if unit not in _UNITS_PER_DAY:  # e.g. "D" or "m": widen to seconds, exactly
            arr, unit = arr.astype("datetime64[s]"), "s"
        if np.isnat(arr).any():
            raise ValueError("timestamps contain NaT; drop or fill them before decaying")
        ticks = arr.astype(np.int64)
    return (ticks - _origin_in(origin, unit)) / _UNITS_PER_DAY[unit]


def from_days(days: np.ndarray, origin: OriginLike) -> np.ndarray:
    """The inverse of :func:`to_days`: ``datetime64[us]``; non-finite days give NaT."""
    days = np.asarray(days, dtype=np.float64)
    out = np.full(days.shape, np.datetime64("NaT"), dtype="datetime64[us]")
    ok = np.isfinite(days)
    ticks = np.rint(days[ok] * _UNITS_PER_DAY["us"]).astype(np.int64) + _origin_in(origin, "us")
    out[ok] = ticks.astype("datetime64[us]")
    return out


# -- inputs --------------------------------------------------------------------------
def event_weights(type_codes: np.ndarray, weights_by_type: np.ndarray) -> np.ndarray:
    """Per-event weights ``weights_by_type[type_codes]`` as float64.

    ``type_codes`` index :data:`decayrec.schema.EVENT_TYPES` (the store's enum order).
    """
    table = np.asarray(weights_by_type, dtype=np.float64)
    return table[np.asarray(type_codes, dtype=np.intp)]


@overload
def _as_events(keys: ArrayLike, times: ArrayLike, weights: None = None) -> tuple[np.ndarray, np.ndarray, None]: ...
@overload
def _as_events(keys: ArrayLike, times: ArrayLike, weights: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def _as_events(
    keys: ArrayLike, times: ArrayLike, weights: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    keys = np.asarray(keys)
    if keys.size == 0:
        keys = keys.astype(np.int64)  # an empty list arrives as float64
    if keys.dtype.kind not in "iu":
        raise TypeError(f"keys must be integer codes, got {keys.dtype}")
    times = np.asarray(times, dtype=np.float64)
    if keys.shape != times.shape or keys.ndim != 1:
        raise ValueError(f"keys and times must be 1-d and of equal length, got {keys.shape} and {times.shape}")
    if weights is not None:
        weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), keys.shape)
    return keys, times, weights


def _half_lives(half_lives: ArrayLike) -> np.ndarray:
    h = np.atleast_1d(np.asarray(half_lives, dtype=np.float64))
    if h.ndim != 1 or not np.all(h > 0) or not np.all(np.isfinite(h)):
        raise ValueError(f"half-lives must be positive finite days, got {half_lives!r}")
    return h


def _one_half_life(half_life: ArrayLike) -> float:
    h = _half_lives(half_life)
    if h.size != 1:
        raise ValueError(f"expected one half-life, got {h.size}; call once per scale")
    return float(h[0])


def _n_keys(keys: np.ndarray, n_keys: int | None) -> int:
    """Size the output from every key given (not only those before ``at``): shapes must not depend on ``at``."""
    seen = int(keys.max()) + 1 if keys.size else 0
    if keys.size and int(keys.min()) < 0:
        raise ValueError("keys must be non-negative codes (unknown ids encode to -1: drop them first)")
    if n_keys is None:
        return seen
    if seen > n_keys:
        raise ValueError(f"a key code {seen - 1} is out of range for n_keys={n_keys}")
    return int(n_keys)


@overload
def _as_of(keys: np.ndarray, times: np.ndarray, weights: None, at: float) -> tuple[np.ndarray, np.ndarray, None]: ...
@overload
def _as_of(keys: np.ndarray, times: np.ndarray, weights: np.ndarray, at: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def _as_of(
    keys: np.ndarray, times: np.ndarray, weights: np.ndarray | None, at: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Drop events after ``at``; no copy when there are none (the common case)."""
    if not np.isfinite(at):
        raise ValueError(f"at must be a finite time in days, got {at!r}")
    keep = times <= at
    if keep.all():
        return keys, times, weights
    return keys[keep], times[keep], None if weights is None else weights[keep]


# -- aggregates as of a time ---------------------------------------------------------
def decayed_sums(
    keys: np.ndarray,
    times: np.ndarray,
    weights: ArrayLike,
    half_lives: ArrayLike,
    at: float,
    n_keys: int | None = None,
) -> np.ndarray:
    """``S(k, at)`` for every key and half-life at once.

    Parameters
    ----------
    keys, times, weights
        Dense int key codes, event times (days) and event weights, one per event, in
        any order. Events with ``times > at`` are ignored.
    half_lives
        Half-lives in days, shape ``(n_scales,)``.
    at
        The time to evaluate at (days).
    n_keys
        Rows of the result; defaults to ``keys.max() + 1``.

    Returns
    -------
    numpy.ndarray
        float64 ``(n_keys, n_scales)``.
    """
    keys, times, weights = _as_events(keys, times, weights)
    h = _half_lives(half_lives)
    n = _n_keys(keys, n_keys)
    keys, times, weights = _as_of(keys, times, weights, float(at))
    out = np.empty((n, h.size))
    age = np.subtract(at, times)
    buf = np.empty_like(age)
    # One bincount per scale: a single bincount over (key, scale) pairs was 4x slower
    # (the index array costs more than the extra passes over keys).
    for j, rate in enumerate(-LN2 / h):
        np.multiply(age, rate, out=buf)
        np.exp(buf, out=buf)
        buf *= weights
        out[:, j] = np.bincount(keys, buf, minlength=n)
    return out


def last_event_time(keys: np.ndarray, times: np.ndarray, at: float, n_keys: int | None = None) -> np.ndarray:
    """Time of each key's latest event with ``t <= at``; ``-inf`` for keys without one."""
    keys, times, _ = _as_events(keys, times)
    n = _n_keys(keys, n_keys)
    keys, times, _ = _as_of(keys, times, None, float(at))
    out = np.full(n, -np.inf)
    np.maximum.at(out, keys, times)
    return out


def counts(
    keys: np.ndarray,
    types: np.ndarray,
    times: np.ndarray,
    at: float,
    n_keys: int | None = None,
    n_types: int = len(EVENT_TYPES),
) -> np.ndarray:
    """Events per key and event type with ``t <= at``: int64 ``(n_keys, n_types)``.

    Type codes index :data:`decayrec.schema.EVENT_TYPES` by default.
    """
    keys, times, _ = _as_events(keys, times)
    types = np.asarray(types, dtype=np.int64)
    if types.shape != keys.shape:
        raise ValueError(f"types must have one code per event, got {types.shape} for {keys.shape}")
    if types.size and (types.min() < 0 or types.max() >= n_types):
        raise ValueError(f"event type codes must lie in [0, {n_types})")
    n = _n_keys(keys, n_keys)
    keys, times, types = _as_of(keys, times, types, float(at))
    codes = keys.astype(np.int64) * n_types + types
    return np.bincount(codes, minlength=n * n_types).reshape(n, n_types)


def time_to_fade(value: np.ndarray, half_life: np.ndarray, threshold: float) -> np.ndarray:
    """Days until ``value`` decays to ``threshold``: ``h * log2(value / threshold)``, 0 if already at or below.

    Broadcasts: a ``(n_keys, n_scales)`` value with ``(n_scales,)`` half-lives works.
    """
    if not threshold > 0:
        raise ValueError(f"the fade threshold must be positive, got {threshold!r}")
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore"):  # log2(0) = -inf, clipped to 0 below
        days = np.asarray(half_life, dtype=np.float64) * np.log2(value / threshold)
    return np.maximum(days, 0.0)


# -- per-event states: the exact recursion, vectorised --------------------------------
def _affine_scan(d: np.ndarray, s: np.ndarray) -> None:
    """In place: ``s[i] <- d[i] * s[i-1] + s[i]`` for all i, as a parallel prefix scan.

    Each element holds the affine map ``x -> d x + s``; Hillis-Steele doubling composes
    windows of 1, 2, 4, ... elements. ``d[i] == 0`` marks a sequence start, so windows
    never leak across keys and the scan stops once every window has reached its start:
    ``ceil(log2(longest live run))`` passes. All factors stay in [0, 1] and all terms
    non-negative for non-negative weights: no cancellation, no overflow. Once few
    elements are still live, passes work on their indices only.
    """
    n = d.size
    shift = 1
    live: np.ndarray | None = None  # indices still composing; None = all (dense passes)
    while shift < n:
        if live is None:
            s[shift:] += d[shift:] * s[:-shift]  # the right side is built before s changes
            d[shift:] *= d[:-shift]
            d[d < _TINY] = 0.0
            alive = np.count_nonzero(d)
            if alive == 0:
                return
            if alive < n // 8:
                live = np.flatnonzero(d)
        else:
            src = live - shift  # live elements are never within `shift` of the start: d there is 0
            s[live] += d[live] * s[src]
            dl = d[live] * d[src]
            dl[dl < _TINY] = 0.0
            d[live] = dl
            live = live[dl != 0.0]
            if live.size == 0:
                return
        shift *= 2


def _sequence_layout(keys: np.ndarray, times: np.ndarray) -> np.ndarray | None:
    """The (key, time) sort order (stable), or None when the events are already in it."""
    n = keys.size
    if n < 2:
        return None
    time_sorted = bool(np.all(times[1:] >= times[:-1]))
    if np.all(keys[1:] >= keys[:-1]) and np.all((keys[1:] != keys[:-1]) | (times[1:] >= times[:-1])):
        return None
    bits = (n - 1).bit_length()
    if max(int(keys.max()), -int(keys.min())) >= 1 << (61 - bits):  # the packed key would overflow
        return np.lexsort((times, keys))
    # Pack (key, rank in time order) into one int64 and sort values, not indices:
    # numpy's SIMD value sort is ~2.5x faster than argsort or lexsort on millions.
    by_time = None if time_sorted else np.argsort(times, kind="stable")
    packed = (keys if by_time is None else keys[by_time]).astype(np.int64)
    packed <<= bits
    packed |= np.arange(n, dtype=np.int64)
    packed.sort()
    packed &= (1 << bits) - 1
    return packed if by_time is None else by_time[packed]


def _sequential_states(
    keys: np.ndarray, times: np.ndarray, weights: np.ndarray, half_life: ArrayLike, side: Literal["before", "after"]
) -> np.ndarray:
    """Each event's state just ``"before"`` or ``"after"`` it, events in (key, time) order.

    With ties (same key and time), the left limit excludes and the right limit includes
    every simultaneous event, so results do not depend on the order of ties.
    """
    n = keys.size
    rate = -LN2 / _one_half_life(half_life)
    new_key = np.ones(n, dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=new_key[1:])
    step = np.empty(n)
    step[0] = 0.0
    np.subtract(times[1:], times[:-1], out=step[1:])
    step[new_key] = 0.0  # gaps across keys are meaningless (and may be negative)
    d = np.multiply(step, rate)
    np.exp(d, out=d)
    d[new_key] = 0.0
    d_in = d.copy() if side == "before" else None
    state = np.array(weights, dtype=np.float64)
    _affine_scan(d, state)
    if side == "before":
        # The sequential left limit: the previous state decayed over the gap.
        assert d_in is not None  # copied above when side == "before"
        state[1:] = d_in[1:] * state[:-1]
        state[0] = 0.0

    tie = step == 0.0
    tie &= ~new_key
    if not tie.any():
        return state
    starts = np.flatnonzero(~tie)
    group = np.cumsum(~tie) - 1
    pick = starts if side == "before" else np.r_[starts[1:], n] - 1
    return cast(np.ndarray, state[pick][group])  # numpy types fancy indexing as Any


def _per_event(
    keys: np.ndarray, times: np.ndarray, weights: np.ndarray, half_life: float, side: Literal["before", "after"]
) -> np.ndarray:
    keys, times, weights = _as_events(keys, times, weights)
    if weights is None:
        raise ValueError("weights are required")
    if keys.size == 0:
        return np.zeros(0)
    order = _sequence_layout(keys, times)
    if order is not None:
        keys, times, weights = keys[order], times[order], weights[order]
    result = _sequential_states(keys, times, weights, half_life, side)
    if order is None:
        return result
    out = np.empty_like(result)
    out[order] = result
    return out


def states_after_events(keys: np.ndarray, times: np.ndarray, weights: np.ndarray, half_life: float) -> np.ndarray:
    """``S(k_i, t_i)`` for each event i: its key's state just after it (right limit, including it).

    Exactly the online recursion ``S_i = S_{i-1} * 2 ** (-(t_i - t_{i-1}) / h) + w_i`` within
    each key, vectorised. Events may come in any order; the result is in input order.
    Simultaneous events of a key all get the state including all of them.
    """
    return _per_event(keys, times, weights, half_life, "after")


def states_before_events(keys: np.ndarray, times: np.ndarray, weights: np.ndarray, half_life: float) -> np.ndarray:
    """Each event's key state just before it (left limit: events strictly earlier only).

    This is the self-excitation term of a Hawkes intensity at each event,
    ``mu + alpha * S(t_i-)``. Input order is kept.
    """
    return _per_event(keys, times, weights, half_life, "before")


# -- peaks ---------------------------------------------------------------------------
def peak_times(
    keys: np.ndarray,
    times: np.ndarray,
    weights: np.ndarray,
    half_life: float,
    at: float,
    n_keys: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """When each key's ``S`` peaked up to ``at``, and the peak value.

    ``S`` only rises at events and decays in between, so its maximum over ``(-inf, at]``
    is reached just after some event. The peak time is the latest event time at which
    ``S`` reached that maximum: the last time it stopped rising for good.

    Returns
    -------
    (peak_time, peak_value)
        float64 ``(n_keys,)`` each; ``-inf`` and 0 for keys without events.
    """
    keys, times, weights = _as_events(keys, times, weights)
    n = _n_keys(keys, n_keys)
    keys, times, weights = _as_of(keys, times, weights, float(at))
    peak_t = np.full(n, -np.inf)
    peak_v = np.zeros(n)
    if keys.size == 0:
        return peak_t, peak_v
    order = _sequence_layout(keys, times)
    if order is not None:
        keys, times, weights = keys[order], times[order], weights[order]
    after = _sequential_states(keys, times, weights, half_life, "after")
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    best = np.maximum.reduceat(after, starts)
    seg_keys = keys[starts]
    # The latest event of each key whose state equals that key's maximum.
    seg = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, keys.size]))
    hit = np.flatnonzero(after == best[seg])
    last_hit = hit[np.r_[seg[hit][1:] != seg[hit][:-1], True]]
    peak_t[seg_keys] = times[last_hit]
    peak_v[seg_keys] = best
    return peak_t, peak_v


def peak_time(times: np.ndarray, weights: np.ndarray, half_life: float, at: float) -> tuple[float, float]:
    """:func:`peak_times` for one key's events: ``(peak_time, peak_value)``."""
    times = np.asarray(times, dtype=np.float64)
    t, v = peak_times(np.zeros(times.size, dtype=np.int64), times, weights, half_life, at, n_keys=1)
    return float(t[0]), float(v[0])
