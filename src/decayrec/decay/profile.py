"""Interest profiles: what a user cares about now, how strongly, since when, and for how long.

For each (user, key) pair, at category and at item level, as of ``now`` (later events are
never read): the decayed sum ``S`` with the key's half-life, its calibrated strength
(:class:`~decayrec.decay.strength.StrengthModel`), whether it has faded and when it will,
the last event, counts by event type, and the peak ("decay point": the last time ``S``
stopped rising for good). A user's drift is ``1 - cosine`` between their category ``S``
vectors now and ``drift_days`` earlier.

:func:`build_profile` formats one user; :func:`interest_table` and :func:`build_profiles`
compute the same numbers for every user at once, vectorised over pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.decay.ids import pair_codes
from decayrec.decay.kernels import (
    counts,
    from_days,
    last_event_time,
    peak_times,
    states_after_events,
    states_before_events,
    to_days,
)
from decayrec.decay.model import DecayModel
from decayrec.decay.strength import KeyedEvents, StrengthModel, as_utc, keyed_events
from decayrec.errors import InputError
from decayrec.timeparse import iso

__all__ = [
    "CurveData",
    "Interest",
    "Interests",
    "Profile",
    "build_profile",
    "build_profiles",
    "curve_data",
    "curves",
    "interest_table",
    "user_events",
]


# -- result types --------------------------------------------------------------------------
@dataclass(frozen=True)
class Interest:
    """One key (a category or an item) of one user, as of the profile's time.

    ``interest`` is ``S``; ``strength`` its calibrated probability of engagement within
    the strength model's horizon; ``category`` is an item's category (None for a
    category, or an item whose category is unknown). ``time_to_fade_days`` is 0 once faded and inf when the
    map never fades; ``fades_at`` is set only when it is finite and positive.
    """

    key: str
    category: str | None
    interest: float
    strength: float
    half_life_days: float
    faded: bool
    time_to_fade_days: float
    fades_at: datetime | None
    last_event: datetime
    peak_at: datetime
    peak_interest: float
    events: dict[str, int]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "category": self.category,
            "interest": self.interest,
            "strength": self.strength,
            "half_life_days": self.half_life_days,
            "faded": self.faded,
            "time_to_fade_days": _json_float(self.time_to_fade_days),
            "fades_at": _json_time(self.fades_at),
            "last_event": _json_time(self.last_event),
            "peak_at": _json_time(self.peak_at),
            "peak_interest": self.peak_interest,
            "events": dict(self.events),
        }


@dataclass(frozen=True)
class Interests:
    """A user's keys at one level: the live ones by strength, then the faded ones by ``S``.

    ``live`` and ``faded`` hold at most ``top`` keys each; ``n_live`` and ``n_faded``
    count all. ``fade_level`` is the ``S`` at which strength reaches the threshold.
    """

    level: str
    live: list[Interest]
    faded: list[Interest]
    n_live: int
    n_faded: int
    fade_level: float
    faded_threshold: float
    horizon_days: float

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "n_live": self.n_live,
            "n_faded": self.n_faded,
            "fade_level": _json_float(self.fade_level),
            "faded_threshold": self.faded_threshold,
            "horizon_days": self.horizon_days,
            "live": [i.to_json_dict() for i in self.live],
            "faded": [i.to_json_dict() for i in self.faded],
        }


@dataclass(frozen=True)
class Profile:
    """A user's interest profile as of ``at``: categories, items and drift."""

    user_id: str
    at: datetime
    n_events: int
    first_event: datetime
    last_event: datetime
    drift: float | None
    drift_days: float
    categories: Interests
    items: Interests

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON: ISO-8601 UTC times, ``null`` for missing or infinite numbers."""
        return {
            "user_id": self.user_id,
            "at": iso(self.at),
            "n_events": self.n_events,
            "first_event": iso(self.first_event),
            "last_event": iso(self.last_event),
            "drift": self.drift,
            "drift_days": self.drift_days,
            "categories": self.categories.to_json_dict(),
            "items": self.items.to_json_dict(),
        }


@dataclass(frozen=True)
class CurveData:
    """``S(t)`` of some keys on a time grid, and ``S`` around each of their events.

    ``values`` is ``(n_keys, n_points)``; ``event_times[i]`` holds key i's event times
    (``datetime64[us]``, naive UTC), ``event_values[i]`` the state including each event
    and ``event_before[i]`` the state just before it (the jumps a grid would blur).
    """

    keys: list[str]
    half_lives: np.ndarray
    times: np.ndarray
    values: np.ndarray
    event_times: list[np.ndarray] = field(default_factory=list)
    event_values: list[np.ndarray] = field(default_factory=list)
    event_before: list[np.ndarray] = field(default_factory=list)


def _json_float(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _json_time(t: datetime | None) -> str | None:
    return None if t is None else iso(t)


# -- selecting one user ---------------------------------------------------------------------
def user_events(events: pa.Table, user_id: str, now: datetime) -> pa.Table:
    """The events of ``user_id`` at or before ``now``; an :class:`InputError` when there are none."""
    col = events.column(schema.USER)
    if not pa.types.is_string(col.type):
        col = col.cast(pa.string())
    mine = events.filter(pc.equal(col, pa.scalar(str(user_id), pa.string())))
    now = as_utc(now)
    if mine.num_rows:
        days = to_days(mine.column(schema.TIMESTAMP), now)
        if (days <= 0).any():
            return mine.filter(pa.array(days <= 0)) if (days > 0).any() else mine
        first = now + timedelta(days=float(days.min()))
        fix = f"give a time at or after their first event, {iso(first)}"
    else:
        fix = "check the id (ids are case-sensitive and compared as text)"
    raise InputError(f"user {user_id} has no events at or before {iso(now)}", fix)


# -- per (user, key) numbers, vectorised ---------------------------------------------------
def _pair_stats(ke: KeyedEvents, strength: StrengthModel | None, peaks: bool = True) -> dict[str, np.ndarray]:
    """Per (user, key) pair as of ``ke.origin``: S, strength, fade, last event, counts, peak."""
    codes, pairs = pair_codes(ke.user, ke.key, max(len(ke.keys), 1))
    n = len(pairs)
    rate = ke.decay_rate()
    # Ages are -time >= 0, so every factor is in (0, 1]: old events underflow to 0, never overflow.
    s = np.bincount(codes, ke.weight * np.exp(rate * -ke.time), minlength=n)
    h = ke.pair_half_life(pairs.users, pairs.keys)
    out = {
        "codes": codes,
        "user": pairs.users.astype(np.int64),
        "key": pairs.keys,
        "interest": s,
        "half_life": h,
        "last": last_event_time(codes, ke.time, 0.0, n),
    }
    if strength is not None:
        p = strength.predict(s)
        out.update(strength=p, faded=strength.faded(p), time_to_fade=strength.time_to_fade(s, h))
    if peaks:
        out["counts"] = counts(codes, ke.etype, ke.time, 0.0, n)
        # S with half-life h over times t equals S with half-life 1 over t / h: one scan
        # serves keys with different half-lives, and the peak value is unchanged.
        scaled_t, out["peak_value"] = peak_times(codes, ke.time / ke.event_half_life(), ke.weight, 1.0, 0.0, n)
        out["peak_time"] = scaled_t * h
    return out


def _drift(ke: KeyedEvents, stats: dict[str, np.ndarray], drift_days: float) -> np.ndarray:
    """Per user ``1 - cos(S now, S drift_days earlier)`` over categories; nan when either is zero."""
    if not drift_days > 0:
        raise InputError(f"drift_days={drift_days!r} must be positive", "e.g. 30")
    codes, users, n_users = stats["codes"], stats["user"], len(ke.users)
    then = -float(drift_days)
    before = ke.time <= then
    rate = ke.decay_rate()[before]
    s_then = np.bincount(codes[before], ke.weight[before] * np.exp(rate * (then - ke.time[before])), minlength=users.size)
    a, a_max = _per_user_scaled(stats["interest"], users, n_users)
    b, b_max = _per_user_scaled(s_then, users, n_users)
    dot = np.bincount(users, a * b, minlength=n_users)
    norms = np.sqrt(np.bincount(users, a * a, minlength=n_users) * np.bincount(users, b * b, minlength=n_users))
    ok = (a_max > 0) & (b_max > 0)
    drift = np.full(n_users, np.nan)
    drift[ok] = np.clip(1.0 - dot[ok] / norms[ok], 0.0, 1.0)
    return drift


def _per_user_scaled(v: np.ndarray, users: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """``v`` divided by each user's maximum: squares of tiny S would underflow; cosines do not care."""
    v = np.asarray(v, dtype=np.float64)  # bincount of no weights comes back as int
    top = np.zeros(n_users)
    np.maximum.at(top, users, v)
    scale = top[users]
    return np.divide(v, scale, out=np.zeros(v.shape), where=scale > 0), top


