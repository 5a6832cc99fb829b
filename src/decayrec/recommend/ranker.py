"""The decay-aware recommender: candidates from several sources, LightGBM LambdaRank over decay features.

:class:`DecayRanker` follows :mod:`decayrec.recommend.base`. In ``fit(events, now)`` it

1. builds the candidate sources and :class:`~decayrec.recommend.features.FeatureState` on
   the events at or before ``cutoff = now - horizon_days``;
2. labels each candidate by the user's engagement in ``(cutoff, now]`` (purchase 3, cart
   or fav 2, view or click 1; the max), drops users without a positive candidate and fits
   a LambdaRank model with one group per user;
3. refits the sources and the features on every event at or before ``now``, for serving.

``recommend`` scores all requested users' candidates in one LightGBM call, optionally
re-mixes the lists of faded or drifted users (:mod:`decayrec.recommend.policy`), and
words a reason from the strongest evidence of each row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from decayrec.decay.model import DecayModel
from decayrec.decay.strength import StrengthModel, as_utc
from decayrec.errors import InputError, require
from decayrec.lgbm import eval_args, reproducible
from decayrec.recommend.baselines import CoVisitation, RepeatHistory, Weights
from decayrec.recommend.common import (
    COLD_START_HALF_LIFE_DAYS,
    BaseRecommender,
    check_positive,
    fallback_rows,
    half_life_factor,
    join_text,
    popularity,
    rank_in_group,
    rec_table,
    topk_rows,
    topk_sparse_rows,
)
from decayrec.recommend.features import FeatureState, label_grades
from decayrec.recommend.policy import ReengagePolicy

__all__ = ["DecayRanker", "SOURCES"]

SOURCES: Final = ("repeat", "covisit", "als", "trend", "new", "popular")
_REPEAT, _COVISIT, _ALS, _TREND, _NEW, _POPULAR = range(len(SOURCES))
# Categories per user that feed the trending and new-item sources.
_TOP_CATEGORIES: Final = 5
# Cells of one dense block of candidate scores (float64: 32 MB).
_BLOCK_CELLS: Final = 1 << 22
# Fewer held-out groups than this make early stopping noise: train all trees instead.
_MIN_STOPPING_GROUPS: Final = 50


@dataclass(frozen=True)
class Candidates:
    """Deduplicated (user, item) candidates with per-source scores and ranks.

    ``row`` indexes the users asked for, sorted; ``score`` and ``rank`` are
    ``(n, len(SOURCES))``: 0 and ``n_per_source + 1`` where a source did not propose.
    """

    row: np.ndarray
    item: np.ndarray
    score: np.ndarray
    rank: np.ndarray


def _sparse_top(matrix: sp.spmatrix, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``n`` best positive entries: ``(row, col, value, rank from 1)``, ties by column.

    Rows are scored in dense blocks with ``np.argpartition`` (:func:`topk_rows`): a sort
    of every stored entry (:func:`topk_sparse_rows`) was 20x slower on dense products.
    """
    matrix = sp.csr_matrix(matrix)
    m, n_cols = matrix.shape
    if matrix.nnz * 16 < m * n_cols:  # sparse: sorting the stored entries is cheaper
        top = topk_sparse_rows(matrix, n).tocoo()
        keep = top.data > 0
        row, col, val = top.row[keep].astype(np.int64), top.col[keep].astype(np.int64), top.data[keep]
        order = np.lexsort((col, -val, row))
        row, col, val = row[order], col[order], val[order]
        return row, col, val, rank_in_group(row) + 1
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
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0), empty
    row = np.concatenate(rows).astype(np.int64)
    return row, np.concatenate(cols).astype(np.int64), np.concatenate(vals), rank_in_group(row) + 1


def _row_normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    top = np.asarray(matrix.max(axis=1).todense()).ravel()
    scale = np.divide(1.0, top, out=np.zeros_like(top), where=top > 0)
    return sp.diags(scale) @ matrix


