"""Per-user lapse features as of a time: decay at several scales, recency, frequency, tenure,
money, inter-visit gaps, drift and category spread.

The log is encoded once (:class:`UserLog`: dense codes, times in days since a fixed origin)
so the same arrays serve many anchor times; :func:`user_features` reads only events at or
before its anchor. Everything is a bincount or a sort over events: no loop over users.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.decay.ids import IdMap
from decayrec.decay.kernels import LN2, to_days
from decayrec.decay.model import event_codes
from decayrec.decay.strength import as_utc
from decayrec.errors import InputError

__all__ = ["FEATURES", "UserFeatures", "UserLog", "activity_labels", "user_features"]

# Half-lives (days) of the activity features: intent (1 d) to habit (120 d).
SCALES: Final = (1.0, 7.0, 30.0, 120.0)
DRIFT_LAG_DAYS: Final = 30.0
_PURCHASE: Final = schema.EVENT_TYPES.index("purchase")
_FAR: Final = 1e4  # "days since" with no such event: far but finite, for the trees

FEATURES: Final = (
    *(f"activity_{h:g}d" for h in SCALES),
    "purchase_30d",
    "momentum_7_120",
    "recency_days",
    "purchase_recency_days",
    "tenure_days",
    "active_days",
    "log_events",
    *(f"share_{t}" for t in schema.EVENT_TYPES),
    "mean_gap_days",
    "last_gap_days",
    "gap_cv",
    "overdue",
    "active_share_30d",
    "log_spend",
    "categories",
    "category_entropy",
    "drift_30d",
)


@dataclass(frozen=True)
class UserLog:
    """A log as dense arrays: user/item/category codes, type codes, days since ``origin``, spend."""

    origin: datetime
    users: IdMap
    user: np.ndarray
    items: IdMap
    item: np.ndarray
    etype: np.ndarray
    time: np.ndarray
    categories: IdMap
    category: np.ndarray  # -1 where unknown
    spend: np.ndarray  # price * quantity of purchases, 0 elsewhere and where unknown

    @classmethod
    def from_events(cls, events: pa.Table, origin: datetime) -> UserLog:
        missing = [c for c in schema.REQUIRED_COLUMNS if c not in events.column_names]
        if missing:
            raise InputError(f"events lack the columns {missing}", "give canonical events (decayrec.schema.COLUMNS)")
        origin = as_utc(origin)
        users = IdMap.from_values(events.column(schema.USER))
        items = IdMap.from_values(events.column(schema.ITEM))
        etype = event_codes(events.column(schema.EVENT))
        if schema.CATEGORY in events.column_names:
            col = events.column(schema.CATEGORY).cast(pa.string())
            cats = IdMap.from_values(col.filter(pc.is_valid(col)))
            category = cats.encode(col).astype(np.int64)
        else:
            cats, category = IdMap(pa.array([], pa.string())), np.full(events.num_rows, -1, dtype=np.int64)
        return cls(
            origin=origin,
            users=users,
            user=users.encode(events.column(schema.USER)).astype(np.int64),
            items=items,
            item=items.encode(events.column(schema.ITEM)).astype(np.int64),
            etype=etype,
            time=to_days(events.column(schema.TIMESTAMP), origin),
            categories=cats,
            category=category,
            spend=np.where(etype == _PURCHASE, _spend(events), 0.0),
        )

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    def days(self, when: datetime) -> float:
        """``when`` as days since the log's origin."""
        return (as_utc(when) - self.origin).total_seconds() / 86400.0


def _spend(events: pa.Table) -> np.ndarray:
    n = events.num_rows
    if schema.PRICE not in events.column_names:
        return np.zeros(n)
    price = events.column(schema.PRICE).cast(pa.float64()).fill_null(0.0).to_numpy()
    if schema.QUANTITY in events.column_names:
        qty = events.column(schema.QUANTITY).cast(pa.float64()).fill_null(1.0).to_numpy()
        price = price * qty
    return np.where(np.isfinite(price) & (price > 0), price, 0.0)