# -- one user -----------------------------------------------------------------------------------
def build_profile(
    events: pa.Table,
    user_id: str,
    decay: DecayModel,
    strength_cat: StrengthModel | None,
    strength_item: StrengthModel,
    now: datetime,
    drift_days: float = 30.0,
    top: int = 10,
) -> Profile:
    """The interest profile of ``user_id`` as of ``now``.

    Parameters
    ----------
    events
        Canonical events (any users; events after ``now`` are ignored).
    decay
        Event weights and half-lives.
    strength_cat, strength_item
        Fitted strength models for categories and for items; ``strength_cat`` None for a
        log without categories (the profile then lists items only, with no drift).
    now
        The profile's time.
    drift_days
        How far back the drift compares the category vector.
    top
        At most this many live and this many faded keys are listed per level.

    Raises
    ------
    InputError
        When the user has no events at or before ``now``.
    """
    now = as_utc(now)
    mine = user_events(events, user_id, now)
    item = keyed_events(mine, decay, "item", now)
    if strength_cat is None:
        categories, drift = Interests("category", [], [], 0, 0, math.nan, math.nan, strength_item.horizon_days), math.nan
    else:
        cat = keyed_events(mine, decay, "category", now)
        cat_stats = _pair_stats(cat, strength_cat)
        drift = _drift(cat, cat_stats, drift_days)[0] if len(cat.users) else math.nan
        categories = _interests(cat, cat_stats, strength_cat, top)
    first_event, last_event = _at(now, item.time.min()), _at(now, item.time.max())
    assert first_event is not None and last_event is not None  # the user has events (user_events raises otherwise)
    return Profile(
        user_id=str(user_id),
        at=now,
        n_events=int(item.time.size),
        first_event=first_event,
        last_event=last_event,
        drift=None if math.isnan(drift) else float(drift),
        drift_days=float(drift_days),
        categories=categories,
        items=_interests(item, _pair_stats(item, strength_item), strength_item, top),
    )


