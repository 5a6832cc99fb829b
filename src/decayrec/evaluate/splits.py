"""Time splits: learn from the past, score on a window after a cutoff.

A split at ``cutoff`` with a horizon ``h`` keeps the events with ``timestamp <= cutoff`` as
``train`` and the events in ``(cutoff, cutoff + h]`` as the test window; events after the
window are never read. Evaluated users have history in ``train`` *and* a relevant event in
the window; their ground truth is the set of items they engaged with in the window, each
flagged ``repeat`` (the user touched it in ``train``) or new. Splits are by time only: a
random split of time-ordered events leaks the future.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.errors import InputError

__all__ = ["TRUTH_SCHEMA", "TimeSplit", "quantile_split", "rolling_splits", "time_split", "validation_split"]

TRUTH_SCHEMA = pa.schema([(schema.USER, pa.string()), (schema.ITEM, pa.string()), ("repeat", pa.bool_())])


@dataclass(frozen=True)
class TimeSplit:
    """One time split, with its tables.

    Attributes
    ----------
    cutoff
        Aware UTC time; the ``now`` models are fitted and asked at.
    horizon_days
        Length of the test window ``(cutoff, cutoff + horizon]`` in days.
    train
        Events with ``timestamp <= cutoff``: the only table a model may see.
    test
        Every event in the window (any user, any type).
    users
        Evaluated users, sorted: history in ``train`` and a relevant event in the window.
    truth
        ``user_id, item_id, repeat``: one row per distinct (evaluated user, relevant item
        in the window), sorted; ``repeat`` is true when the user had any event on the item
        in ``train``.
    relevant
        Event types that make an item relevant.
    """

    cutoff: datetime
    horizon_days: float
    train: pa.Table
    test: pa.Table
    users: pa.Array
    truth: pa.Table
    relevant: tuple[str, ...]

    @property
    def window_end(self) -> datetime:
        return self.cutoff + timedelta(days=self.horizon_days)

    @property
    def n_users(self) -> int:
        return len(self.users)

    def summary(self) -> dict[str, object]:
        """Counts that describe the split (for RESULTS.json's ``protocol``)."""
        window_users = pc.unique(self.test[schema.USER])
        known = pc.is_in(window_users, value_set=pc.unique(self.train[schema.USER]))
        repeat = self.truth["repeat"]
        n_truth = self.truth.num_rows
        return {
            "relevant_events": list(self.relevant),
            "train_events": self.train.num_rows,
            "train_users": len(pc.unique(self.train[schema.USER])),
            "train_items": len(pc.unique(self.train[schema.ITEM])),
            "test_events": self.test.num_rows,
            "users_active_in_window": len(window_users),
            "users_cold_in_window": len(window_users) - pc.sum(known).as_py() if len(window_users) else 0,
            "truth_pairs": n_truth,
            "repeat_share": (pc.sum(repeat).as_py() or 0) / n_truth if n_truth else float("nan"),
        }


def time_split(
    events: pa.Table,
    cutoff: datetime | None = None,
    horizon_days: float = 7.0,
    *,
    relevant: Sequence[str] | None = None,
    purchase_only: bool = False,
) -> TimeSplit:
    """Split events at ``cutoff`` into a training table and a scored test window.

    Parameters
    ----------
    events
        Canonical events (timestamps naive UTC or tz-aware).
    cutoff
        Last instant of training (naive = UTC). Default: last event time minus the horizon.
    horizon_days
        Length of the test window in days.
    relevant
        Event types whose items count as ground truth; default all types.
    purchase_only
        Shorthand for ``relevant=("purchase",)``.

    Raises
    ------
    InputError
        No events, a bad horizon or event type, or no user to evaluate at this cutoff.
    """
    if events.num_rows == 0:
        raise InputError("there are no events to split", "give an events file with at least a few days of history")
    if not horizon_days > 0:
        raise InputError(f"the horizon must be positive, got {horizon_days} days", "pass --horizon-days 7 or similar")
    kinds = _relevant(relevant, purchase_only)
    ts = _naive_us(events[schema.TIMESTAMP])
    horizon = timedelta(days=horizon_days)
    cut = _naive(cutoff) if cutoff is not None else pc.max(ts).as_py() - horizon
    end = cut + horizon
    cut_s, end_s = pa.scalar(cut, pa.timestamp("us")), pa.scalar(end, pa.timestamp("us"))
    train = events.filter(pc.less_equal(ts, cut_s))
    test = events.filter(pc.and_(pc.greater(ts, cut_s), pc.less_equal(ts, end_s)))
    truth = _truth(train, test, kinds)
    if truth.num_rows == 0:
        raise InputError(
            f"no user has events at or before the cutoff {cut:%Y-%m-%d %H:%M} and a relevant event "
            f"({', '.join(kinds)}) in the {horizon_days:g} days after it",
            "choose an earlier --cutoff, a longer --horizon-days, or more event types",
        )
    users = pc.unique(truth[schema.USER])
    users = users.take(pc.sort_indices(users))
    return TimeSplit(cut.replace(tzinfo=UTC), float(horizon_days), train, test, users, truth, kinds)


def rolling_splits(
    events: pa.Table,
    n: int = 3,
    horizon_days: float = 7.0,
    step_days: float | None = None,
    *,
    relevant: Sequence[str] | None = None,
    purchase_only: bool = False,
) -> list[TimeSplit]:
    """``n`` splits whose cutoffs step back from the default one, oldest first.

    Cutoff ``i`` (counting back from the newest) is ``last event - horizon - i * step``;
    ``step_days`` defaults to the horizon, so the test windows tile without overlap.
    """
    if n < 1:
        raise InputError(f"need at least one split, got n={n}", "pass n >= 1")
    if events.num_rows == 0:
        raise InputError("there are no events to split", "give an events file with at least a few days of history")
    step = timedelta(days=horizon_days if step_days is None else step_days)
    if step <= timedelta(0):
        raise InputError(f"the step between cutoffs must be positive, got {step_days} days", "pass step_days > 0")
    last = pc.max(_naive_us(events[schema.TIMESTAMP])).as_py()
    newest = last - timedelta(days=horizon_days)
    cutoffs = [newest - i * step for i in reversed(range(n))]
    return [time_split(events, c, horizon_days, relevant=relevant, purchase_only=purchase_only) for c in cutoffs]


def quantile_split(events: pa.Table, share: float = 0.1, *, relevant: Sequence[str] | None = None) -> TimeSplit:
    """The split of ``../shared/bench``: the cutoff leaves ``share`` of the events after it.

    The cutoff is the time of the event at the ``1 - share`` quantile (ties stay in
    training); the test window runs to the last event, rounded up to whole days. Applied
    again to ``split.train`` it gives the validation split of the same protocol.
    """
    if events.num_rows == 0:
        raise InputError("there are no events to split", "give an events file with at least a few days of history")
    if not 0 < share < 1:
        raise InputError(f"share must lie in (0, 1), got {share}")
    ts = np.sort(_naive_us(events[schema.TIMESTAMP]).cast(pa.int64()).to_numpy())
    cut = int(ts[int(np.ceil(ts.size * (1 - share))) - 1])
    days = max(1, int(np.ceil((int(ts[-1]) - cut) / 86_400e6)))
    cutoff = datetime(1970, 1, 1) + timedelta(microseconds=cut)
    return time_split(events, cutoff, float(days), relevant=relevant)


def validation_split(split: TimeSplit, horizon_days: float | None = None) -> TimeSplit:
    """The same kind of split inside ``split.train``, at ``split.cutoff - horizon``.

    For tuning and for training rankers: it reads nothing after ``split.cutoff``. The
    horizon and relevant event types default to those of ``split``.
    """
    h = split.horizon_days if horizon_days is None else horizon_days
    return time_split(split.train, split.cutoff - timedelta(days=h), h, relevant=split.relevant)


# ----------------------------------------------------------------------------- helpers


def _relevant(relevant: Sequence[str] | None, purchase_only: bool) -> tuple[str, ...]:
    if purchase_only:
        if relevant is not None and tuple(relevant) != ("purchase",):
            raise InputError("purchase_only conflicts with the relevant event types given", "pass one or the other")
        return ("purchase",)
    if relevant is None:
        return schema.EVENT_TYPES
    kinds = []
    for name in relevant:
        kind = schema.canonical_event(name)
        if kind is None:
            raise InputError(f"{name!r} is not an event type", f"use some of {', '.join(schema.EVENT_TYPES)}")
        kinds.append(kind)
    if not kinds:
        raise InputError("no relevant event types given", f"use some of {', '.join(schema.EVENT_TYPES)}")
    return tuple(k for k in schema.EVENT_TYPES if k in kinds)


def _naive(at: datetime) -> datetime:
    """Naive UTC, as the store keeps times (naive input is taken as UTC)."""
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo is not None else at


def _naive_us(ts: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps as naive-UTC microseconds, whatever their unit or time zone."""
    if ts.type.tz is not None:
        ts = ts.cast(pa.timestamp(ts.type.unit))  # keeps the UTC instants, drops the zone
    return ts.cast(pa.timestamp("us"), safe=False) if ts.type.unit != "us" else ts


def _pairs(table: pa.Table) -> pa.Table:
    """Distinct (user, item) pairs of a table, as strings."""
    keys = pa.table({schema.USER: table[schema.USER].cast(pa.string()), schema.ITEM: table[schema.ITEM].cast(pa.string())})
    return keys.group_by([schema.USER, schema.ITEM]).aggregate([])


def _truth(train: pa.Table, test: pa.Table, kinds: tuple[str, ...]) -> pa.Table:
    """Relevant (user, item) pairs of the window for users with history, flagged repeat or new."""
    is_relevant = pc.is_in(test[schema.EVENT].cast(pa.string()), value_set=pa.array(kinds, pa.string()))
    pairs = _pairs(test.filter(is_relevant))
    known = pc.is_in(pairs[schema.USER], value_set=pc.unique(train[schema.USER].cast(pa.string())))
    pairs = pairs.filter(known)
    seen = _pairs(train)
    seen = seen.append_column("repeat", pa.array(np.ones(seen.num_rows, dtype=bool)))
    truth = pairs.join(seen, keys=[schema.USER, schema.ITEM], join_type="left outer")
    truth = truth.set_column(2, "repeat", pc.fill_null(truth["repeat"], False))
    truth = truth.sort_by([(schema.USER, "ascending"), (schema.ITEM, "ascending")])
    return truth.select(TRUTH_SCHEMA.names).cast(TRUTH_SCHEMA)
