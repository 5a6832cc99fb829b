"""Training and validation data of the ranker, one label window at a time, and its LightGBM fit.

A :class:`Window` is what one label window ``(cutoff, cutoff + days]`` gives: the feature
state and candidate sources as of ``cutoff``, the users active in the window, each
candidate's features and its grade in the window (purchase 3, cart or fav 2, view or
click 1, the max; 0 = not engaged), and how many distinct items each user engaged with
(unknown items included, so that NDCG is scored against the whole truth). The same window
trains a ranker (users with a graded candidate become LambdaRank groups) and validates one
(every user counts, a user whose truth no candidate holds scores 0).

:func:`window_rows` cuts a window to one setting (sources, budget, exclusion of seen items)
without regenerating candidates; :func:`fit_lambdarank` trains on several windows.
Nothing here reads the clock or any event after a window's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.decay.kernels import to_days
from decayrec.decay.model import event_codes
from decayrec.decay.strength import as_utc
from decayrec.lgbm import eval_args, reproducible
from decayrec.recommend.candidates import SOURCES, Candidates, SourceSet
from decayrec.recommend.features import GRADES, FeatureState
from decayrec.recommend.topk import rank_in_group

__all__ = [
    "Window",
    "WindowTruth",
    "build_window",
    "feature_names",
    "fit_lambdarank",
    "group_ndcg",
    "sample_rows",
    "source_columns",
    "window_rows",
    "window_truth",
]

# Fewer held-out groups than this make early stopping noise: train all trees instead.
_MIN_STOPPING_GROUPS: Final = 50
_GRADE_TABLE: Final = np.array([GRADES[e] for e in schema.EVENT_TYPES] + [0])


def feature_names(state: FeatureState) -> list[str]:
    """The ranker's feature columns: the state's features, then each source's score and rank."""
    return state.names + [f"src_{s}" for s in SOURCES] + [f"rank_{s}" for s in SOURCES]


def source_columns(state: FeatureState, cand: Candidates, users: np.ndarray, elapsed: float = 0.0) -> np.ndarray:
    """The feature matrix (float32) of candidates ``cand`` of user codes ``users``."""
    n_src = len(SOURCES)
    x = state.features(users[cand.row], cand.item, elapsed, extra=2 * n_src)
    x[:, x.shape[1] - 2 * n_src : x.shape[1] - n_src] = cand.score
    x[:, x.shape[1] - n_src :] = cand.rank
    return x


