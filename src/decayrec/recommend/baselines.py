"""Baseline recommenders: popularity, decayed popularity, repeat history, co-visitation.

Each follows :mod:`decayrec.recommend.base`: ``fit(events, now)`` reads only events with
``timestamp <= now``; ``recommend(users, k, now)`` answers every requested user (unknown
users get popularity, their reason starting ``"new visitor: "``) with at most ``k`` rows,
best first, each with a short reason. ``now`` at recommendation may be later than at fit
(decayed scores move on; the events seen do not), never earlier.

:data:`decayrec.recommend.registry.BASELINES` builds any of them, and the peers in :mod:`decayrec.recommend.peers`, by name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from decayrec.decay.kernels import LN2
from decayrec.errors import InputError
from decayrec.recommend.base import BaseRecommender
from decayrec.recommend.fallback import fallback_rows, popularity
from decayrec.recommend.interactions import History, Interactions
from decayrec.recommend.output import personal_table, rec_table
from decayrec.recommend.params import COLD_START_HALF_LIFE_DAYS, check_positive, half_life_factor
from decayrec.recommend.reasons import join_text, merge_reasons
from decayrec.recommend.topk import rank_in_group, topk_sparse_rows
from decayrec.weights import EventWeights as Weights

__all__ = [
    "CoVisitation",
    "DecayedPopularity",
    "Popularity",
    "RepeatHistory",
    "UserKNN",
]


class Popularity(BaseRecommender):
    """The most engaged-with items overall: event counts weighted by type.

    Parameters
    ----------
    event_weights
        Weight per event type (:data:`~decayrec.weights.DEFAULT_EVENT_WEIGHTS`
        when None); types left out count 0.
    window_days
        Count only the events of the last ``window_days`` (None: all).
    """

    name = "popularity"

    def __init__(self, event_weights: Weights = None, window_days: float | None = None):
        self.event_weights = event_weights
        self.window_days = window_days

    def _half_life(self) -> float | None:
        return None

    def _window(self) -> float | None:
        return self.window_days

    def fit_interactions(self, ix: Interactions) -> Popularity:
        half_life, window = self._half_life(), self._window()
        check_positive("half_life_days", half_life, allow_none=True)
        check_positive("window_days", window, allow_none=True)
        self._remember(ix)
        self.popularity_ = popularity(ix, half_life, window)
        return self

    def recommend(self, users, k: int, now: datetime) -> pa.Table:
        req, codes, k, elapsed = self._start(users, k, now)
        known, cold = np.flatnonzero(codes >= 0), np.flatnonzero(codes < 0)
        parts = [
            fallback_rows(known, self.popularity_, k, elapsed, cold=False),
            fallback_rows(cold, self.popularity_, k, elapsed, cold=True),
        ]
        return rec_table(req, self.items_, parts)


class DecayedPopularity(Popularity):
    """Popularity with every event decayed to ``now``: ``sum w * 2 ** (-age / half_life_days)``.

    Parameters
    ----------
    half_life_days
        Days for an event's weight to halve.
    event_weights
        As for :class:`Popularity`.
    """

    name = "decayed_popularity"

    def __init__(self, half_life_days: float = 7.0, event_weights: Weights = None):
        self.half_life_days = half_life_days
        self.event_weights = event_weights

    def _half_life(self) -> float | None:
        return self.half_life_days

    def _window(self) -> float | None:
        return None


_FILLS: Final = ("decayed_popularity", "popularity", "none")


class RepeatHistory(BaseRecommender):
    """The user's own items, by decayed weighted count; then popular items.

    Score of item i for user u: ``S(u, i, now) = sum w * 2 ** (-age / half_life_days)``
    over u's events on i. The strong next-basket baseline for shops where people re-buy.

    Parameters
    ----------
    half_life_days
        Half-life of the user's history.
    event_weights
        As for :class:`Popularity`.
    fill
        What fills the list once the user's history runs out: ``"decayed_popularity"``
        (half-life ``fill_half_life_days``), ``"popularity"`` or ``"none"`` (short lists;
        cold-start users still get decayed popularity).
    fill_half_life_days
        Half-life of the decayed-popularity fill.
    """

    name = "repeat"

    def __init__(
        self,
        half_life_days: float = 30.0,
        event_weights: Weights = None,
        fill: Literal["decayed_popularity", "popularity", "none"] = "decayed_popularity",
        fill_half_life_days: float = 7.0,
    ):
        self.half_life_days = half_life_days
        self.event_weights = event_weights
        self.fill = fill
        self.fill_half_life_days = fill_half_life_days

    def fit_interactions(self, ix: Interactions) -> RepeatHistory:
        check_positive("half_life_days", self.half_life_days)
        check_positive("fill_half_life_days", self.fill_half_life_days)
        if self.fill not in _FILLS:
            raise InputError(f"fill must be one of {_FILLS}, got {self.fill!r}")
        self._remember(ix)
        self.history_ = ix.history
        self.scores_ = ix.matrix(self.half_life_days)
        self.fallback_ = popularity(ix, None if self.fill == "popularity" else self.fill_half_life_days)
        return self

    def recommend(self, users, k: int, now: datetime) -> pa.Table:
        req, codes, k, elapsed = self._start(users, k, now)
        factor = half_life_factor(elapsed, self.half_life_days)
        return personal_table(
            req,
            codes,
            self.items_,
            k,
            elapsed,
            main=lambda c: self.scores_[c] * factor,
            main_reason=lambda u, i: self.history_.phrase(self.history_.lookup(u, i), elapsed),
            fallback=self.fallback_,
            fill=self.fill != "none",
        )


class CoVisitation(BaseRecommender):
    """Items engaged with together: decayed co-visitation from the user's recent items.

    Two events of one user within ``window_hours`` make a pair of their items, weighted
    ``sqrt(w_a * w_b) * 2 ** (-age / half_life_days)`` (age of the later event; a user
    counts each pair of items once, at its strongest). Each event pairs with at most the
    next ``max_pairs_per_event`` events of its user, so pairs are O(events). Symmetric
    co-counts ``C`` are normalised (``"cosine"``: ``C[a, b] / sqrt(P[a] P[b])``, ``P`` the
    items' decayed weighted counts) and cut to each item's ``neighbours`` best.

    A user's anchors are their ``recent_items`` most recently touched items, weighted by
    their decayed interest ``S(u, a, now)`` with half-life ``recency_half_life_days``;
    candidate c scores ``sum over anchors a of S(u, a) * sim(a, c)``; the reason names the
    anchor contributing most. Popular items (decayed, half-life
    :data:`~decayrec.recommend.params.COLD_START_HALF_LIFE_DAYS`) fill the rest of the list.

    Parameters
    ----------
    window_hours
        Largest gap between two events that still pairs them.
    half_life_days
        Half-life of pair weights (recent co-visits count more).
    recent_items
        Anchors per user.
    recency_half_life_days
        Half-life of anchor weights.
    neighbours
        Similar items kept per item.
    max_pairs_per_event
        Later events of the same user each event pairs with, at most.
    normalization
        ``"cosine"`` or ``"none"`` (raw decayed co-counts).
    event_weights
        As for :class:`Popularity`.
    exclude_seen
        Never recommend an item the user has touched.
    """

    name = "covisit"

    def __init__(
        self,
        window_hours: float = 24.0,
        half_life_days: float = 30.0,
        recent_items: int = 20,
        recency_half_life_days: float = 7.0,
        neighbours: int = 100,
        max_pairs_per_event: int = 20,
        normalization: Literal["cosine", "none"] = "cosine",
        event_weights: Weights = None,
        exclude_seen: bool = False,
    ):
        self.window_hours = window_hours
        self.half_life_days = half_life_days
        self.recent_items = recent_items
        self.recency_half_life_days = recency_half_life_days
        self.neighbours = neighbours
        self.max_pairs_per_event = max_pairs_per_event
        self.normalization = normalization
        self.event_weights = event_weights
        self.exclude_seen = exclude_seen

    def _check(self) -> None:
        for name in ("window_hours", "half_life_days", "recency_half_life_days"):
            check_positive(name, getattr(self, name))
        for name in ("recent_items", "neighbours", "max_pairs_per_event"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if self.normalization not in ("cosine", "none"):
            raise InputError(f"normalization must be 'cosine' or 'none', got {self.normalization!r}")

    def fit_interactions(self, ix: Interactions) -> CoVisitation:
        self._check()
        self._remember(ix)
        self.history_ = ix.history
        self.fallback_ = popularity(ix, COLD_START_HALF_LIFE_DAYS)
        n = ix.n_items
        a, b, w = _pairs(ix, self.window_hours / 24.0, self.max_pairs_per_event, self.half_life_days)
        co = sp.coo_matrix((w, (a, b)), shape=(n, n)).tocsr()
        co = (co + co.T).tocsr()
        if self.normalization == "cosine" and co.nnz:
            pop = np.bincount(ix.item, ix.decayed(self.half_life_days), minlength=n)
            row = np.repeat(np.arange(n), np.diff(co.indptr))
            co.data /= np.sqrt(pop[row] * pop[co.indices])
        self.similar_ = topk_sparse_rows(co, int(self.neighbours))
        self.similar_.sort_indices()
        self.anchors_ = _anchors(ix, self.history_, int(self.recent_items), self.recency_half_life_days)
        self.seen_ = self.history_.seen(ix.n_users, n) if self.exclude_seen else None
        return self

    def recommend(self, users, k: int, now: datetime) -> pa.Table:
        req, codes, k, elapsed = self._start(users, k, now)
        factor = half_life_factor(elapsed, self.recency_half_life_days)
        if self.normalization == "none":
            factor *= half_life_factor(elapsed, self.half_life_days)
        return personal_table(
            req,
            codes,
            self.items_,
            k,
            elapsed,
            main=lambda c: (self.anchors_[c] @ self.similar_) * factor,
            main_reason=lambda u, i: self._reason(u, i, elapsed),
            fallback=self.fallback_,
            exclude=self.seen_,
        )

    def _reason(self, users: np.ndarray, items: np.ndarray, elapsed: float) -> pa.Array:
        """``"often viewed with i0042 (which you viewed 2 days ago)"``: the anchor contributing most."""
        anchors = self.anchors_[users]
        row = np.repeat(np.arange(users.size), np.diff(anchors.indptr))
        contrib = anchors.data * np.asarray(self.similar_[anchors.indices, items[row]]).ravel()
        # Every row has an anchor (its score is positive); ties go to the first, the smallest item code.
        top = np.maximum.reduceat(contrib, anchors.indptr[:-1])
        hit = np.flatnonzero(contrib == top[row])
        best = anchors.indices[hit[np.r_[True, row[hit][1:] != row[hit][:-1]]]]
        done = self.history_.participle(self.history_.lookup(users, best), elapsed)
        return join_text("often viewed with ", self.items_.decode(best), " (which you ", done, ")")


def _pairs(ix, window: float, max_lag: int, half_life: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item pairs ``(a < b)`` of each user's events within ``window`` days, one per user, at its largest weight.

    Events are sorted by (user, time); event ``e`` pairs with events ``e + 1 .. e + max_lag``
    of the same user within the window. Pairs are laid out event-major, so they arrive
    sorted by user, and one stable sort on ``(user, a, b)`` groups each user's repeats of a
    pair (timsort exploits the user runs): no Python loop over users or events.
    """
    order = np.lexsort((ix.time, ix.user))
    user, item, time, weight = ix.user[order], ix.item[order], ix.time[order], ix.weight[order]
    m, n = user.size, max(ix.n_items, 1)
    lags = min(max_lag, max(m - 1, 0))
    near = np.zeros((m, max(lags, 1)), dtype=bool)  # near[e, lag - 1]: e pairs with e + lag
    for lag in range(1, lags + 1):
        ok = (user[lag:] == user[:-lag]) & (time[lag:] - time[:-lag] <= window)
        if not ok.any():
            break  # sorted by time within a user: no pair at this lag means none further apart
        near[: m - lag, lag - 1] = ok & (item[lag:] != item[:-lag])
    i, col = np.nonzero(near)  # row-major: by event, so by user; column lag - 1
    j = i + col + 1
    a, b = item[i].astype(np.int64), item[j].astype(np.int64)
    low, high = np.minimum(a, b), np.maximum(a, b)
    w = np.sqrt(weight[i] * weight[j]) * np.exp(LN2 * time[j] / half_life)
    pair = low * n + high
    if i.size == 0:
        none = np.empty(0, dtype=np.int64)
        return none, none, w
    if (int(user[-1]) + 1) * n * n < 2**62:
        key = user[i].astype(np.int64) * (n * n) + pair
        o = np.argsort(key, kind="stable")
        key = key[o]
        start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        pair = pair[o][start]
    else:  # ids too many for one int64 key
        o = np.lexsort((pair, user[i]))
        u, p = user[i][o], pair[o]
        start = np.flatnonzero(np.r_[True, (u[1:] != u[:-1]) | (p[1:] != p[:-1])])
        pair = p[start]
    return pair // n, pair % n, np.maximum.reduceat(w[o], start)


def _anchors(ix, history: History, recent: int, half_life: float) -> sp.csr_matrix:
    """Per user the ``recent`` most recently touched items, valued by decayed interest."""
    n_pairs = len(history.pairs)
    value = np.bincount(history.event_pair, ix.decayed(half_life), minlength=n_pairs)
    users, items = history.pairs.users, history.pairs.keys
    order = np.lexsort((items, -history.last_any, users))
    keep = order[rank_in_group(users[order]) < recent]
    keep = keep[value[keep] > 0]
    matrix = sp.csr_matrix((value[keep], (users[keep], items[keep])), shape=(ix.n_users, ix.n_items))
    matrix.sort_indices()
    return matrix


class UserKNN(BaseRecommender):
    """A user's own decayed item frequencies blended with those of the most similar users (TIFU-KNN style).

    With ``r_u`` the user's event-weighted counts decayed to ``now`` (half-life
    ``half_life_days``), L2-normalised, the score of item i is
    ``alpha * r_u(i) + (1 - alpha) * mean over the neighbours v of r_v(i)``, the neighbours
    being the ``neighbours`` users with the largest cosine ``r_u . r_v``. This is the
    structure of TIFU-KNN (Hu et al., SIGIR 2020), the strong next-basket method: the
    personal part ranks the user's own re-buys, the neighbours' part brings items the user
    has not bought yet. Popular items (decayed) fill the rest of the list.

    Parameters
    ----------
    half_life_days
        Half-life of the frequencies.
    neighbours
        Similar users averaged, per user.
    alpha
        Weight of the user's own frequencies, in [0, 1].
    event_weights
        As for :class:`Popularity`.
    exclude_seen
        Never recommend an item the user has touched.
    max_pool
        Neighbours are looked for among the ``max_pool`` users with the most events (ties
        by id), so that the user-user product stays bounded on large shops.
    """

    name = "userknn"
    _BLOCK: Final = 512

    def __init__(
        self,
        half_life_days: float = 60.0,
        neighbours: int = 50,
        alpha: float = 0.7,
        event_weights: Weights = None,
        exclude_seen: bool = False,
        max_pool: int = 10_000,
    ):
        self.half_life_days = half_life_days
        self.neighbours = neighbours
        self.alpha = alpha
        self.event_weights = event_weights
        self.exclude_seen = exclude_seen
        self.max_pool = max_pool

    def fit_interactions(self, ix: Interactions) -> UserKNN:
        check_positive("half_life_days", self.half_life_days)
        if isinstance(self.neighbours, bool) or not isinstance(self.neighbours, (int, np.integer)) or self.neighbours < 1:
            raise InputError(f"neighbours must be a positive integer, got {self.neighbours!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha must lie in [0, 1], got {self.alpha!r}")
        if isinstance(self.max_pool, bool) or not isinstance(self.max_pool, (int, np.integer)) or self.max_pool < 1:
            raise InputError(f"max_pool must be a positive integer, got {self.max_pool!r}")
        self._remember(ix)
        self.history_ = ix.history
        self.fallback_ = popularity(ix, COLD_START_HALF_LIFE_DAYS)
        r = ix.matrix(self.half_life_days)
        norm = np.sqrt(np.asarray(r.multiply(r).sum(axis=1)).ravel())
        self.profiles_ = sp.csr_matrix(sp.diags(np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)) @ r)
        events = np.bincount(ix.user, minlength=ix.n_users)
        self.pool_ = np.sort(np.lexsort((np.arange(ix.n_users), -events))[: int(self.max_pool)])
        self.pool_profiles_ = self.profiles_[self.pool_]
        self.by_item_ = self.pool_profiles_.T.tocsr()
        self.seen_ = self.history_.seen(ix.n_users, ix.n_items) if self.exclude_seen else None
        return self

    def scores(self, codes: np.ndarray) -> sp.csr_matrix:
        """The blended scores of user codes ``codes`` (rows) over the catalogue, sparse."""
        codes = np.asarray(codes, dtype=np.int64)
        own = self.profiles_[codes]
        blocks = []
        for lo in range(0, codes.size, self._BLOCK):
            part = codes[lo : lo + self._BLOCK]
            sim = sp.coo_matrix(self.profiles_[part] @ self.by_item_)  # users in the block x the pool
            other = (self.pool_[sim.col] != part[sim.row]) & (sim.data > 0)  # not one's own neighbour
            sim = sp.csr_matrix((sim.data[other], (sim.row[other], sim.col[other])), shape=sim.shape)
            top = topk_sparse_rows(sim, int(self.neighbours))
            top.data[:] = 1.0 / self.neighbours  # the neighbours' plain mean, as in TIFU-KNN
            blocks.append(top @ self.pool_profiles_)
        near = sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, len(self.items_)))
        return sp.csr_matrix(self.alpha * own + (1.0 - self.alpha) * near)

    def recommend(self, users, k: int, now: datetime) -> pa.Table:
        req, codes, k, elapsed = self._start(users, k, now)
        # Every frequency decays by the same factor: the order, and so the list, does not move with time.
        return personal_table(
            req,
            codes,
            self.items_,
            k,
            elapsed,
            main=self.scores,
            main_reason=lambda u, i: self._reason(u, i, elapsed),
            fallback=self.fallback_,
            exclude=self.seen_,
        )

    def _reason(self, users: np.ndarray, items: np.ndarray, elapsed: float) -> pa.Array:
        pair = self.history_.lookup(users, items)
        return merge_reasons(
            pair >= 0,
            lambda i: self.history_.phrase(pair[i], elapsed),
            lambda i: pa.repeat(pa.scalar("shoppers who buy what you buy buy this", pa.string()), i.size),
        )


# -- the registry ---------------------------------------------------------------------------