class _Sources:
    """The candidate sources fitted on one event table at one time."""

    def __init__(self, ranker: "DecayRanker"):
        self.p = ranker

    def fit(self, events: pa.Table, now: datetime, state: FeatureState) -> "_Sources":
        p = self.p
        self.state = state
        ix = state.ix
        self.repeat = RepeatHistory(half_life_days=p.repeat_half_life_days, event_weights=p.event_weights, fill="none")
        self.repeat.fit(events, now)
        self.covisit = CoVisitation(
            window_hours=p.covisit_window_hours,
            recency_half_life_days=p.covisit_recency_half_life_days,
            event_weights=p.event_weights,
        )
        self.covisit.fit(events, now)
        for model in (self.repeat, self.covisit):
            if model.items_ != ix.items or model.users_ != ix.users:
                raise AssertionError("candidate sources disagree on the id maps")  # same events, same weights
        self.als = None
        if p.use_als:
            from decayrec.recommend.peers import ImplicitALS

            self.als = ImplicitALS(event_weights=p.event_weights, half_life_days=p.als_half_life_days, **(p.als_params or {}))
            self.als.fit(events, now)
        n_cat = state.n_categories + 1
        pop7 = state.item_pop[:, 1]
        items = np.arange(ix.n_items)
        cat_items = sp.csr_matrix((pop7, (state.item_cat, items)), shape=(n_cat, ix.n_items))
        self.trend_ = _row_normalise(topk_sparse_rows(cat_items, p.n_per_source))
        fresh = state.item_first >= -p.new_item_days
        new_items = sp.csr_matrix((pop7[fresh] + 1e-6, (state.item_cat[fresh], items[fresh])), shape=(n_cat, ix.n_items))
        self.new_ = _row_normalise(topk_sparse_rows(new_items, p.n_per_source))
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

    def generate(self, users: np.ndarray, elapsed: float, n_popular: int) -> Candidates:
        """Candidates for user codes ``users`` (all known), ``elapsed`` days after the fit."""
        p, n_items = self.p, self.state.ix.n_items
        n = p.n_per_source
        parts: list[tuple[int, tuple]] = []
        rf = half_life_factor(elapsed, p.repeat_half_life_days)
        parts.append((_REPEAT, _sparse_top(self.repeat.scores_[users] * rf, n)))
        cf = half_life_factor(elapsed, self.covisit.recency_half_life_days)
        parts.append((_COVISIT, _sparse_top((self.covisit.anchors_[users] @ self.covisit.similar_) * cf, n)))
        if self.als is not None and self.als.model_ is not None:
            m = min(n, n_items)
            ids, scores = self.als.model_.recommend(users, self.als.matrix_[users], N=m, filter_already_liked_items=False)
            ids, scores = np.asarray(ids).reshape(-1, m), np.asarray(scores).reshape(-1, m)
            row = np.repeat(np.arange(users.size), m)
            ok = ids.ravel() >= 0
            rank = np.tile(np.arange(1, m + 1), users.size)
            # ALS scores can be negative: shift so every proposed item scores above "absent" (0).
            val = scores.ravel().astype(np.float64)
            parts.append((_ALS, (row[ok], ids.ravel()[ok].astype(np.int64), np.maximum(val[ok], 0) + 1e-3, rank[ok])))
        ucats = self.user_categories(users, elapsed)
        parts.append((_TREND, _sparse_top(ucats @ self.trend_, n)))
        parts.append((_NEW, _sparse_top(ucats @ self.new_, n)))
        top = self.popular_[:n_popular]
        pop = self.state.item_pop[top, 1]
        parts.append(
            (
                _POPULAR,
                (
                    np.repeat(np.arange(users.size), top.size),
                    np.tile(top, users.size),
                    np.tile(pop / max(pop.max(initial=0.0), 1e-12), users.size),
                    np.tile(np.arange(1, top.size + 1), users.size),
                ),
            )
        )
        src = np.concatenate([np.full(part[0].size, s) for s, part in parts])
        row = np.concatenate([part[0] for _, part in parts])
        item = np.concatenate([part[1] for _, part in parts])
        val = np.concatenate([part[2] for _, part in parts])
        rank = np.concatenate([part[3] for _, part in parts])
        key = row * n_items + item
        uniq, inv = np.unique(key, return_inverse=True)
        score = np.zeros((uniq.size, len(SOURCES)))
        ranks = np.full((uniq.size, len(SOURCES)), float(max(n, n_popular) + 1))
        score[inv, src] = val
        ranks[inv, src] = rank
        return Candidates(uniq // n_items, uniq % n_items, score, ranks)


class DecayRanker(BaseRecommender):
    """Decay-aware candidates re-ranked by LightGBM LambdaRank (the ``"decayrec"`` model).

    Parameters
    ----------
    horizon_days
        Length of the label window at the end of the fit period.
    n_per_source
        Candidates each source proposes per user.
    n_popular
        Globally popular candidates per user (at least ``k`` at recommendation).
    repeat_half_life_days
        Half-life of the repeat-history source.
    covisit_window_hours
        Co-visitation window (720 h worked far better than 24 h on the simulator).
    covisit_recency_half_life_days
        Half-life of the weight of the user's recent items as co-visitation anchors; short
        (minutes) on session logs, where the last click says most about the next.
    new_item_days
        Items first seen this recently count as new.
    use_als, als_half_life_days, als_params
        Add the implicit ALS source (the ``peers`` extra), its decay and keyword arguments.
    event_weights
        Weight per event type (decayrec defaults when None).
    scales
        Half-lives of the interest features (days).
    decay, strength
        Optional fitted :class:`~decayrec.decay.DecayModel` (learned category half-lives)
        and category-level :class:`~decayrec.decay.StrengthModel`, as extra features.
    reengage
        Re-mix the lists of faded or drifted users (:class:`~decayrec.recommend.policy.ReengagePolicy`).
    policy
        The policy to use (defaults to ``ReengagePolicy()``).
    n_estimators, learning_rate, num_leaves, min_child_samples
        LightGBM settings.
    max_train_users
        Groups kept for training at most (a seeded sample beyond), shared among the windows.
    train_windows
        Label windows stacked for training: ``(now - w h, now - (w - 1) h]`` for
        ``w = 1 .. train_windows`` (``h = horizon_days``), each with features and candidates
        as of its own start. More windows give more groups where few users are active in one.
    early_stopping_rounds
        Stop adding trees when NDCG@20 on a seeded fifth of the training groups has not
        improved for this many rounds (None: always ``n_estimators`` trees). Needs at least
        250 groups; with fewer, all trees are grown on every group.
    seed, num_threads
        LightGBM seed (deterministic mode) and threads. One thread by default: on a small
        machine shared with other work, LightGBM's OpenMP threads spin and run 3x slower
        with two threads than with one.
    """

    name = "decayrec"

    def __init__(
        self,
        horizon_days: float = 7.0,
        n_per_source: int = 30,
        n_popular: int = 20,
        repeat_half_life_days: float = 30.0,
        covisit_window_hours: float = 720.0,
        covisit_recency_half_life_days: float = 7.0,
        new_item_days: float = 14.0,
        use_als: bool = False,
        als_half_life_days: float | None = 60.0,
        als_params: Mapping[str, Any] | None = None,
        event_weights: Weights = None,
        scales: tuple[float, ...] = (1.0, 7.0, 30.0, 120.0),
        decay: DecayModel | None = None,
        strength: StrengthModel | None = None,
        reengage: bool = False,
        policy: ReengagePolicy | None = None,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        max_train_users: int = 50_000,
        train_windows: int = 1,
        early_stopping_rounds: int | None = 20,
        seed: int = 0,
        num_threads: int = 1,
    ):
        self.horizon_days = horizon_days
        self.n_per_source = n_per_source
        self.n_popular = n_popular
        self.repeat_half_life_days = repeat_half_life_days
        self.covisit_window_hours = covisit_window_hours
        self.covisit_recency_half_life_days = covisit_recency_half_life_days
        self.new_item_days = new_item_days
        self.use_als = use_als
        self.als_half_life_days = als_half_life_days
        self.als_params = als_params
        self.event_weights = event_weights
        self.scales = scales
        self.decay = decay
        self.strength = strength
        self.reengage = reengage
        self.policy = policy
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.max_train_users = max_train_users
        self.train_windows = train_windows
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.num_threads = num_threads

    # -- fitting ------------------------------------------------------------------------
    def _check(self) -> None:
        positive = ("horizon_days", "repeat_half_life_days", "covisit_window_hours", "covisit_recency_half_life_days")
        for name in (*positive, "new_item_days", "learning_rate"):
            check_positive(name, getattr(self, name))
        if self.early_stopping_rounds is not None:
            value = self.early_stopping_rounds
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"early_stopping_rounds must be a positive integer or None, got {value!r}")
        names = ("n_per_source", "n_popular", "n_estimators", "num_leaves", "min_child_samples", "max_train_users", "train_windows", "num_threads")
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")

    def _state(self, events: pa.Table, now: datetime) -> FeatureState:
        return FeatureState.build(
            events, now, event_weights=self.event_weights, scales=self.scales, decay=self.decay, strength=self.strength
        )

    def _table(self, sources: _Sources, state: FeatureState, users: np.ndarray, elapsed: float, n_popular: int):
        cand = sources.generate(users, elapsed, n_popular)
        n_src = cand.score.shape[1]
        x = state.features(users[cand.row], cand.item, elapsed, extra=2 * n_src)
        x[:, x.shape[1] - 2 * n_src : x.shape[1] - n_src] = cand.score
        x[:, x.shape[1] - n_src :] = cand.rank
        return cand, x

    def _groups(self, events: pa.Table, cutoff: datetime, end: datetime, max_users: int, rng) -> tuple | None:
        """Training rows of one label window ``(cutoff, end]``: features as of ``cutoff``, grades in the window.

        Users without a positive candidate are dropped (LambdaRank learns nothing from them).
        """
        state = self._state(events, cutoff)
        if not (state.ix.n_users and state.ix.n_items):
            return None
        lu, li, grade = label_grades(events, cutoff, end, state.ix.users, state.ix.items)
        users = np.unique(lu)
        if users.size > max_users:
            users = np.sort(rng.choice(users, max_users, replace=False))
        if not users.size:
            return None
        sources = _Sources(self).fit(events, cutoff, state)
        cand, x = self._table(sources, state, users, 0.0, self.n_popular)
        n_items = state.ix.n_items
        label_key = lu * n_items + li
        cand_key = users[cand.row] * n_items + cand.item
        pos = np.minimum(np.searchsorted(label_key, cand_key), max(label_key.size - 1, 0))
        y = np.where(label_key[pos] == cand_key, grade[pos], 0)
        has = np.bincount(cand.row, y > 0, minlength=users.size) > 0
        keep = has[cand.row]
        if not keep.any():
            return None
        return x[keep], y[keep], np.bincount(cand.row[keep], minlength=users.size)[has], self._feature_names(state)

    def fit(self, events: pa.Table, now: datetime) -> "DecayRanker":
        """Train the ranker on the last ``train_windows`` label windows of the fit period, then refit the sources on all of it."""
        self._check()
        lgb = require("lightgbm", "ranker")
        now = as_utc(now)
        rng = np.random.default_rng(self.seed)
        self.model_ = None
        self.train_groups_ = self.train_rows_ = self.trees_ = 0
        parts = []
        per_window = max(1, self.max_train_users // self.train_windows)
        for w in range(1, self.train_windows + 1):
            cutoff = now - timedelta(days=w * self.horizon_days)
            part = self._groups(events, cutoff, cutoff + timedelta(days=self.horizon_days), per_window, rng)
            if part is not None:
                parts.append(part)
        if parts:
            x = np.vstack([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
            groups = np.concatenate([p[2] for p in parts])
            names = parts[0][3]
            model = lgb.LGBMRanker(
                objective="lambdarank",
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=self.min_child_samples,
                **reproducible(self.seed, self.num_threads),
            )
            fit_args: dict[str, Any] = {}
            n_stop = int(round(groups.size * 0.2)) if self.early_stopping_rounds else 0
            if n_stop >= _MIN_STOPPING_GROUPS:
                # A seeded fifth of the groups (users) decides when to stop adding trees.
                held = np.zeros(groups.size, dtype=bool)
                held[rng.choice(groups.size, n_stop, replace=False)] = True
                row_held = np.repeat(held, groups)
                fit_args = eval_args(model, x[row_held], y[row_held]) | {
                    "eval_group": [groups[held]],
                    "eval_at": [20],
                    "callbacks": [lgb.early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False)],
                }
                x, y, groups = x[~row_held], y[~row_held], groups[~held]
            model.fit(x, y, group=groups, feature_name=names, **fit_args)
            self.model_ = model
            self.trees_ = int(model.best_iteration_ or self.n_estimators) if fit_args else self.n_estimators
            self.train_groups_ = int(groups.size)
            self.train_rows_ = int(y.size)
        self.state_ = self._state(events, now)
        self._remember(self.state_.ix)
        self.sources_ = _Sources(self).fit(events, now, self.state_)
        self.fallback_ = popularity(self.state_.ix, COLD_START_HALF_LIFE_DAYS)
        self.policy_ = (self.policy or ReengagePolicy()) if self.reengage else None
        return self

    def _feature_names(self, state: FeatureState) -> list[str]:
        return state.names + [f"src_{s}" for s in SOURCES] + [f"rank_{s}" for s in SOURCES]

    @property
    def feature_names_(self) -> list[str]:
        return self._feature_names(self.state_)

    # -- serving ------------------------------------------------------------------------
    def score_candidates(self, users: np.ndarray, k: int, elapsed: float) -> tuple[Candidates, np.ndarray]:
        """Candidates of user codes ``users`` and their ranker scores (a source-score blend without a model)."""
        cand, x = self._table(self.sources_, self.state_, users, elapsed, max(self.n_popular, k))
        if self.model_ is not None:
            score = self.model_.booster_.predict(x, num_threads=self.num_threads)
        else:  # nothing to learn from (a log shorter than the horizon): sources in order
            score = -cand.rank.min(axis=1) + cand.score.sum(axis=1) * 1e-3
        return cand, np.asarray(score, dtype=np.float64)

    def recommend(self, users, k: int, now: datetime) -> pa.Table:
        req, codes, k, elapsed = self._start(users, k, now)
        known, cold = np.flatnonzero(codes >= 0), np.flatnonzero(codes < 0)
        parts = [fallback_rows(cold, self.fallback_, k, elapsed, cold=True)]
        if known.size:
            ucodes = codes[known].astype(np.int64)
            cand, score = self.score_candidates(ucodes, k, elapsed)
            if self.policy_ is not None:
                row, item, out_score, discovery, src_score, src_rank = self.policy_.apply(
                    self, ucodes, cand, score, k, elapsed
                )
            else:
                order = np.lexsort((cand.item, -score, cand.row))
                sel = order[rank_in_group(cand.row[order]) < k]
                row, item, out_score = cand.row[sel], cand.item[sel], score[sel]
                discovery, src_score, src_rank = None, cand.score[sel], cand.rank[sel]
            reason = self.reasons(ucodes[row], item, src_score, src_rank, elapsed, discovery)
            parts.append((known[row], item, out_score, reason))
        return rec_table(req, self.items_, parts)

    # -- reasons ------------------------------------------------------------------------
    def reasons(
        self,
        user: np.ndarray,
        item: np.ndarray,
        src_score: np.ndarray,
        src_rank: np.ndarray,
        elapsed: float,
        discovery: np.ndarray | None = None,
    ) -> pa.Array:
        """One sentence per row from its strongest evidence (vectorised).

        In order: a due re-buy; the user's own history; co-visitation with one of the
        user's items; a new item in a category the user shops; several items viewed in the
        category this week; trending in the category; popular now.
        """
        s = self.state_
        n = user.size
        hist = s.history
        pair = hist.lookup(user, item)
        seen = pair >= 0
        since_buy = elapsed - np.where(seen, s.pair_last_purchase[np.maximum(pair, 0)], -np.inf)
        cycle = s.item_cycle[item]
        due = seen & np.isfinite(since_buy) & np.isfinite(cycle) & (since_buy >= 0.8 * np.nan_to_num(cycle, nan=np.inf))
        cat = s.item_cat[item]
        known_cat = cat < s.n_categories
        uc = s.ucat.encode(user, cat) if len(s.ucat) else np.full(n, -1, dtype=np.int32)
        week = np.where(uc >= 0, s.ucat_week_items[np.maximum(uc, 0)], 0.0)
        shops = uc >= 0
        covisit = (src_score[:, _COVISIT] > 0) & (src_rank[:, _COVISIT] <= src_rank[:, _TREND])
        new = (src_score[:, _NEW] > 0) & known_cat & shops
        if discovery is not None:
            new |= discovery & known_cat & (s.item_first[item] >= -self.new_item_days)
        busy = known_cat & (week >= 2)
        trend = ((src_score[:, _TREND] > 0) | (discovery if discovery is not None else False)) & known_cat
        kind = np.select([due, seen, covisit, new, busy, trend], [0, 1, 2, 3, 4, 5], default=6)

        cat_name = pa.concat_arrays([s.categories.ids, pa.array([""], pa.string())])
        texts: list[tuple[np.ndarray, pa.Array]] = []

        def part(k_: int, make) -> None:
            idx = np.flatnonzero(kind == k_)
            if idx.size:
                texts.append((idx, make(idx)))

        part(0, lambda i: join_text("you bought this before; due again (", hist.phrase(pair[i], elapsed), ")"))
        part(1, lambda i: hist.phrase(pair[i], elapsed))
        part(2, lambda i: self.sources_.covisit._reason(user[i], item[i], elapsed))
        cname = lambda i: cat_name.take(pa.array(cat[i]))  # noqa: E731
        part(3, lambda i: join_text("new in ", cname(i), ", a category you shop"))
        part(
            4,
            lambda i: join_text(
                "you viewed ", pa.array(week[i].astype(np.int64)).cast(pa.string()), " items in ", cname(i), " this week"
            ),
        )
        part(5, lambda i: join_text("trending in ", cname(i)))
        part(6, lambda i: pa.repeat(pa.scalar("popular now", pa.string()), i.size))
        if not texts:
            return pa.array([], pa.string())
        idx = np.concatenate([t[0] for t in texts])
        arr = pa.concat_arrays([t[1] if isinstance(t[1], pa.Array) else t[1].combine_chunks() for t in texts])
        where = np.empty(n, dtype=np.int64)
        where[idx] = np.arange(n)
        return arr.take(pa.array(where))

