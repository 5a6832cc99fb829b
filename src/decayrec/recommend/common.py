"""What every recommender shares: events as of ``now``, the user x item matrix, popularity
fallbacks, batch top-k over score matrices, and the output table with its reasons.

Inside a model users and items are dense codes (:class:`~decayrec.decay.IdMap`, ids sorted,
so ties broken by code are ties broken by id); external ids appear only in the output.
Times are float64 days relative to the fit time (``<= 0``). Nothing here reads the clock.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from decayrec import schema
from decayrec.decay.ids import IdMap, PairMap
from decayrec.decay.kernels import LN2, to_days
from decayrec.decay.model import event_codes
from decayrec.decay.strength import as_utc
from decayrec.errors import DecayrecError, InputError
from decayrec.recommend.base import REC_SCHEMA
from decayrec.timeparse import iso

__all__ = [
    "COLD_START_HALF_LIFE_DAYS",
    "DEFAULT_EVENT_WEIGHTS",
    "BaseRecommender",
    "Fallback",
    "History",
    "Interactions",
    "ago",
    "blend_topk",
    "check_k",
    "check_positive",
    "elapsed_days",
    "fallback_rows",
    "half_life_factor",
    "interactions",
    "join_text",
    "merge_reasons",
    "personal_table",
    "popularity",
    "rank_in_group",
    "rec_table",
    "request_users",
    "topk_rows",
    "topk_sparse_rows",
    "weight_table",
]

# The simulator's weights (decayrec.simulate): a purchase says five times what a view does.
DEFAULT_EVENT_WEIGHTS: Final[Mapping[str, float]] = {"view": 1.0, "click": 1.5, "cart": 3.0, "fav": 3.0, "purchase": 5.0}
# Models without a popularity of their own answer cold-start users with this one.
COLD_START_HALF_LIFE_DAYS: Final = 7.0
# Cells of one dense (users x items) score block: 4M float64 = 32 MB, a few copies at most.
_CHUNK_CELLS: Final = 1 << 22
# blend_topk goes dense when more than one cell in this many holds a score.
_DENSE_SHARE: Final = 16
# Users scored together by blend_topk (bounds the sparse score block of one call to main).
_USER_BLOCK: Final = 8192
_PHRASE: Final = {
    "view": "viewed this",
    "click": "clicked this",
    "cart": "put this in your cart",
    "fav": "saved this",
    "purchase": "bought this",
}
_PARTICIPLE: Final = {"view": "viewed", "click": "clicked", "cart": "put in your cart", "fav": "saved", "purchase": "bought"}
_COLD_PREFIX: Final = "new visitor: "


# -- parameters and requests ------------------------------------------------------------
def weight_table(event_weights: Mapping[str, float] | None) -> np.ndarray:
    """Weights by event type code (schema order), plus a trailing 0 for unknown codes (-1).

    ``None`` means :data:`DEFAULT_EVENT_WEIGHTS`; types missing from a mapping weigh 0,
    so ``{"purchase": 1}`` counts purchases only.
    """
    weights = DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights
    unknown = sorted(set(weights) - set(schema.EVENT_TYPES))
    if unknown:
        raise InputError(f"event_weights names unknown event types {unknown}", f"use types among {schema.EVENT_TYPES}")
    table = np.array([float(weights.get(e, 0.0)) for e in schema.EVENT_TYPES] + [0.0])
    if not np.all(np.isfinite(table)) or table.min() < 0 or table.max() <= 0:
        raise InputError(f"event_weights must be finite, non-negative and not all 0, got {dict(weights)}")
    return table


def check_positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    """Raise :class:`InputError` unless ``value`` is a positive finite number (or None when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < np.inf:
        raise InputError(f"{name} must be a positive number, got {value!r}")


def check_k(k: int) -> int:
    """``k`` as a positive int."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    return int(k)


def request_users(users: Sequence[str] | pa.Array | pa.ChunkedArray | np.ndarray) -> pa.Array:
    """Requested user ids as a string array, duplicates dropped (first occurrence kept)."""
    if isinstance(users, str):
        raise InputError("users must be a sequence of user ids, not one string", "pass [user_id]")
    if not isinstance(users, (pa.Array, pa.ChunkedArray)):
        users = pa.array(users if isinstance(users, np.ndarray) else list(users))
    if isinstance(users, pa.ChunkedArray):
        users = users.combine_chunks() if users.num_chunks else pa.array([], pa.string())
    if pa.types.is_dictionary(users.type):
        users = users.cast(users.type.value_type)
    if pa.types.is_null(users.type) and len(users) == 0:
        users = users.cast(pa.string())
    if users.null_count:
        raise InputError("the requested users include a null id", "drop missing user ids before recommending")
    if not pa.types.is_string(users.type):
        users = users.cast(pa.string())
    return pc.unique(users)


def elapsed_days(fitted_at: datetime, now: datetime) -> float:
    """Days from the fit time to ``now``; an earlier ``now`` would use events from its future."""
    now = as_utc(now)
    days = (now - fitted_at).total_seconds() / 86_400
    if days < 0:
        raise InputError(
            f"cannot recommend as of {iso(now)}: the model was fitted as of {iso(fitted_at)}, a later time",
            "fit the model as of a time at or before the recommendation time",
        )
    return days


def half_life_factor(days: float, half_life_days: float | None) -> float:
    """``2 ** (-days / h)``: what a decayed score is worth ``days`` later; 1 without a half-life."""
    return 1.0 if half_life_days is None else float(np.exp(-LN2 * days / half_life_days))


class BaseRecommender:
    """Shared plumbing: ``fit`` through :func:`interactions`, ``repr`` from the constructor's
    keywords, the fitted check, request parsing.

    A model implements :meth:`fit_interactions`; several models fitted on the same events
    at the same time with the same event weights can share one :class:`Interactions`.
    """

    name: str = ""
    event_weights: Mapping[str, float] | None = None

    def fit(self, events: pa.Table, now: datetime):
        """Learn from the events at or before ``now`` (later rows are dropped unread)."""
        return self.fit_interactions(interactions(events, now, self.event_weights))

    def fit_interactions(self, ix: Interactions):
        """Learn from events already condensed by :func:`interactions` with this model's event weights."""
        raise NotImplementedError

    def __repr__(self) -> str:
        params = inspect.signature(type(self).__init__).parameters
        args = ", ".join(f"{p}={getattr(self, p)!r}" for p in params if p != "self")
        return f"{type(self).__name__}({args})"

    def _start(self, users, k: int, now: datetime) -> tuple[pa.Array, np.ndarray, int, float]:
        """Requested ids, their user codes (-1 = cold start), ``k`` and days since the fit."""
        if not hasattr(self, "fitted_at_"):
            raise DecayrecError(f"{type(self).__name__} is not fitted; call fit(events, now) first")
        req = request_users(users)
        k = check_k(k)
        elapsed = elapsed_days(self.fitted_at_, now)
        return req, self.users_.encode(req), k, elapsed

    def _remember(self, ix: Interactions) -> None:
        """Keep what every fitted model knows: the fit time and the id maps."""
        self.fitted_at_ = ix.now
        self.users_ = ix.users
        self.items_ = ix.items


# -- events as of now ---------------------------------------------------------------------
@dataclass(frozen=True)
class Interactions:
    """The events with ``timestamp <= now`` and positive weight, as dense arrays.

    ``users`` holds only users with such an event: everyone else is a cold start.
    ``time`` is in days since ``now`` (``<= 0``); ``etype`` indexes ``schema.EVENT_TYPES``.
    """

    now: datetime
    users: IdMap
    items: IdMap
    user: np.ndarray
    item: np.ndarray
    etype: np.ndarray
    time: np.ndarray
    weight: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def decayed(self, half_life_days: float | None) -> np.ndarray:
        """Each event's weight decayed to ``now`` (``w * 2 ** (time / h)``); plain weights when ``h`` is None."""
        if half_life_days is None:
            return self.weight
        return self.weight * np.exp(LN2 * self.time / half_life_days)

    @functools.cached_property
    def history(self) -> History:
        """The (user, item) pairs and their counts (:class:`History`), built once and shared."""
        return History.build(self)

    def matrix(self, half_life_days: float | None = None, dtype=np.float64) -> sp.csr_matrix:
        """The user x item matrix of (decayed) weighted counts, CSR with sorted indices."""
        return sp.csr_matrix(
            (self.decayed(half_life_days).astype(dtype), (self.user, self.item)), shape=(self.n_users, self.n_items)
        )


def interactions(events: pa.Table, now: datetime, event_weights: Mapping[str, float] | None) -> Interactions:
    """Dense arrays of the events at or before ``now`` (later rows are dropped, never read further)."""
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in events.column_names]
    if missing:
        raise InputError(f"events lack the columns {missing}", "give canonical events (decayrec.schema.COLUMNS)")
    table = weight_table(event_weights)
    now = as_utc(now)
    time = to_days(events.column(schema.TIMESTAMP), now)
    etype = event_codes(events.column(schema.EVENT))
    weight = table[etype]
    keep = (time <= 0.0) & (weight > 0)
    if not keep.all():
        mask = pa.array(keep)
        events = events.select([schema.USER, schema.ITEM]).filter(mask)
        time, etype, weight = time[keep], etype[keep], weight[keep]
    user_col, item_col = events.column(schema.USER), events.column(schema.ITEM)
    users, items = IdMap.from_values(user_col), IdMap.from_values(item_col)
    return Interactions(
        now=now,
        users=users,
        items=items,
        user=users.encode(user_col),
        item=items.encode(item_col),
        etype=etype.astype(np.int8),
        time=time,
        weight=weight,
    )


