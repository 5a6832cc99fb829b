"""Re-engagement and diversity: what to show users whose interests faded or drifted.

A user is *faded* when their last event is more than ``lapse_days`` old or their strongest
category interest (30-day half-life, moved on to the request time) is below
``min_interest``; *drifted* when ``1 - cos`` between their category-interest vectors now
and 30 days earlier exceeds ``drift_threshold``. For those users only, the ranker's list
is mixed with new and rising items from their *long-term* categories (the longest feature
half-life) and re-ordered by maximal marginal relevance over categories, so one stale
category cannot fill the list. Everyone else keeps the ranker's order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from decayrec.errors import InputError
from decayrec.recommend.params import half_life_factor
from decayrec.recommend.topk import rank_in_group, topk_sparse_rows

if TYPE_CHECKING:  # pragma: no cover
    from decayrec.recommend.candidates import Candidates
    from decayrec.recommend.features import FeatureState

__all__ = ["ReengagePolicy", "mmr_by_category"]

_LONG_TERM_CATEGORIES = 5


class ReengagePolicy:
    """Mix discovery into faded or drifted users' lists, diversified by category.

    Parameters
    ----------
    lapse_days
        Days without an event after which a user counts as faded.
    min_interest
        Below this strongest 30-day category interest a user counts as faded (one view
        60 days ago is 0.25).
    drift_threshold
        Drift (``1 - cos``, in [0, 1]) above which a user counts as drifted.
    mix
        Weight of discovery against the ranker's order, in [0, 1].
    diversity
        MMR penalty per item already chosen from the same category.
    n_discovery
        Discovery candidates per flagged user.
    """

    def __init__(
        self,
        lapse_days: float = 21.0,
        min_interest: float = 0.25,
        drift_threshold: float = 0.5,
        mix: float = 0.4,
        diversity: float = 0.15,
        n_discovery: int = 30,
    ):
        self.lapse_days = lapse_days
        self.min_interest = min_interest
        self.drift_threshold = drift_threshold
        self.mix = mix
        self.diversity = diversity
        self.n_discovery = n_discovery

    def __repr__(self) -> str:
        return (
            f"ReengagePolicy(lapse_days={self.lapse_days!r}, min_interest={self.min_interest!r}, "
            f"drift_threshold={self.drift_threshold!r}, mix={self.mix!r}, diversity={self.diversity!r}, "
            f"n_discovery={self.n_discovery!r})"
        )

    def _check(self) -> None:
        if not 0 <= self.mix <= 1:
            raise InputError(f"mix must lie in [0, 1], got {self.mix!r}")
        if not 0 <= self.drift_threshold <= 1:
            raise InputError(f"drift_threshold must lie in [0, 1], got {self.drift_threshold!r}")
        for name in ("lapse_days", "min_interest", "diversity"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name} must be non-negative, got {getattr(self, name)!r}")

    # -- who ------------------------------------------------------------------------------
    def flags(self, state: FeatureState, users: np.ndarray, elapsed: float) -> tuple[np.ndarray, np.ndarray]:
        """``(faded, drifted)`` booleans for user codes ``users`` as of ``elapsed`` days after the fit."""
        self._check()
        users = np.asarray(users, dtype=np.int64)
        idle = elapsed - state.user_last[users]
        j = int(np.argmin(np.abs(state.scales - 30.0)))
        value = state.ucat_sums[:, j] * half_life_factor(elapsed, state.scales[j])
        strongest = np.zeros(state.ix.n_users)
        np.maximum.at(strongest, state.ucat.users.astype(np.int64), value)
        faded = (idle > self.lapse_days) | (strongest[users] < self.min_interest)
        drifted = state.drift(users, elapsed) > self.drift_threshold
        return faded, drifted

    # -- what -----------------------------------------------------------------------------
    def discovery(self, state: FeatureState, users: np.ndarray, new_item_days: float) -> sp.csr_matrix:
        """New or rising items of each user's long-term categories: a (users x items) score block in [0, 1]."""
        n_cat, n_items = state.n_categories + 1, state.ix.n_items
        long_j = int(np.argmax(state.scales))
        uc = state.ucat
        full = sp.csr_matrix((state.ucat_sums[:, long_j], (uc.users, uc.keys)), shape=(state.ix.n_users, n_cat))
        block = topk_sparse_rows(full[users], _LONG_TERM_CATEGORIES)
        total = np.asarray(block.sum(axis=1)).ravel()
        block = sp.diags(np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)) @ block
        pop = state.item_pop
        momentum = (pop[:, 0] / 1.0) / (pop[:, 2] / 30.0 + 1e-9)
        fresh = state.item_first >= -new_item_days
        good = (fresh | (momentum > 1.0)) & (state.item_cat < state.n_categories)
        value = pop[:, 1] * np.where(fresh, 2.0, 1.0) * np.minimum(momentum, 4.0)
        items = np.flatnonzero(good)
        cat_items = sp.csr_matrix((value[items], (state.item_cat[items], items)), shape=(n_cat, n_items))
        cat_items = topk_sparse_rows(cat_items, self.n_discovery)
        top = np.asarray(cat_items.max(axis=1).todense()).ravel()
        cat_items = sp.diags(np.divide(1.0, top, out=np.zeros_like(top), where=top > 0)) @ cat_items
        return topk_sparse_rows(sp.csr_matrix(block @ cat_items), self.n_discovery)

    def apply(
        self,
        state: FeatureState,
        new_item_days: float,
        users: np.ndarray,
        cand: Candidates,
        score: np.ndarray,
        k: int,
        elapsed: float,
    ) -> tuple[np.ndarray, ...]:
        """Final lists: ``(row, item, score, discovery, src_score, src_rank)`` by row then rank.

        ``state`` is the ranker's feature state and ``new_item_days`` its notion of new items.
        ``row`` indexes ``users``; rows of unflagged users keep the ranker's order and scores.
        """
        n_items = state.ix.n_items
        faded, drifted = self.flags(state, users, elapsed)
        flagged = faded | drifted
        self.last_flags_ = (faded, drifted)
        n_src = cand.score.shape[1]
        absent_rank = float(cand.rank.max(initial=1.0))

        # Ranker order within each user, as a relevance in (0, 1].
        order = np.lexsort((cand.item, -score, cand.row))
        place = np.empty(order.size, dtype=np.int64)
        place[order] = rank_in_group(cand.row[order])
        size = np.bincount(cand.row, minlength=users.size)
        rel = 1.0 - place / np.maximum(size[cand.row], 1)

        fl = np.flatnonzero(flagged)
        disc = sp.coo_matrix(self.discovery(state, users[fl], new_item_days)) if fl.size else sp.coo_matrix((0, n_items))
        d_row, d_item, d_val = fl[disc.row].astype(np.int64), disc.col.astype(np.int64), disc.data

        # Candidate table plus discovery rows, deduplicated by (row, item).
        c_key = cand.row * n_items + cand.item
        d_key = d_row * n_items + d_item
        keys, inv = np.unique(np.concatenate([c_key, d_key]), return_inverse=True)
        m = keys.size
        row, item = keys // n_items, keys % n_items
        base = np.zeros(m)
        base[inv[: c_key.size]] = rel
        dval = np.zeros(m)
        dval[inv[c_key.size :]] = d_val
        raw = np.full(m, -np.inf)
        raw[inv[: c_key.size]] = score
        s_score = np.zeros((m, n_src))
        s_rank = np.full((m, n_src), absent_rank)
        s_score[inv[: c_key.size]] = cand.score
        s_rank[inv[: c_key.size]] = cand.rank

        on = flagged[row]
        out_score: list[np.ndarray] = []
        out_idx: list[np.ndarray] = []
        # Unflagged users: the ranker's top k, unchanged.
        plain = np.flatnonzero(~on & np.isfinite(raw))
        o = plain[np.lexsort((item[plain], -raw[plain], row[plain]))]
        o = o[rank_in_group(row[o]) < k]
        out_idx.append(o)
        out_score.append(raw[o])
        # Flagged users: blend, then MMR by category.
        mixed = np.flatnonzero(on)
        if mixed.size:
            value = (1.0 - self.mix) * base[mixed] + self.mix * dval[mixed]
            chosen, chosen_val = mmr_by_category(row[mixed], state.item_cat[item[mixed]], value, k, self.diversity)
            out_idx.append(mixed[chosen])
            out_score.append(chosen_val)
        idx = np.concatenate(out_idx)
        sc = np.concatenate(out_score)
        o = np.argsort(row[idx], kind="stable")  # each part is already in rank order per row
        idx, sc = idx[o], sc[o]
        out_row, out_item = row[idx], item[idx]
        discovery = dval[idx] > 0
        return out_row, out_item, sc, discovery, s_score[idx], s_rank[idx]