def _at(origin: datetime, days: float) -> datetime | None:
    return origin + timedelta(days=float(days)) if math.isfinite(days) else None


def _interests(ke: KeyedEvents, st: dict[str, np.ndarray], strength: StrengthModel, top: int) -> Interests:
    """Rank one user's pairs: live by strength (then S), faded by S; build the top of each."""
    order = np.lexsort((st["key"], -st["interest"], -st["strength"]))
    faded = st["faded"][order]
    live_idx, faded_idx = order[~faded], order[faded]
    faded_idx = faded_idx[np.lexsort((st["key"][faded_idx], -st["interest"][faded_idx]))]
    ids = ke.keys.ids.to_pylist()
    cats = ke.key_category.to_pylist()

    def one(i: int) -> Interest:
        k = int(st["key"][i])
        ttf = float(st["time_to_fade"][i])
        last_event, peak_at = _at(ke.origin, st["last"][i]), _at(ke.origin, st["peak_time"][i])
        assert last_event is not None and peak_at is not None  # every pair listed has an event at or before the origin
        return Interest(
            key=ids[k],
            category=cats[k] if ke.level == "item" else None,
            interest=float(st["interest"][i]),
            strength=float(st["strength"][i]),
            half_life_days=float(st["half_life"][i]),
            faded=bool(st["faded"][i]),
            time_to_fade_days=ttf,
            fades_at=_at(ke.origin, ttf) if 0 < ttf < math.inf else None,
            last_event=last_event,
            peak_at=peak_at,
            peak_interest=float(st["peak_value"][i]),
            events={e: int(c) for e, c in zip(schema.EVENT_TYPES, st["counts"][i])},
        )

    return Interests(
        level=ke.level,
        live=[one(i) for i in live_idx[:top]],
        faded=[one(i) for i in faded_idx[:top]],
        n_live=int(live_idx.size),
        n_faded=int(faded_idx.size),
        fade_level=float(strength.fade_level_),
        faded_threshold=float(strength.faded_threshold),
        horizon_days=float(strength.horizon_days),
    )


