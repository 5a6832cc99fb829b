"""Recency-frequency summaries of an event log, the input of the BG/NBD baseline.

Events are collapsed to distinct active UTC calendar days per user, the way the CDNOW
data of Fader, Hardie and Lee (2005) counts several purchases on one day as one
transaction. The first active day is time zero, so (in units of ``unit_days``)::

    frequency = active days - 1               (repeat "transactions")
    recency   = last active day - first active day
    T         = now - first active day         (``now`` exact, days at their start)

Only events at or before ``now`` are read; a user active only after ``now`` is absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec.decay.ids import IdMap
from decayrec.errors import InputError
from decayrec.schema import EVENT, PRICE, QUANTITY, TIMESTAMP, USER

__all__ = ["RFM", "rfm_summary"]

_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True, eq=False)
class RFM:
    """One row per user, ids sorted; times in units of ``unit_days``.

    Attributes
    ----------
    users
        String user ids, sorted.
    frequency, recency, T
        Repeat active days, first-to-last active day, first active day to ``now``.
    monetary
        Mean spend (``price * quantity``, quantity 1 when missing) per day with priced
        purchases; NaN for users without one.
    n_events
        Events of any type at or before ``now``.
    """

    users: pa.Array
    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary: np.ndarray
    n_events: np.ndarray
    unit_days: float

    def __len__(self) -> int:
        return len(self.users)

    def to_table(self) -> pa.Table:
        """The summary as an Arrow table with columns ``user_id, frequency, ...``."""
        return pa.table(
            {
                USER: self.users,
                "frequency": self.frequency,
                "recency": self.recency,
                "T": self.T,
                "monetary": self.monetary,
                "n_events": self.n_events,
            }
        )


def _microseconds(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Timestamps as int64 microseconds since the Unix epoch (UTC)."""
    if not pa.types.is_timestamp(values.type):
        raise InputError(
            f"column '{TIMESTAMP}' has type {values.type}, not a timestamp",
            "load events through decayrec's reader so times are parsed",
        )
    if values.null_count:
        raise InputError(
            f"column '{TIMESTAMP}' has {values.null_count} nulls", "drop or fill events without a time before summarising"
        )
    # safe=False: nanosecond times truncate to their microsecond instead of raising.
    us = pc.cast(values, pa.timestamp("us", tz=values.type.tz), safe=False).cast(pa.int64())
    return np.asarray(us.to_numpy())


def _now_microseconds(now: datetime) -> int:
    """``now`` as int64 microseconds since the epoch; a naive time is taken as UTC."""
    if not isinstance(now, datetime):
        raise InputError(f"now must be a datetime, got {type(now).__name__}", "pass e.g. datetime(2024, 1, 31, tzinfo=UTC)")
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    return int(np.datetime64(now, "us").astype(np.int64))


def _pair_keys(codes: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One int64 per (user code, day >= 0), ordered by user then day."""
    return codes.astype(np.int64) << 32 | days


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Indices where a new value begins in a sorted array."""
    return np.flatnonzero(np.diff(sorted_keys, prepend=-1))


def _monetary(events: pa.Table, keep: pa.Array, codes: np.ndarray, days: np.ndarray, n_users: int) -> np.ndarray:
    """Mean per-day spend on priced purchases, NaN where a user has none."""
    out = np.full(n_users, np.nan)
    if PRICE not in events.column_names or EVENT not in events.column_names:
        return out
    price = pc.filter(events[PRICE], keep).to_numpy(zero_copy_only=False).astype(np.float64)
    if QUANTITY in events.column_names:
        qty = pc.filter(events[QUANTITY], keep).to_numpy(zero_copy_only=False).astype(np.float64)
        qty = np.where(np.isnan(qty), 1.0, qty)
    else:
        qty = 1.0
    bought = pc.equal(pc.filter(events[EVENT], keep), "purchase")
    bought = np.asarray(pc.fill_null(bought, False).to_numpy(zero_copy_only=False), dtype=bool)
    priced = bought & ~np.isnan(price)
    if not priced.any():
        return out
    keys = _pair_keys(codes[priced], days[priced])
    order = np.argsort(keys)
    starts = _run_starts(keys[order])
    daily = np.add.reduceat((price * qty)[priced][order], starts)
    user = keys[order][starts] >> 32
    n_days = np.bincount(user, minlength=n_users)
    total = np.bincount(user, weights=daily, minlength=n_users)
    has = n_days > 0
    out[has] = total[has] / n_days[has]
    return out


def rfm_summary(events: pa.Table, now: datetime, *, unit_days: float = 7.0) -> RFM:
    """Per-user frequency, recency and age from a canonical event table.

    Parameters
    ----------
    events
        Canonical events: ``user_id``, ``timestamp`` (and ``event``, ``price``,
        ``quantity`` for ``monetary``).
    now
        The time of the summary; later events are ignored. Naive means UTC.
    unit_days
        Length of the time unit in days (7: weeks, as in the CDNOW analyses).

    Returns
    -------
    RFM
        One row per user with at least one event at or before ``now``.
    """
    if not np.isfinite(unit_days) or unit_days <= 0:
        raise InputError(f"unit_days must be a positive number, got {unit_days}", "use e.g. unit_days=7 for weeks or 1 for days")
    missing = [c for c in (USER, TIMESTAMP) if c not in events.column_names]
    if missing:
        raise InputError(
            f"events lack column(s) {missing}", "pass a canonical event table (decayrec.schema) with user_id and timestamp"
        )
    now_us = _now_microseconds(now)
    ts = _microseconds(events[TIMESTAMP])
    keep = ts <= now_us
    users = pc.filter(events[USER], pa.array(keep))
    if users.null_count:
        raise InputError(f"column '{USER}' has {users.null_count} nulls", "drop events without a user before summarising")
    ids = IdMap.from_values(users)
    codes = ids.encode(users)
    n_users = len(ids)
    # Days (floored, so right before 1970 too) counted from the earliest kept one.
    day0 = int(ts[keep].min() // _US_PER_DAY) if n_users else 0
    days = ts[keep] // _US_PER_DAY - day0

    # Distinct (user, day) pairs, sorted: a user's pairs are one run, first day first.
    pair = np.sort(_pair_keys(codes, days))
    pair = pair[_run_starts(pair)]
    pair_user, pair_day = pair >> 32, pair & 0xFFFFFFFF
    starts = _run_starts(pair_user)
    ends = np.append(starts[1:], pair.size) - 1 if starts.size else starts
    first, last = pair_day[starts], pair_day[ends]
    return RFM(
        users=ids.ids,
        frequency=(ends - starts).astype(np.float64),
        recency=(last - first) / unit_days,
        T=(now_us - (first + day0) * _US_PER_DAY) / (unit_days * _US_PER_DAY),
        monetary=_monetary(events, pa.array(keep), codes, days, n_users),
        n_events=np.bincount(codes, minlength=n_users).astype(np.int64),
        unit_days=float(unit_days),
    )