def mmr_by_category(
    group: np.ndarray, category: np.ndarray, value: np.ndarray, k: int, penalty: float
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximal marginal relevance per group: pick ``k`` rows, each step the best
    ``value - penalty * (items already picked from its category)``.

    ``group`` must be sorted. Vectorised over groups (``k`` passes). Returns the picked row
    indices by group then pick order, and their adjusted values (non-increasing per group).
    """
    n = group.size
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    seg = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, n]))
    pair_key = group.astype(np.int64) * (int(category.max()) + 1) + category
    _, gc = np.unique(pair_key, return_inverse=True)
    used = np.zeros(gc.max() + 1)
    taken = np.zeros(n, dtype=bool)
    picks, vals, steps = [], [], []
    for step in range(k):
        adj = value - penalty * used[gc]
        adj[taken] = -np.inf
        best = np.maximum.reduceat(adj, starts)
        live = np.isfinite(best)
        if not live.any():
            break
        hit = np.flatnonzero((adj == best[seg]) & live[seg])
        first = hit[np.r_[True, seg[hit][1:] != seg[hit][:-1]]]
        taken[first] = True
        np.add.at(used, gc[first], 1.0)
        picks.append(first)
        vals.append(adj[first])
        steps.append(np.full(first.size, step))
    pick = np.concatenate(picks)
    val = np.concatenate(vals)
    order = np.lexsort((np.concatenate(steps), group[pick]))
    return pick[order], val[order]
