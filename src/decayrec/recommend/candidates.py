"""Candidate generation for the ranker: several sources, fitted on the events as of one time.

A source proposes, for each user code asked, its best items with a score and a rank:

- ``repeat``: the user's own items by decayed weighted count (:class:`RepeatHistory`);
- ``covisit``: items engaged with together with the user's recent items (:class:`CoVisitation`);
- ``userknn``: the user's own decayed frequencies blended with similar users' (TIFU-KNN style, :class:`UserKNN`);
- ``itemknn``: BM25 item neighbours of the user's items (``implicit``, the ``peers`` extra);
- ``als``: implicit-feedback ALS factors (``implicit``);
- ``sequence``: the time-aware SASRec of :mod:`decayrec.sequence` (``torch``; trained once
  and read at every cutoff, :mod:`decayrec.recommend.sequence_source`);
- ``trend``: the most engaged-with items this week in the user's top categories;
- ``new``: items first seen lately in the user's top categories;
- ``popular``: the shop's most engaged-with items this week, the same for everyone.

:class:`SourceSet` fits the sources on one event table at one time;
:meth:`SourceSet.generate` merges their proposals into :class:`Candidates`, one row per
distinct (user, item), with every source's score and rank as columns (absent: score 0,
rank ``budget + 1``). :meth:`Candidates.restrict` turns sources off or cuts budgets
afterwards without asking the sources again, which is what lets the self-configuration
try many settings on one candidate table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from decayrec.recommend.baselines import CoVisitation, RepeatHistory, UserKNN
from decayrec.recommend.features import FeatureState
from decayrec.recommend.params import half_life_factor
from decayrec.recommend.topk import rank_in_group, topk_rows, topk_sparse_rows
from decayrec.weights import EventWeights as Weights

__all__ = ["MODEL_SOURCES", "SOURCES", "Candidates", "SourceSet", "sparse_top"]

SOURCES: Final = ("repeat", "covisit", "userknn", "itemknn", "als", "trend", "new", "popular", "sequence")
# Sources that are recommenders of their own (fitted with the settings given), and so
# single sources the floor compares against.
MODEL_SOURCES: Final = ("repeat", "covisit", "userknn", "itemknn", "als", "sequence")
# Sources that need the ``implicit`` library, and torch.
IMPLICIT_SOURCES: Final = ("itemknn", "als")
TORCH_SOURCES: Final = ("sequence",)
_COL: Final = {name: j for j, name in enumerate(SOURCES)}
# Categories per user that feed the trending and new-item sources.
_TOP_CATEGORIES: Final = 5
# Cells of one dense block of candidate scores (float64: 32 MB).
_BLOCK_CELLS: Final = 1 << 22


@dataclass(frozen=True)
class Candidates:
    """Deduplicated (user, item) candidates with per-source scores and ranks.

    ``row`` indexes the users asked for (sorted, then by item); ``score`` and ``rank`` are
    ``(n, len(SOURCES))``: 0 and ``absent`` where a source did not propose the item.
    """

    row: np.ndarray
    item: np.ndarray
    score: np.ndarray
    rank: np.ndarray
    absent: float

    def __len__(self) -> int:
        return self.row.size

    def restrict(self, sources: Sequence[str], budget: int) -> tuple[Candidates, np.ndarray]:
        """Only what ``sources`` propose within their first ``budget`` places.

        Returns the restricted candidates and the indices of the rows kept (so that a
        feature matrix built for the full table can be cut the same way). The ``popular``
        source keeps its own length (it is the list's fill, not a budgeted source).
        """
        on = np.zeros(len(SOURCES), dtype=bool)
        on[[_COL[s] for s in sources]] = True
        limit = np.where(on, float(budget), -1.0)
        limit[_COL["popular"]] = np.inf if on[_COL["popular"]] else -1.0
        inside = self.rank <= limit[None, :]
        keep = np.flatnonzero(inside.any(axis=1))
        inside = inside[keep]
        score = np.where(inside, self.score[keep], 0.0)
        rank = np.where(inside, self.rank[keep], self.absent)
        return Candidates(self.row[keep], self.item[keep], score, rank, self.absent), keep


def sparse_top(matrix: sp.spmatrix, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``n`` best positive entries: ``(row, col, value)`` by row then rank, ties by column.

    Rows are scored in dense blocks with ``np.argpartition`` (:func:`topk_rows`) when the
    matrix is dense enough; a sort of every stored entry (:func:`topk_sparse_rows`) was
    20x slower on dense products.
    """
    matrix = sp.csr_matrix(matrix)
    m, n_cols = matrix.shape
    empty = np.empty(0, dtype=np.int64)
    if matrix.nnz == 0 or n < 1:
        return empty, empty, np.empty(0)
    if matrix.nnz * 16 < m * n_cols:  # sparse: sorting the stored entries is cheaper
        top = topk_sparse_rows(matrix, n).tocoo()
        keep = top.data > 0
        row, col, val = top.row[keep].astype(np.int64), top.col[keep].astype(np.int64), top.data[keep]
        order = np.lexsort((col, -val, row))
        return row[order], col[order], val[order].astype(np.float64)
    rows, cols, vals = [], [], []
    step = max(1, _BLOCK_CELLS // max(n_cols, 1))
    ramp = -1.0 - np.arange(n_cols) / max(n_cols, 1)
    for lo in range(0, m, step):
        block = matrix[lo : lo + step]
        if block.nnz == 0:
            continue
        dense = block.toarray()
        # Distinct negative fillers: argpartition degrades badly on long runs of equal values.
        np.copyto(dense, ramp[None, :], where=dense <= 0)
        r, c, v = topk_rows(dense, n)
        ok = v > 0
        rows.append(r[ok] + lo)
        cols.append(c[ok])
        vals.append(v[ok])
    if not rows:
        return empty, empty, np.empty(0)
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64), np.concatenate(vals)


def _row_normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    top = np.asarray(matrix.max(axis=1).todense()).ravel()
    scale = np.divide(1.0, top, out=np.zeros_like(top), where=top > 0)
    return sp.diags(scale) @ matrix


def build_source(name: str, params: Mapping[str, Any], event_weights: Weights):
    """An unfitted recommender for model source ``name`` with ``params``."""
    params = dict(params)
    if name == "repeat":
        return RepeatHistory(event_weights=event_weights, fill="none", **params)
    if name == "covisit":
        return CoVisitation(event_weights=event_weights, **params)
    if name == "userknn":
        return UserKNN(event_weights=event_weights, **params)
    from decayrec.recommend import peers

    if name == "itemknn":
        return peers.ImplicitItemKNN(event_weights=event_weights, **params)
    if name == "als":
        return peers.ImplicitALS(event_weights=event_weights, **params)
    if name == "sequence":
        raise ValueError("the sequence source is trained once and read at each cutoff: get it from Workspace.model")
    raise ValueError(f"{name!r} is not a model source (one of {MODEL_SOURCES})")


class SourceSet:
    """The candidate sources fitted on one event table at one time.

    Parameters
    ----------
    settings
        Keyword arguments per model source (:data:`MODEL_SOURCES`); a model source left
        out is off. ``trend``, ``new`` and ``popular`` are always available.
    event_weights
        Weight per event type, shared by every source and the features.
    new_item_days
        Items first seen this recently count as new.
    """

    def __init__(self, settings: Mapping[str, Mapping[str, Any]], event_weights: Weights = None, new_item_days: float = 14.0):
        self.settings = settings
        self.event_weights = event_weights
        self.new_item_days = new_item_days

    def fit(self, events: pa.Table, now: datetime, state: FeatureState, fitted: Mapping[str, Any] | None = None) -> SourceSet:
        """Fit every source on ``events`` as of ``now`` (``state`` is the feature state at ``now``).

        ``fitted`` may hold sources already fitted on the same events and time (reused as they are).
        """
        self.state = state
        ix = state.ix
        self.models: dict[str, Any] = {}
        for name, params in self.settings.items():
            model = (fitted or {}).get(name)
            if model is None:
                model = build_source(name, params, self.event_weights).fit_interactions(state.ix)
            if model.items_ != ix.items or model.users_ != ix.users:
                raise AssertionError(f"the {name} source disagrees on the id maps")  # same events, same weights
            self.models[name] = model
        n_cat = state.n_categories + 1
        pop7 = state.item_pop[:, 1]
        items = np.arange(ix.n_items)
        self.cat_items_ = sp.csr_matrix((pop7, (state.item_cat, items)), shape=(n_cat, ix.n_items))
        fresh = state.item_first >= -self.new_item_days
        self.new_items_ = sp.csr_matrix((pop7[fresh] + 1e-6, (state.item_cat[fresh], items[fresh])), shape=(n_cat, ix.n_items))
        self.popular_ = np.lexsort((items, -pop7))
        return self

    def user_categories(self, users: np.ndarray, elapsed: float) -> sp.csr_matrix:
        """Each user's top categories by 30-day interest, as shares (users x categories)."""
        s = self.state
        uc = s.ucat
        j = int(np.argmin(np.abs(s.scales - 30.0)))
        value = s.ucat_sums[:, j] * half_life_factor(elapsed, s.scales[j])
        full = sp.csr_matrix((value, (uc.users, uc.keys)), shape=(s.ix.n_users, s.n_categories + 1))
        block = topk_sparse_rows(full[users], _TOP_CATEGORIES)
        total = np.asarray(full[users].sum(axis=1)).ravel()
        return sp.diags(np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)) @ block

    def propose(self, name: str, users: np.ndarray, n: int, elapsed: float, exclude_seen: bool):
        """``(row, item, score)`` of one source for user codes ``users``, by row then rank."""
        if name in self.models:
            model = self.models[name]
            if name == "repeat":
                if exclude_seen:
                    empty = np.empty(0, dtype=np.int64)
                    return empty, empty, np.empty(0)
                return sparse_top(model.scores_[users] * half_life_factor(elapsed, model.half_life_days), n)
            if name == "covisit":
                factor = half_life_factor(elapsed, model.recency_half_life_days)
                block = sp.csr_matrix(model.anchors_[users] @ model.similar_) * factor
                if exclude_seen:
                    seen = self.state.history.seen(self.state.ix.n_users, self.state.ix.n_items)[users]
                    block = block - block.multiply(seen)
                    block.eliminate_zeros()
                return sparse_top(block, n)
            if name == "userknn":
                block = model.scores(users)
                if exclude_seen:
                    seen = self.state.history.seen(self.state.ix.n_users, self.state.ix.n_items)[users]
                    block = block - block.multiply(seen)
                    block.eliminate_zeros()
                return sparse_top(block, n)
            row, item, score = model.propose(users, n, elapsed, exclude_seen=exclude_seen)
            if name == "sequence":  # probabilities: lift every proposal above "absent" (0)
                return row, item, score + 1e-9
            # ALS scores can be negative: shift so every proposed item scores above "absent" (0).
            return row, item, (np.maximum(score, 0.0) + 1e-3) if name == "als" else score
        if name == "trend":
            cat_items = _row_normalise(topk_sparse_rows(self.cat_items_, n))
            return sparse_top(self.user_categories(users, elapsed) @ cat_items, n)
        if name == "new":
            new_items = _row_normalise(topk_sparse_rows(self.new_items_, n))
            return sparse_top(self.user_categories(users, elapsed) @ new_items, n)
        if name == "popular":
            top = self.popular_[:n]
            pop = self.state.item_pop[top, 1]
            return (
                np.repeat(np.arange(users.size), top.size),
                np.tile(top, users.size),
                np.tile(pop / max(pop.max(initial=0.0), 1e-12), users.size),
            )
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)

    def generate(
        self, users: np.ndarray, budget: int, n_popular: int, elapsed: float = 0.0, *, exclude_seen: bool = False
    ) -> Candidates:
        """Candidates for known user codes ``users``, ``elapsed`` days after the fit.

        Every source proposes up to ``budget`` items per user (``popular``: ``n_popular``).
        With ``exclude_seen`` no candidate is an item the user touched.
        """
        users = np.asarray(users, dtype=np.int64)
        n_items = self.state.ix.n_items
        parts = []
        for s, name in enumerate(SOURCES):
            row, item, score = self.propose(name, users, n_popular if name == "popular" else budget, elapsed, exclude_seen)
            if row.size:
                parts.append((s, row, item, score, rank_in_group(row) + 1))
        absent = float(max(budget, n_popular) + 1)
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return Candidates(empty, empty, np.zeros((0, len(SOURCES))), np.zeros((0, len(SOURCES))), absent)
        src = np.concatenate([np.full(p[1].size, p[0]) for p in parts])
        row = np.concatenate([p[1] for p in parts])
        item = np.concatenate([p[2] for p in parts])
        key = row * n_items + item
        if exclude_seen:
            pair = self.state.history.lookup(users[row], item)
            fresh = pair < 0
            src, key = src[fresh], key[fresh]
            val = np.concatenate([p[3] for p in parts])[fresh]
            rank = np.concatenate([p[4] for p in parts])[fresh]
        else:
            val = np.concatenate([p[3] for p in parts])
            rank = np.concatenate([p[4] for p in parts])
        uniq, inv = np.unique(key, return_inverse=True)
        score = np.zeros((uniq.size, len(SOURCES)))
        ranks = np.full((uniq.size, len(SOURCES)), absent)
        score[inv, src] = val
        ranks[inv, src] = rank
        return Candidates(uniq // n_items, uniq % n_items, score, ranks, absent)