# -- curves for plotting ------------------------------------------------------------------------
def curve_data(
    events: pa.Table,
    user_id: str,
    decay: DecayModel,
    now: datetime,
    keys: Sequence[str],
    n_points: int = 200,
    days_back: float | None = None,
    level: str = "category",
) -> CurveData:
    """``S(t)`` of ``keys`` for one user on ``n_points`` times up to ``now``, exactly.

    Parameters
    ----------
    days_back
        How far the grid reaches before ``now``; by default back to the keys' first event
        (plus 5%). Keys the user never touched get a zero curve.
    """
    now = as_utc(now)
    ke = keyed_events(user_events(events, user_id, now), decay, level, now)
    codes = ke.keys.encode(list(keys))
    r = decay.scale_for(user_id)  # the user's own multiplier (1 without a per-user fit)
    h = np.full(codes.size, decay.global_half_life.days * r)  # for keys the user never touched
    h[codes >= 0] = ke.key_half_life[codes[codes >= 0]] * r
    ours = np.isin(ke.key, codes[codes >= 0])
    if days_back is None:
        days_back = 1.05 * max(-float(ke.time[ours].min()), 1.0) if ours.any() else 30.0
    grid = np.linspace(-float(days_back), 0.0, int(n_points))
    values = np.zeros((len(codes), grid.size))
    ev_t, ev_v, ev_b = [], [], []
    for i, c in enumerate(codes):  # a handful of keys; each is vectorised over its events
        sel = np.flatnonzero(ke.key == c) if c >= 0 else np.zeros(0, dtype=np.int64)
        sel = sel[np.argsort(ke.time[sel], kind="stable")]
        t, after = ke.time[sel], states_after_events(np.zeros(sel.size, dtype=np.int64), ke.time[sel], ke.weight[sel], h[i])
        last = np.searchsorted(t, grid, side="right") - 1
        seen = last >= 0
        values[i, seen] = after[last[seen]] * np.exp2(-(grid[seen] - t[last[seen]]) / h[i])
        ev_t.append(from_days(t, now))
        ev_v.append(after)
        ev_b.append(states_before_events(np.zeros(t.size, dtype=np.int64), t, ke.weight[sel], h[i]))
    return CurveData(list(keys), h, from_days(grid, now), values, ev_t, ev_v, ev_b)


def curves(
    events: pa.Table,
    user_id: str,
    decay: DecayModel,
    now: datetime,
    keys: Sequence[str],
    n_points: int = 200,
    days_back: float | None = None,
    level: str = "category",
) -> tuple[np.ndarray, np.ndarray]:
    """``(times, values)``: a ``datetime64[us]`` grid (naive UTC) and ``S`` of each key on it.

    See :func:`curve_data`, which also returns the state just after each event.
    """
    data = curve_data(events, user_id, decay, now, keys, n_points, days_back, level)
    return data.times, data.values


# -- every user at once ---------------------------------------------------------------------------
def interest_table(
    events: pa.Table,
    decay: DecayModel,
    now: datetime,
    level: str = "category",
    strength: StrengthModel | None = None,
) -> pa.Table:
    """Every (user, key) pair's ``S`` as of ``now``, in long format (a sparse user-by-key matrix).

    Returns
    -------
    pyarrow.Table
        ``user_id, <level>_id, interest, half_life_days, last_event`` and, with a strength
        model, ``strength, faded, time_to_fade_days``; sorted by user then key id.
    """
    ke = keyed_events(events, decay, level, now)
    st = _pair_stats(ke, strength, peaks=False)
    columns: dict[str, Any] = {
        schema.USER: ke.users.decode(st["user"]),
        f"{level}_id": ke.keys.decode(st["key"]),
        "interest": st["interest"],
        "half_life_days": st["half_life"],
        "last_event": pa.array(from_days(st["last"], ke.origin)).cast(pa.timestamp("us", tz="UTC")),
    }
    if strength is not None:
        columns.update(strength=st["strength"], faded=st["faded"], time_to_fade_days=st["time_to_fade"])
    return pa.table(columns)


def build_profiles(
    events: pa.Table,
    decay: DecayModel,
    strength_cat: StrengthModel,
    now: datetime,
    drift_days: float = 30.0,
) -> pa.Table:
    """A one-row summary per user as of ``now``, vectorised across users.

    Returns
    -------
    pyarrow.Table
        ``user_id, drift, n_live, n_faded, top_category, top_strength`` for every user with
        an event at or before ``now``; drift and the top are null where undefined.
    """
    ke = keyed_events(events, decay, "category", now)
    st = _pair_stats(ke, strength_cat, peaks=False)
    n_users, users = len(ke.users), st["user"]
    drift = _drift(ke, st, drift_days)
    faded = st["faded"]
    order = np.lexsort((st["key"], -st["interest"], users))
    first = order[np.r_[True, users[order][1:] != users[order][:-1]]] if order.size else order
    top = np.full(n_users, -1, dtype=np.int64)
    top[users[first]] = first
    has = top >= 0
    return pa.table(
        {
            schema.USER: ke.users.ids,
            "drift": pa.array(drift, mask=np.isnan(drift)),
            "n_live": np.bincount(users[~faded], minlength=n_users),
            "n_faded": np.bincount(users[faded], minlength=n_users),
            "top_category": ke.keys.decode(np.where(has, st["key"][np.maximum(top, 0)], -1)),
            "top_strength": pa.array(np.where(has, st["strength"][np.maximum(top, 0)], 0.0), mask=~has),
        }
    )