@dataclass(frozen=True)
class History:
    """Per (user, item) pair: its strongest event type, how often and when last the user did it.

    Pairs are ordered by (user, item) (:class:`~decayrec.decay.PairMap`); ``event_pair``
    gives each event's pair code, for other per-pair sums.
    """

    pairs: PairMap
    event_pair: np.ndarray
    etype: np.ndarray
    count: np.ndarray
    last: np.ndarray
    last_any: np.ndarray

    @classmethod
    def build(cls, ix: Interactions) -> History:
        pairs, code = PairMap.build(ix.user, ix.item, max(ix.n_items, 1))
        n = len(pairs)
        etype = np.full(n, -1, dtype=np.int8)
        np.maximum.at(etype, code, ix.etype)
        top = ix.etype == etype[code]
        count = np.bincount(code[top], minlength=n)
        last = np.full(n, -np.inf)
        np.maximum.at(last, code[top], ix.time[top])
        last_any = np.full(n, -np.inf)
        np.maximum.at(last_any, code, ix.time)
        return cls(pairs, code, etype, count, last, last_any)

    def lookup(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Pair codes of (user, item) codes; -1 where the user never touched the item."""
        return self.pairs.encode(users, items)

    def seen(self, n_users: int, n_items: int) -> sp.csr_matrix:
        """A 0/1 user x item matrix of the pairs."""
        ones = np.ones(len(self.pairs), dtype=np.float32)
        return sp.csr_matrix((ones, (self.pairs.users, self.pairs.keys)), shape=(n_users, n_items))

    def phrase(self, codes: np.ndarray, elapsed: float) -> pa.Array:
        """``"you bought this 3 times; last 12 days ago"`` for each pair code (all >= 0)."""
        etype, count, age = self.etype[codes], self.count[codes], elapsed - self.last[codes]
        verb = _by_type(_PHRASE, etype)
        many = join_text("you ", verb, " ", _times(count), "; last ", ago(age))
        once = join_text("you ", verb, " ", ago(age))
        return pc.if_else(pa.array(count > 1), many, once)

    def participle(self, codes: np.ndarray, elapsed: float) -> pa.Array:
        """``"bought 12 days ago"`` for each pair code (all >= 0): the strongest type, its latest time."""
        return join_text(_by_type(_PARTICIPLE, self.etype[codes]), " ", ago(elapsed - self.last[codes]))


# -- popularity, the fallback of every model ----------------------------------------------
@dataclass(frozen=True)
class Fallback:
    """Item popularity as of the fit time: scores, the ranking, and a reason per item (worded as of the fit)."""

    score: np.ndarray
    order: np.ndarray
    reason: pa.Array
    half_life_days: float | None

    def scores(self, elapsed: float) -> np.ndarray:
        """Scores ``elapsed`` days after the fit (a common factor: the order never changes)."""
        return self.score * half_life_factor(elapsed, self.half_life_days)

    def fill_key(self) -> np.ndarray:
        """Per item a key in ``[-2, -1)``, larger for more popular items: below every positive model score."""
        n = self.order.size
        key = np.empty(n)
        key[self.order] = -1.0 - np.arange(1, n + 1) / (n + 1)
        return key


def popularity(ix: Interactions, half_life_days: float | None = None, window_days: float | None = None) -> Fallback:
    """Weighted event counts per item, decayed to the fit time when a half-life is given,
    and only over the last ``window_days`` when a window is given.

    The ranking breaks ties by item id. Reasons count distinct shoppers: overall, or within
    the last half-life (``"popular lately (85 shoppers in the last 7 days)"``).
    """
    n = ix.n_items
    weight = ix.decayed(half_life_days)
    if window_days is not None:
        weight = np.where(ix.time >= -window_days, weight, 0.0)
    score = np.bincount(ix.item, weight, minlength=n)
    order = np.lexsort((np.arange(n), -score))
    first = _distinct_pairs(ix, np.ones(ix.user.size, dtype=bool))
    shoppers = np.bincount(ix.item[first], minlength=n)
    span_days = half_life_days if window_days is None else window_days
    if span_days is None:
        reason = join_text("popular overall (", _shoppers(shoppers), ")")
    else:
        recent = _distinct_pairs(ix, ix.time >= -span_days)
        lately = np.bincount(ix.item[recent], minlength=n)
        span = _span(span_days)
        live = join_text("popular lately (", _shoppers(lately), f" in the last {span})")
        faded = join_text("popular earlier (", _shoppers(shoppers), f", none in the last {span})")
        reason = pc.if_else(pa.array(lately > 0), live, faded)
    return Fallback(score=score, order=order, reason=reason, half_life_days=half_life_days)


def _distinct_pairs(ix: Interactions, mask: np.ndarray) -> np.ndarray:
    """Indices of one event per distinct (user, item) pair among ``mask``."""
    idx = np.flatnonzero(mask)
    combined = ix.user[idx].astype(np.int64) * max(ix.n_items, 1) + ix.item[idx]
    _, first = np.unique(combined, return_index=True)
    return idx[first]


def fallback_rows(
    pos: np.ndarray, fallback: Fallback, k: int, elapsed: float, *, cold: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """The same top-``k`` popular items for each position in ``pos``; ``cold`` marks the reason."""
    top = fallback.order[:k]
    reason = fallback.reason.take(pa.array(top))
    if cold:
        reason = join_text(_COLD_PREFIX, reason)
    rows = np.repeat(np.asarray(pos, dtype=np.int64), top.size)
    items = np.tile(top, len(pos))
    score = np.tile(fallback.scores(elapsed)[top], len(pos))
    return rows, items, score, reason.take(pa.array(np.tile(np.arange(top.size), len(pos))))


# -- top-k ----------------------------------------------------------------------------------
def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest finite entries of each row, best first, ties broken by column.

    Returns ``(row, col, value)`` sorted by row then rank; rows with fewer finite entries
    give fewer. ``np.argpartition`` finds each row's k-th value; only entries at or above
    it are sorted.
    """
    m, n = scores.shape
    k = min(k, n)
    if m == 0 or k == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    if k < n:
        part = np.argpartition(scores, n - k, axis=1)[:, n - k :]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
        mask = scores >= kth[:, None]
        mask &= scores > -np.inf
    else:
        mask = scores > -np.inf
    row, col = np.nonzero(mask)
    value = scores[row, col]
    order = np.lexsort((col, -value, row))
    row, col, value = row[order], col[order], value[order]
    keep = rank_in_group(row) < k
    return row[keep], col[keep], value[keep]


def topk_sparse_rows(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's ``k`` largest stored entries (ties by column), as a CSR of the same shape.

    Rows with more than ``k`` entries are padded into dense blocks of rows of similar
    length (within a factor of two) and cut with ``np.argpartition`` (:func:`topk_rows`):
    linear in the stored entries, where sorting all of them was the ranker's bottleneck.
    """
    matrix = sp.csr_matrix(matrix, copy=True)
    if matrix.nnz == 0:
        return matrix
    matrix.sort_indices()  # position within a row = column order, for the ties
    length = np.diff(matrix.indptr)
    if length.max() <= k:
        return matrix
    keep = np.repeat(length <= k, length)
    long_rows = np.flatnonzero(length > k)
    bucket = np.ceil(np.log2(length[long_rows])).astype(np.int64)
    for b in np.unique(bucket):
        rows = long_rows[bucket == b]
        width = int(length[rows].max())
        step = max(1, _CHUNK_CELLS // width)
        for lo in range(0, rows.size, step):
            block = rows[lo : lo + step]
            pos = matrix.indptr[block][:, None] + np.arange(width)[None, :]
            inside = pos < matrix.indptr[block + 1][:, None]
            dense = np.where(inside, matrix.data[np.minimum(pos, matrix.nnz - 1)], -np.inf)
            r, c, _ = topk_rows(dense, k)
            keep[pos[r, c]] = True
    row = np.repeat(np.arange(matrix.shape[0]), length)
    out = sp.csr_matrix((matrix.data[keep], (row[keep], matrix.indices[keep])), shape=matrix.shape)
    out.sort_indices()
    return out


def rank_in_group(sorted_groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted array."""
    n = sorted_groups.size
    if n == 0:
        return np.empty(0, dtype=np.int64)
    start = np.ones(n, dtype=bool)
    np.not_equal(sorted_groups[1:], sorted_groups[:-1], out=start[1:])
    first = np.flatnonzero(start)
    return np.arange(n) - np.repeat(first, np.diff(np.append(first, n)))


def blend_topk(
    user_codes: np.ndarray,
    n_items: int,
    k: int,
    main: Callable[[np.ndarray], sp.spmatrix],
    fill_key: np.ndarray | None,
    exclude: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` per user of the model's positive scores, then fallback items, batched.

    ``main(codes)`` gives a sparse ``(len(codes), n_items)`` block of positive scores;
    ``fill_key`` (:meth:`Fallback.fill_key`, negative) orders the rest, or None to leave
    lists short; ``exclude`` (user x item, nonzero = never recommend) removes items.
    Sparse score blocks stay sparse: each user's stored scores are sorted, and the fill
    walks the fallback order past the user's scored and excluded items, so time and
    memory grow with the stored entries and ``k``, not with the catalogue (a dense users x
    items block was 20x slower on a 65,000-item shop). Nearly dense blocks (small
    catalogues) are scored as dense rows with ``np.argpartition``; both give the same lists.

    Returns ``(row, item, key)`` by row then rank: ``row`` indexes ``user_codes``; a
    positive ``key`` is a model score, a negative one marks a fallback item.
    """
    rows, items, keys = [], [], []
    for lo in range(0, user_codes.size, _USER_BLOCK):
        r, c, v = _blend_block(user_codes[lo : lo + _USER_BLOCK], n_items, k, main, fill_key, exclude)
        rows.append(r + lo)
        items.append(c)
        keys.append(v)
    if not rows:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    return np.concatenate(rows), np.concatenate(items), np.concatenate(keys)


def _blend_dense(
    user_codes: np.ndarray,
    n_items: int,
    k: int,
    scores: sp.csr_matrix,
    fill_key: np.ndarray | None,
    exclude: sp.csr_matrix | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`blend_topk` over dense rows (fill keys, then positive scores, then excluded as -inf)."""
    rows, items, keys = [], [], []
    step = max(1, _CHUNK_CELLS // max(n_items, 1))
    for lo in range(0, user_codes.size, step):
        block = scores[lo : lo + step].tocoo()
        size = min(step, user_codes.size - lo)
        if fill_key is None:
            dense = np.full((size, n_items), -np.inf)
        else:
            dense = np.repeat(fill_key[None, :], size, axis=0)
        hit = block.data > 0
        dense[block.row[hit], block.col[hit]] = block.data[hit]
        if exclude is not None:
            seen = sp.coo_matrix(exclude[user_codes[lo : lo + step]])
            dense[seen.row, seen.col] = -np.inf
        r, c, v = topk_rows(dense, k)
        rows.append(r + lo)
        items.append(c)
        keys.append(v)
    return np.concatenate(rows), np.concatenate(items), np.concatenate(keys)


def _blend_block(
    user_codes: np.ndarray,
    n_items: int,
    k: int,
    main: Callable[[np.ndarray], sp.spmatrix],
    fill_key: np.ndarray | None,
    exclude: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`blend_topk` for one block of users."""
    m = user_codes.size
    empty = np.empty(0, dtype=np.int64)
    k = min(k, n_items)
    if m == 0 or k == 0:
        return empty, empty, np.empty(0)
    scores = sp.csr_matrix(main(user_codes))
    scores.sum_duplicates()
    if scores.nnz * _DENSE_SHARE > m * n_items:  # nearly dense: argpartition over full rows is faster
        return _blend_dense(user_codes, n_items, k, scores, fill_key, exclude)
    row = np.repeat(np.arange(m, dtype=np.int64), np.diff(scores.indptr))
    col, val = scores.indices.astype(np.int64), scores.data.astype(np.float64)
    ok = val > 0
    blocked_row, blocked_col = row[ok], col[ok]
    if exclude is not None:
        seen = sp.csr_matrix(exclude[user_codes])
        seen.eliminate_zeros()
        s_row = np.repeat(np.arange(m, dtype=np.int64), np.diff(seen.indptr))
        s_col = seen.indices.astype(np.int64)
        drop = np.isin(row * n_items + col, s_row * n_items + s_col)
        ok &= ~drop
        blocked_row, blocked_col = np.concatenate([row[ok], s_row]), np.concatenate([col[ok], s_col])
    row, col, val = row[ok], col[ok], val[ok]
    order = np.lexsort((col, -val, row))
    order = order[rank_in_group(row[order]) < k]
    row, col, val = row[order], col[order], val[order]
    if fill_key is None:
        return row, col, val
    need = k - np.bincount(row, minlength=m)
    users = np.flatnonzero(need > 0)
    if users.size == 0:
        return row, col, val
    # Walk the fallback order: each user needs at most need + |blocked| of its first items.
    blocked_key = np.unique(blocked_row * n_items + blocked_col)
    n_blocked = np.bincount(blocked_key // n_items, minlength=m) if blocked_key.size else np.zeros(m, dtype=np.int64)
    fill_order = np.argsort(-fill_key, kind="stable")
    length = np.minimum(need[users] + n_blocked[users], n_items)
    f_row = np.repeat(users, length)
    f_pos = np.arange(f_row.size) - np.repeat(np.cumsum(length) - length, length)
    f_col = fill_order[f_pos].astype(np.int64)
    if blocked_key.size:
        f_key = f_row * n_items + f_col
        at = np.minimum(np.searchsorted(blocked_key, f_key), blocked_key.size - 1)
        free = blocked_key[at] != f_key
        f_row, f_col = f_row[free], f_col[free]
    take = rank_in_group(f_row) < need[f_row]
    f_row, f_col = f_row[take], f_col[take]
    row = np.concatenate([row, f_row])
    col = np.concatenate([col, f_col])
    val = np.concatenate([val, fill_key[f_col]])
    order = np.argsort(row, kind="stable")  # model rows first within a user, then the fill in order
    return row[order], col[order], val[order]


def personal_table(
    req: pa.Array,
    codes: np.ndarray,
    items: IdMap,
    k: int,
    elapsed: float,
    *,
    main: Callable[[np.ndarray], sp.spmatrix],
    main_reason: Callable[[np.ndarray, np.ndarray], pa.Array],
    fallback: Fallback,
    fill: bool = True,
    exclude: sp.csr_matrix | None = None,
) -> pa.Table:
    """Recommendations of a personal model: its own candidates first, then popular items.

    ``codes`` are the requested users' codes (-1: cold start, answered by ``fallback``);
    ``main`` and ``exclude`` are as for :func:`blend_topk`; ``main_reason(users, items)``
    words the model's own rows. Rows from the fallback score 0 for known users (scores never
    rise down a list); a cold-start user's rows carry the popularity score.
    """
    known, cold = np.flatnonzero(codes >= 0), np.flatnonzero(codes < 0)
    users = codes[known]
    row, item, key = blend_topk(users, len(items), k, main, fallback.fill_key() if fill else None, exclude)
    own = key > 0
    reason = merge_reasons(
        own,
        lambda i: main_reason(users[row[i]], item[i]),
        lambda i: fallback.reason.take(pa.array(item[i])),
    )
    score = np.where(own, key, 0.0)
    return rec_table(req, items, [(known[row], item, score, reason), fallback_rows(cold, fallback, k, elapsed, cold=True)])


# -- output ---------------------------------------------------------------------------------
def rec_table(
    req: pa.Array,
    items: IdMap,
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]],
) -> pa.Table:
    """The output table from ``(pos, item, score, reason)`` parts.

    ``pos`` indexes ``req``; within one part, a user's rows are in rank order. Rows come
    out in request order, ranked from 1.
    """
    parts = [p for p in parts if p[0].size]
    if not parts:
        return REC_SCHEMA.empty_table()
    pos = np.concatenate([p[0] for p in parts])
    item = np.concatenate([p[1] for p in parts])
    score = np.concatenate([p[2] for p in parts]).astype(np.float64)
    reason = pa.concat_arrays([_plain(p[3]) for p in parts])
    order = np.argsort(pos, kind="stable")
    pos, item, score = pos[order], item[order], score[order]
    rank = rank_in_group(pos) + 1
    columns = [
        req.take(pa.array(pos)),
        items.decode(item),
        pa.array(rank, pa.int32()),
        pa.array(score, pa.float64()),
        reason.take(pa.array(order)),
    ]
    return pa.Table.from_arrays(columns, schema=REC_SCHEMA)


def _plain(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        return array.combine_chunks() if array.num_chunks else pa.array([], pa.string())
    return array


def merge_reasons(
    mask: np.ndarray,
    when_true: Callable[[np.ndarray], pa.Array],
    when_false: Callable[[np.ndarray], pa.Array],
) -> pa.Array:
    """One reason per row: ``when_true(idx)`` for rows where ``mask`` holds, ``when_false(idx)`` elsewhere."""
    yes, no = np.flatnonzero(mask), np.flatnonzero(~mask)
    empty = pa.array([], pa.string())
    both = pa.concat_arrays([_plain(when_true(yes)) if yes.size else empty, _plain(when_false(no)) if no.size else empty])
    where = np.empty(mask.size, dtype=np.int64)
    where[np.concatenate([yes, no])] = np.arange(mask.size)
    return both.take(pa.array(where))


# -- reason text, vectorised ----------------------------------------------------------------
def join_text(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of string arrays and literals."""
    return pc.binary_join_element_wise(*parts, "")


def _num(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string())


def _by_type(words: Mapping[str, str], etype: np.ndarray) -> pa.Array:
    return pa.array([words[e] for e in schema.EVENT_TYPES]).take(pa.array(np.asarray(etype, dtype=np.int64)))


def _times(count: np.ndarray) -> pa.Array:
    text = join_text(_num(count), " times")
    text = pc.if_else(pa.array(count == 2), "twice", text)
    return pc.if_else(pa.array(count == 1), "once", text)


def _shoppers(n: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(n == 1), "1 shopper", join_text(_num(n), " shoppers"))


def ago(days: np.ndarray) -> pa.Array:
    """``"just now"``, ``"5 minutes ago"``, ``"1 hour ago"``, ``"12 days ago"`` (whole units, rounded down)."""
    days = np.maximum(np.asarray(days, dtype=np.float64), 0.0)
    unit = np.where(days >= 1, 2, np.where(days * 24 >= 1, 1, 0))
    value = np.floor(days * np.array([1440.0, 24.0, 1.0])[unit])
    names = np.array(["minute", "hour", "day"])[unit]
    text = join_text(_num(value), " ", pa.array(names), pa.array(np.where(value == 1, "", "s")), " ago")
    return pc.if_else(pa.array(value < 1), "just now", text)


def _span(days: float) -> str:
    """``"7 days"``, ``"1 day"``, ``"12 hours"``."""
    value, unit = (days, "day") if days >= 1 else (days * 24, "hour")
    return f"{value:g} {unit}{'' if value == 1 else 's'}"
