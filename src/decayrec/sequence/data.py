"""Behaviour sequences as padded arrays: the sequence model's input, built with numpy alone.

Inside the model items are codes ``1 .. n`` (0 pads), event types ``1 .. 5`` (0 pads)
and times float days. Gaps between events are log-bucketed (:func:`gap_bucket`): bucket
0 pads, 1 marks "no earlier event", and bucket ``b >= 2`` holds gaps of
``2 ** (b - 2) - 1`` to ``2 ** (b - 1) - 1`` minutes, the last bucket everything longer.
Rows are left-padded, the most recent event in the last column. Nothing here reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Batch", "TrainingRows", "gap_bucket", "last_events", "training_rows"]

FIRST = 1  # the gap bucket of a user's first event


def gap_bucket(days: np.ndarray, n_buckets: int) -> np.ndarray:
    """Log2 buckets of gaps in days (``2 .. n_buckets - 1``); negative gaps count as 0."""
    minutes = np.maximum(np.nan_to_num(np.asarray(days, dtype=np.float64), nan=0.0), 0.0) * 1440.0
    return np.clip(2 + np.floor(np.log2(1.0 + minutes)).astype(np.int64), 2, n_buckets - 1)


def _order(user: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events sorted by (user, time); each event's position from its user's end, and its user's first index."""
    order = np.lexsort((np.arange(user.size), time, user))
    u = user[order]
    start = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if u.size else np.empty(0, dtype=np.int64)
    size = np.diff(np.r_[start, u.size])
    first = np.repeat(start, size)
    from_end = np.repeat(start + size, size) - 1 - np.arange(u.size)
    return order, from_end, first


@dataclass(frozen=True)
class Batch:
    """Padded rows: inputs (item, event type, gap bucket, time) and, when training, targets.

    ``qtime`` is the time each position predicts for (the next event's time in training,
    "now" at prediction, last column only) and ``query`` the gap bucket from the position's
    event to it.
    """

    item: np.ndarray
    etype: np.ndarray
    gap: np.ndarray
    time: np.ndarray
    query: np.ndarray
    qtime: np.ndarray
    target: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.item.shape[0])

    def take(self, rows: np.ndarray) -> Batch:
        return Batch(
            self.item[rows],
            self.etype[rows],
            self.gap[rows],
            self.time[rows],
            self.query[rows],
            self.qtime[rows],
            None if self.target is None else self.target[rows],
        )


def _empty(rows: int, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    z = np.zeros((rows, length), dtype=np.int64)
    return z, z.copy(), z.copy(), np.zeros((rows, length), dtype=np.float32), z.copy()


@dataclass(frozen=True)
class TrainingRows:
    """Every (user, segment) of ``max_len`` consecutive next-event targets, and the row's user."""

    batch: Batch
    user: np.ndarray


def training_rows(
    user: np.ndarray, item: np.ndarray, etype: np.ndarray, time: np.ndarray, max_len: int, n_buckets: int
) -> TrainingRows:
    """Next-event training rows: each event after a user's first is a target, its predecessor the input.

    A user's targets are cut, from the most recent back, into segments of ``max_len``; a
    segment is one row, its inputs the events just before its targets. ``item`` and
    ``etype`` are model codes (>= 1); ``time`` in days.
    """
    order, from_end, first = _order(user, time)
    u, it, et, t = user[order], item[order], etype[order], time[order]
    pos = np.arange(u.size)
    target = np.flatnonzero(pos > first)  # has a predecessor
    prev = target - 1
    q = from_end[target]  # 0 for a user's last event
    segment = q // max_len
    col = max_len - 1 - q % max_len
    key = u[target].astype(np.int64) * (int(segment.max(initial=0)) + 1) + segment
    rows, row = np.unique(key, return_inverse=True)
    item_in, et_in, gap_in, time_in, query = _empty(rows.size, max_len)
    tgt = np.zeros((rows.size, max_len), dtype=np.int64)
    item_in[row, col] = it[prev]
    et_in[row, col] = et[prev]
    has_before = prev > first[prev]
    gap_in[row, col] = np.where(has_before, gap_bucket(t[prev] - t[np.maximum(prev - 1, 0)], n_buckets), FIRST)
    time_in[row, col] = (t[prev] - t.max(initial=0.0)).astype(np.float32) if t.size else 0.0
    query[row, col] = gap_bucket(t[target] - t[prev], n_buckets)
    qtime = np.zeros((rows.size, max_len), dtype=np.float32)
    qtime[row, col] = (t[target] - t.max(initial=0.0)).astype(np.float32) if t.size else 0.0
    tgt[row, col] = it[target]
    owner = np.zeros(rows.size, dtype=np.int64)
    owner[row] = u[target]
    return TrainingRows(Batch(item_in, et_in, gap_in, time_in, query, qtime, tgt), owner)


def last_events(
    user: np.ndarray,
    item: np.ndarray,
    etype: np.ndarray,
    time: np.ndarray,
    users: np.ndarray,
    now_days: float,
    max_len: int,
    n_buckets: int,
) -> Batch:
    """One row per user code in ``users`` (distinct): their last ``max_len`` events, queried at ``now_days``.

    ``time`` and ``now_days`` share one origin (days). A user without events gets an
    all-padding row whose query bucket is the last ("no event for a long time").
    """
    users = np.asarray(users, dtype=np.int64)
    order, from_end, first = _order(user, time)
    u, it, et, t = user[order], item[order], etype[order], time[order]
    slot = np.full(int(max(u.max(initial=-1), users.max(initial=-1))) + 1, -1, dtype=np.int64)
    slot[users] = np.arange(users.size)
    if np.unique(users).size != users.size:
        raise ValueError("last_events needs distinct user codes")
    keep = np.flatnonzero((from_end < max_len) & (slot[u] >= 0))
    row, col = slot[u[keep]], max_len - 1 - from_end[keep]
    item_in, et_in, gap_in, time_in, query = _empty(users.size, max_len)
    item_in[row, col] = it[keep]
    et_in[row, col] = et[keep]
    has_before = keep > first[keep]
    gap_in[row, col] = np.where(has_before, gap_bucket(t[keep] - t[np.maximum(keep - 1, 0)], n_buckets), FIRST)
    time_in[row, col] = (t[keep] - now_days).astype(np.float32)
    last = np.full(users.size, np.nan)
    at_end = from_end[keep] == 0
    last[row[at_end]] = t[keep[at_end]]
    query[:, -1] = np.where(np.isnan(last), n_buckets - 1, gap_bucket(now_days - np.nan_to_num(last), n_buckets))
    qtime = np.zeros((users.size, max_len), dtype=np.float32)  # times are relative to now_days
    return Batch(item_in, et_in, gap_in, time_in, query, qtime)
