"""The events of one level as of ``now``, as dense arrays sorted by time, and the rate unit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.decay.ids import IdMap
from decayrec.decay.kernels import LN2, to_days
from decayrec.decay.model import event_codes
from decayrec.decay.strength import as_utc
from decayrec.errors import InputError
from decayrec.weights import weight_table

__all__ = ["KeyLog", "check_level", "key_log", "rate_factor"]

LEVELS = ("category", "item")
# A log observed for less than a second is treated as observed for one: rates stay finite.
# A rate per day is never extrapolated from less than a day of history.
_MIN_EXPOSURE_DAYS = 1.0


@dataclass(frozen=True)
class KeyLog:
    """Events of one level at or before ``now`` with positive weight, sorted by time.

    Attributes
    ----------
    level, now
        The level and the (aware UTC) time the log is cut at.
    keys
        Id map of the keys (categories or items) with such an event.
    key
        Per event: key code.
    time
        Per event: days since ``now`` (``<= 0``), ascending.
    weight
        Per event: its type's weight (``> 0``).
    start
        Days since ``now`` of the earliest event of the whole log at or before ``now``
        (any type, any category): the time the shop has been observed from.
    row, users
        Per event its row in the input, and the input's user column: users are encoded
        only where distinct counts need them (:meth:`distinct_users`).
    """

    level: str
    now: datetime
    keys: IdMap
    key: np.ndarray
    time: np.ndarray
    weight: np.ndarray
    start: float
    row: np.ndarray
    users: pa.ChunkedArray

    @property
    def n_keys(self) -> int:
        return len(self.keys)

    def upto(self, at: float) -> int:
        """How many events have ``time <= at``: they are the prefix ``[:upto(at)]``."""
        return int(np.searchsorted(self.time, at, side="right"))

    def distinct_users(self, lo: int, hi: int | None = None) -> np.ndarray:
        """Distinct users per key among events ``[lo:hi]``."""
        rows = self.row[lo:hi]
        n = max(self.n_keys, 1)
        if rows.size == 0:
            return np.zeros(self.n_keys, dtype=np.int64)
        user = pc.dictionary_encode(self.users.take(pa.array(rows)).combine_chunks()).indices
        pairs = np.unique(user.to_numpy(zero_copy_only=False).astype(np.int64) * n + self.key[lo:hi])
        return np.bincount(pairs % n, minlength=self.n_keys)


def check_level(level: str) -> None:
    if level not in LEVELS:
        raise InputError(f"level {level!r} is not one of {LEVELS}", "use level 'category' or 'item' (--level)")


def rate_factor(half_lives: float | np.ndarray, exposure_days: float | np.ndarray) -> np.ndarray:
    """``ln 2 / (h * (1 - 2 ** (-T / h)))``: turns ``S_h`` into events per day.

    For a Poisson stream of rate ``r`` observed for ``T`` days, ``E[S_h] = r h (1 - 2 ** (-T/h)) / ln 2``,
    so the factor makes every scale an unbiased estimate of ``r``; ``T`` broadcasts against ``h``.
    """
    h = np.asarray(half_lives, dtype=np.float64)
    exposure = np.maximum(np.asarray(exposure_days, dtype=np.float64), _MIN_EXPOSURE_DAYS)
    return LN2 / (h * -np.expm1(-LN2 * exposure / h))


def _strings(events: pa.Table, name: str) -> pa.ChunkedArray:
    col = events.column(name)
    return col if pa.types.is_string(col.type) else col.cast(pa.string())


def key_log(events: pa.Table, now: datetime, level: str, event_weights: Mapping[str, float] | None) -> KeyLog:
    """Cut ``events`` at ``now`` and encode them at ``level`` (later rows are never read further).

    At category level events without a category are left out; a log without any category
    is an :class:`~decayrec.errors.InputError` that says to use the item level.
    """
    check_level(level)
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in events.column_names]
    if missing:
        raise InputError(f"events lack the columns {missing}", "give canonical events (decayrec.schema.COLUMNS)")
    if level == "category" and (
        schema.CATEGORY not in events.column_names
        or (events.num_rows > 0 and events.column(schema.CATEGORY).null_count == events.num_rows)
    ):
        raise InputError(
            "category trends need categories but the events have no category_id",
            "add a category_id column to the events or use --level item",
        )
    now = as_utc(now)
    time = to_days(events.column(schema.TIMESTAMP), now)
    seen = time <= 0.0
    start = float(time[seen].min()) if seen.any() else 0.0
    weight = weight_table(event_weights)[event_codes(events.column(schema.EVENT))]
    keep = seen & (weight > 0)
    key_name = schema.CATEGORY if level == "category" else schema.ITEM
    if level == "category":
        keep &= pc.is_valid(events.column(schema.CATEGORY)).to_numpy(zero_copy_only=False)
    order = np.flatnonzero(keep)
    time = time[order]
    if time.size > 1 and not np.all(time[1:] >= time[:-1]):  # logs usually come sorted: skip the sort
        perm = np.argsort(time, kind="stable")
        order, time = order[perm], time[perm]
    key_col = _strings(events, key_name).take(pa.array(order))
    keys = IdMap.from_values(key_col)
    return KeyLog(
        level=level,
        now=now,
        keys=keys,
        key=keys.encode(key_col).astype(np.int64),
        time=time,
        weight=weight[order],
        start=start,
        row=order,
        users=_strings(events, schema.USER),
    )