@dataclass(frozen=True)
class UserFeatures:
    """Feature rows (``FEATURES`` columns) for the users with history at ``at``."""

    users: np.ndarray  # codes into UserLog.users
    values: np.ndarray  # float64 (n_users, len(FEATURES))

    def column(self, name: str) -> np.ndarray:
        """One feature, a value per row of ``users``."""
        return self.values[:, FEATURES.index(name)]

    def table(self, log: UserLog) -> pa.Table:
        cols = {schema.USER: log.users.decode(self.users)}
        cols.update({name: self.values[:, j] for j, name in enumerate(FEATURES)})
        return pa.table(cols)


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (``np.unique`` without its hash path, ~15x faster on int64 here)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if values.size else values


def _per_user_max(user: np.ndarray, values: np.ndarray, n: int, fill: float) -> np.ndarray:
    out = np.full(n, fill)
    np.maximum.at(out, user, values)
    return out


def _gap_stats(user: np.ndarray, day: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, last and coefficient of variation of gaps between a user's distinct active days."""
    key = _distinct(user * (1 << 32) + (day - day.min() if day.size else day))
    u = key >> 32
    d = (key & ((1 << 32) - 1)).astype(np.float64)
    same = u[1:] == u[:-1]
    gap = np.diff(d)[same]
    gu = u[1:][same]
    k = np.bincount(gu, minlength=n).astype(np.float64)
    s = np.bincount(gu, gap, minlength=n)
    s2 = np.bincount(gu, gap * gap, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(k > 0, s / np.maximum(k, 1), np.nan)
        var = np.where(k > 1, (s2 - s * s / np.maximum(k, 1)) / np.maximum(k - 1, 1), np.nan)
        cv = np.sqrt(np.maximum(var, 0.0)) / mean
    last = np.full(n, np.nan)
    if gap.size:
        ends = np.flatnonzero(np.r_[gu[1:] != gu[:-1], True])
        last[gu[ends]] = gap[ends]
    return mean, last, cv


def _category_stats(log: UserLog, keep: np.ndarray, age: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Distinct categories, entropy of the 30-day decayed category mix, and 30-day drift."""
    cat = log.category[keep]
    named = cat >= 0
    if log.n_categories == 0 or not named.any():
        return np.zeros(n), np.zeros(n), np.full(n, np.nan)
    u, c, a = log.user[keep][named], cat[named], age[named]
    pair, inv = np.unique(u * log.n_categories + c, return_inverse=True)
    pu = pair // log.n_categories
    now = np.bincount(inv, np.exp(-LN2 * a / 30.0), minlength=pair.size)
    past = a >= DRIFT_LAG_DAYS
    then = np.bincount(inv[past], np.exp(-LN2 * (a[past] - DRIFT_LAG_DAYS) / 30.0), minlength=pair.size)
    n_cat = np.bincount(pu, minlength=n).astype(np.float64)
    total = np.bincount(pu, now, minlength=n)
    p = now / np.maximum(total[pu], 1e-300)
    entropy = -np.bincount(pu, np.where(p > 0, p * np.log(np.maximum(p, 1e-300)), 0.0), minlength=n)
    dot = np.bincount(pu, now * then, minlength=n)
    nn = np.sqrt(np.bincount(pu, now * now, minlength=n) * np.bincount(pu, then * then, minlength=n))
    with np.errstate(invalid="ignore", divide="ignore"):
        drift = np.where(nn > 0, 1.0 - dot / nn, np.nan)
    return n_cat, entropy, drift


def user_features(log: UserLog, at: float, weights: np.ndarray | None = None) -> UserFeatures:
    """Features of every user with an event at or before ``at`` (days since ``log.origin``).

    ``weights`` weighs event types in the activity sums (index ``schema.EVENT_TYPES``);
    default 1 for every type: for lapse, any activity counts.
    """
    keep = log.time <= at
    user_all = log.user[keep]
    n = len(log.users)
    age = at - log.time[keep]
    etype = log.etype[keep]
    w = np.ones(len(schema.EVENT_TYPES)) if weights is None else np.asarray(weights, dtype=np.float64)
    ew = w[etype]
    present = np.bincount(user_all, minlength=n) > 0
    cols: list[np.ndarray] = [np.bincount(user_all, ew * np.exp(-LN2 * age / h), minlength=n) for h in SCALES]
    buy = etype == _PURCHASE
    cols.append(np.bincount(user_all[buy], np.exp(-LN2 * age[buy] / 30.0), minlength=n))
    # Rates per day at 7 d over 120 d: 1 for a steady visitor, < 1 for one slowing down.
    with np.errstate(invalid="ignore", divide="ignore"):
        cols.append(np.where(cols[3] > 0, (cols[1] / 7.0) / (cols[3] / 120.0), np.nan))
    recency = -_per_user_max(user_all, -age, n, -_FAR)
    cols.append(recency)
    cols.append(np.minimum(-_per_user_max(user_all[buy], -age[buy], n, -_FAR), _FAR))
    tenure = _per_user_max(user_all, age, n, 0.0)
    cols.append(tenure)
    day = np.floor(log.time[keep]).astype(np.int64)
    distinct = _distinct(user_all * (1 << 32) + (day - day.min() if day.size else day))
    active_days = np.bincount(distinct >> 32, minlength=n).astype(np.float64)
    cols.append(active_days)
    n_events = np.bincount(user_all, minlength=n).astype(np.float64)
    cols.append(np.log1p(n_events))
    by_type: np.ndarray = np.bincount(user_all * len(schema.EVENT_TYPES) + etype, minlength=n * len(schema.EVENT_TYPES))
    by_type = by_type.reshape(n, len(schema.EVENT_TYPES)) / np.maximum(n_events, 1)[:, None]
    cols.extend(by_type.T)
    mean_gap, last_gap, cv = _gap_stats(user_all, day, n)
    cols += [mean_gap, last_gap, cv]
    with np.errstate(invalid="ignore", divide="ignore"):
        cols.append(np.where(mean_gap > 0, recency / mean_gap, np.nan))
    recent = age < 30.0
    recent_days = _distinct(user_all[recent] * (1 << 32) + (day[recent] - day.min() if day.size else day[recent]))
    cols.append(np.bincount(recent_days >> 32, minlength=n) / np.maximum(active_days, 1))
    cols.append(np.log1p(np.bincount(user_all, log.spend[keep], minlength=n)))
    cols.extend(_category_stats(log, keep, age, n))
    values = np.column_stack(cols)[present]
    return UserFeatures(users=np.flatnonzero(present), values=values)


def activity_labels(log: UserLog, users: np.ndarray, at: float, horizon: float) -> np.ndarray:
    """1 where the user has any event in ``(at, at + horizon]``, else 0."""
    inside = (log.time > at) & (log.time <= at + horizon)
    active = np.zeros(len(log.users), dtype=bool)
    active[log.user[inside]] = True
    return active[users].astype(np.int8)


SCALE_FEATURES: Final = (
    *(f"activity_{k:g}L" for k in (0.0625, 0.25, 1.0, 4.0)),
    "recency_over_label",
    "active_periods_8L",
    "active_last_L",
    "active_previous_L",
)


def scale_features(log: UserLog, users: np.ndarray, at: float, label: float) -> np.ndarray:
    """Features measured in label windows ``L``, so that a 1-day and a 90-day question see the same shapes.

    Decayed activity at half-lives ``L/16 .. 4L``, recency in ``L``, how many of the last 8
    windows of length ``L`` had any event, and whether the last and the one before did.
    """
    keep = log.time <= at
    user, age = log.user[keep], at - log.time[keep]
    n = len(log.users)
    cols: list[np.ndarray] = [np.bincount(user, np.exp(-LN2 * age / (k * label)), minlength=n) for k in (0.0625, 0.25, 1.0, 4.0)]
    recency = -_per_user_max(user, -age, n, -_FAR)
    cols.append(recency / label)
    period = np.floor(age / label).astype(np.int64)
    recent = period < 8
    pairs = _distinct(user[recent] * 8 + period[recent])
    cols.append(np.bincount(pairs // 8, minlength=n).astype(np.float64))
    for j in (0, 1):
        mark = np.zeros(n)
        mark[pairs[pairs % 8 == j] // 8] = 1.0
        cols.append(mark)
    return np.column_stack(cols)[users]