@dataclass(frozen=True)
class WindowTruth:
    """What the users known at ``cutoff`` did in ``(cutoff, cutoff + days]``.

    ``users`` are user codes of ``state`` (sorted; a seeded sample when there were more than
    asked for); ``n_truth`` counts each one's distinct items in the window (items unknown at
    ``cutoff`` included); ``truth_key`` holds ``position * n_items + item`` of each (user,
    known item) pair with a positive grade, sorted, and ``grade`` its grade.
    """

    cutoff: datetime
    days: float
    state: FeatureState
    users: np.ndarray
    n_truth: np.ndarray
    truth_key: np.ndarray
    grade: np.ndarray

    @property
    def repeat_share(self) -> float:
        """Share of the window's truth pairs that repeat an item the user had touched before (unknown items count as new)."""
        if self.truth_key.size == 0:
            return 0.0
        n_items = max(self.state.ix.n_items, 1)
        pair = self.state.history.lookup(self.users[self.truth_key // n_items], self.truth_key % n_items)
        return float(np.count_nonzero(pair >= 0)) / max(int(self.n_truth.sum()), 1)

    def hits(self, pos: np.ndarray, item: np.ndarray) -> np.ndarray:
        """Whether each (user position, item code) is in the window's truth."""
        return self.grades(pos, item) > 0

    def grades(self, pos: np.ndarray, item: np.ndarray) -> np.ndarray:
        """The grade of each (user position, item code) in the window; 0 where it is not in the truth."""
        out = np.zeros(np.size(pos), dtype=np.int64)
        if self.truth_key.size == 0:
            return out
        key = np.asarray(pos, dtype=np.int64) * max(self.state.ix.n_items, 1) + item
        at = np.minimum(np.searchsorted(self.truth_key, key), self.truth_key.size - 1)
        match = self.truth_key[at] == key
        out[match] = self.grade[at[match]]
        return out


def window_truth(
    events: pa.Table, state: FeatureState, cutoff: datetime, days: float, *, max_users: int, seed: int
) -> WindowTruth | None:
    """The truth of ``(cutoff, cutoff + days]`` for users known in ``state`` (as of ``cutoff``); None when none is active."""
    t = to_days(events.column(schema.TIMESTAMP), as_utc(cutoff))
    inside = (t > 0) & (t <= days)
    if not inside.any() or state.ix.n_items == 0:
        return None
    window = events.filter(pa.array(inside))
    user = state.ix.users.encode(window.column(schema.USER)).astype(np.int64)
    known = user >= 0
    items = pc.dictionary_encode(window.column(schema.ITEM).cast(pa.string()))
    items = items.combine_chunks() if isinstance(items, pa.ChunkedArray) else items
    raw = items.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    n_raw = max(len(items.dictionary), 1)
    users, n_truth = np.unique(np.unique(user[known] * n_raw + raw[known]) // n_raw, return_counts=True)
    if users.size == 0:
        return None
    if users.size > max_users:
        rng = np.random.default_rng([seed, int(as_utc(cutoff).timestamp())])
        pick = np.sort(rng.choice(users.size, max_users, replace=False))
        users, n_truth = users[pick], n_truth[pick]
    grade = _GRADE_TABLE[event_codes(window.column(schema.EVENT))]
    item = state.ix.items.encode(window.column(schema.ITEM)).astype(np.int64)
    pos = np.minimum(np.searchsorted(users, user), users.size - 1)
    ok = known & (item >= 0) & (grade > 0) & (users[pos] == user)
    n_items = state.ix.n_items
    key, inv = np.unique(pos[ok] * n_items + item[ok], return_inverse=True)
    best = np.zeros(key.size, dtype=np.int64)
    np.maximum.at(best, inv, grade[ok])
    return WindowTruth(as_utc(cutoff), float(days), state, users, n_truth, key, best)


@dataclass(frozen=True)
class Window:
    """A label window's candidates for its users: features ``x`` and grades ``y`` per candidate.

    ``cand.row`` indexes ``truth.users``; ``seen`` marks candidates the user touched before the cutoff.
    """

    truth: WindowTruth
    sources: SourceSet
    cand: Candidates
    seen: np.ndarray
    x: np.ndarray
    y: np.ndarray


def build_window(truth: WindowTruth, sources: SourceSet, *, budget: int, n_popular: int) -> Window:
    """Candidates of every source of ``sources`` (``budget`` each) for the users of ``truth``, with features and grades."""
    state, users = truth.state, truth.users
    cand = sources.generate(users, budget, n_popular)
    seen = state.history.lookup(users[cand.row], cand.item) >= 0
    x = source_columns(state, cand, users)
    return Window(truth, sources, cand, seen, x, truth.grades(cand.row, cand.item))


def window_rows(
    window: Window,
    sources: Sequence[str],
    budget: int,
    exclude_seen: bool,
    users: np.ndarray | None = None,
    *,
    max_negatives: int | None = None,
    seed: int = 0,
) -> tuple[Candidates, np.ndarray, np.ndarray, np.ndarray]:
    """The window cut to one setting: ``(candidates, x, y, kept row indices)``.

    Only ``sources`` within ``budget``; with ``exclude_seen`` no item the user touched;
    with ``users`` (positions into ``window.users``, sorted) only those users' rows. With
    ``max_negatives`` the rows are for training: users without a graded candidate are
    dropped, and each keeps its graded rows and at most ``max_negatives`` others (a
    sample seeded by ``seed`` and the window), before any feature row is copied.
    """
    cand, keep = window.cand.restrict(sources, budget)
    mask = np.ones(keep.size, dtype=bool)
    if exclude_seen:
        mask &= ~window.seen[keep]
    if users is not None:
        mask &= np.isin(cand.row, users)
    sel = np.flatnonzero(mask)
    if max_negatives is not None:
        rng = np.random.default_rng([seed, int(window.truth.cutoff.timestamp())])
        sel = sel[sample_rows(cand.row[sel], window.y[keep[sel]], max_negatives, rng)]
    if sel.size < keep.size:
        keep = keep[sel]
        cand = Candidates(cand.row[sel], cand.item[sel], cand.score[sel], cand.rank[sel], cand.absent)
    n_src = len(SOURCES)
    x = window.x[keep]
    x[:, x.shape[1] - 2 * n_src : x.shape[1] - n_src] = cand.score
    x[:, x.shape[1] - n_src :] = cand.rank
    return cand, x, window.y[keep], keep


def sample_rows(row: np.ndarray, y: np.ndarray, max_negatives: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted) of the training rows kept: every graded row of a group that has one, and
    at most ``max_negatives`` of its ungraded rows, drawn at random."""
    if row.size == 0:
        return np.empty(0, dtype=np.int64)
    n = int(row.max()) + 1
    has = np.bincount(row, y > 0, minlength=n) > 0
    live = has[row]
    neg = np.flatnonzero(live & (y == 0))
    # A random key per ungraded row; it is kept when among its group's first max_negatives.
    order = neg[np.lexsort((rng.random(neg.size), row[neg]))]
    kept = order[rank_in_group(row[order]) < max_negatives]
    return np.sort(np.concatenate([np.flatnonzero(live & (y > 0)), kept]))


def group_ndcg(row: np.ndarray, item: np.ndarray, score: np.ndarray, hit: np.ndarray, n_truth: np.ndarray, k: int) -> float:
    """Mean NDCG@k over all groups ``0 .. len(n_truth) - 1`` of lists ranked by ``score`` (ties by item).

    ``hit`` marks rows in the group's truth; ``n_truth`` is each group's number of truth
    items (its ideal DCG), so groups whose truth no row holds score 0.
    """
    n = n_truth.size
    if n == 0:
        return float("nan")
    order = np.lexsort((item, -score, row))
    r, h = row[order], hit[order]
    place = rank_in_group(r)
    top = (place < k) & h
    dcg = np.bincount(r[top], 1.0 / np.log2(place[top] + 2.0), minlength=n)
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    idcg = ideal[np.clip(n_truth, 1, k) - 1]
    return float(np.mean(dcg / idcg))


@dataclass(frozen=True)
class TrainedRanker:
    """A fitted LightGBM ranker and what it was trained on."""

    model: Any
    trees: int
    groups: int
    rows: int


def fit_lambdarank(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    names: list[str],
    *,
    num_leaves: int,
    n_estimators: int,
    learning_rate: float,
    min_child_samples: int,
    early_stopping_rounds: int | None,
    max_groups: int,
    seed: int,
    num_threads: int,
    max_negatives: int | None = None,
) -> TrainedRanker | None:
    """LambdaRank on ``parts`` of ``(x, y, row)`` (``row``: group of each row, sorted); None without a positive.

    Groups without a graded row are dropped (LambdaRank learns nothing from them); at
    most ``max_groups`` are kept (seeded), and in each at most ``max_negatives`` ungraded
    rows (a seeded sample; None keeps all). With ``early_stopping_rounds``, a seeded fifth
    of the groups decides when to stop adding trees (when there are enough of them).
    """
    from decayrec.errors import require

    lgb = require("lightgbm", "ranker")
    xs, ys, sizes = [], [], []
    for x, y, row in parts:
        if not y.size:
            continue
        n = int(row.max()) + 1
        has = np.bincount(row, y > 0, minlength=n) > 0
        keep = has[row]
        if not keep.any():
            continue
        xs.append(x[keep])
        ys.append(y[keep])
        sizes.append(np.bincount(row[keep], minlength=n)[has])
    if not xs:
        return None
    y, groups = np.concatenate(ys), np.concatenate(sizes)
    rng = np.random.default_rng(seed)
    rows = np.ones(y.size, dtype=bool)
    if groups.size > max_groups:
        chosen = np.zeros(groups.size, dtype=bool)
        chosen[rng.choice(groups.size, max_groups, replace=False)] = True
        rows = np.repeat(chosen, groups)
        groups = groups[chosen]
    if max_negatives is not None:
        group = np.repeat(np.arange(groups.size), groups)
        sub = sample_rows(group, y[rows], max_negatives, rng)
        groups = np.bincount(group[sub], minlength=groups.size)
        idx = np.flatnonzero(rows)[sub]
        rows = np.zeros(y.size, dtype=bool)
        rows[idx] = True
    x = np.vstack(xs)
    if not rows.all():
        x = x[rows]
    y = y[rows]
    model = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        num_leaves=num_leaves,
        min_child_samples=min_child_samples,
        **reproducible(seed, num_threads),
    )
    fit_args: dict[str, Any] = {}
    n_stop = round(groups.size * 0.2) if early_stopping_rounds else 0
    if n_stop >= _MIN_STOPPING_GROUPS:
        held = np.zeros(groups.size, dtype=bool)
        held[rng.choice(groups.size, n_stop, replace=False)] = True
        row_held = np.repeat(held, groups)
        fit_args = eval_args(model, x[row_held], y[row_held]) | {
            "eval_group": [groups[held]],
            "eval_at": [20],
            "callbacks": [lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False)],
        }
        x, y, groups = x[~row_held], y[~row_held], groups[~held]
    model.fit(x, y, group=groups, feature_name=names, **fit_args)
    trees = int(model.best_iteration_ or n_estimators) if fit_args else n_estimators
    return TrainedRanker(model, trees, int(groups.size), int(y.size))
