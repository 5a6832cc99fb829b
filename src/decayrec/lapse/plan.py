"""The re-engagement plan: for users at risk, what to do, what to show, and why.

What is estimated and what is a rule:

- **Estimated from the log**: ``p_active`` (the lapse model), each user's interest curves
  per category (decayed sums, their peaks: :func:`decayrec.decay.kernels.peak_times`),
  the items (the recommender, category popularity, new arrivals) and the user's value per
  horizon (their past spend, or active days where there are no prices).
- **Rules (settings of :class:`PlanConfig`)**: who is at risk (``P(lapse) >=
  at_risk``), what counts as a faded strong interest, the order in which actions are
  tried, and the uplift an action is assumed to have. ``expected_value = P(lapse) x
  assumed_uplift x 2 ** (-days since last visit / uplift_half_life_days) x value``: the
  uplift is an assumption, not a measured effect (that needs an experiment), and the
  plan says "none" where this expected value is below ``min_value``.

Actions, tried in order for each user at risk:

1. ``faded_reminder``: a category the user engaged with often (``>= strong_events``) whose
   interest has fallen below ``fade_ratio`` of its peak: show its popular items now
   (7-day decayed popularity), leaving out what the user already bought.
2. ``new_arrivals``: the user's long-term category (most events) has items first seen in
   the last ``new_item_days``: show the most engaged-with of them that the user has not
   touched.
3. ``reengage_recs``: the recommender's list for the user.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from decayrec import schema
from decayrec.decay.kernels import LN2, peak_times
from decayrec.decay.strength import as_utc
from decayrec.lapse.features import _PURCHASE, UserLog, user_features
from decayrec.lapse.models import _past

__all__ = ["PLAN_COLUMNS", "PlanConfig", "make_plan"]

PLAN_COLUMNS = (
    "priority",
    schema.USER,
    "risk_rank",
    "p_active",
    "action",
    schema.CATEGORY,
    "items",
    "expected_value",
    "value_unit",
    "reason",
)


class PlanConfig(BaseModel):
    """The rules of the plan (see the module doc for which numbers are estimates)."""

    model_config = ConfigDict(extra="forbid")

    at_risk: float = Field(0.5, ge=0, le=1, description="Users with P(lapse) at or above this are planned for.")
    k: int = Field(10, ge=1, description="Items per action.")
    assumed_uplift: float = Field(0.05, ge=0, le=1, description="Assumed share of lapses an action prevents.")
    uplift_half_life_days: float = Field(90.0, gt=0, description="The assumed uplift halves every this many days away.")
    min_value: float = Field(0.01, ge=0, description="Below this expected value the action is 'none'.")
    interest_half_life_days: float = Field(30.0, gt=0, description="Half-life of the category interest curves.")
    strong_events: int = Field(3, ge=1, description="Events in a category that make an interest strong.")
    fade_ratio: float = Field(0.25, gt=0, lt=1, description="Faded: interest now below this share of its peak.")
    new_item_days: float = Field(30.0, gt=0, description="Items first seen this recently are new arrivals.")
    max_users: int | None = Field(None, ge=1, description="Plan for at most this many users, riskiest first.")


def _top_items_by_category(cat: np.ndarray, item: np.ndarray, score: np.ndarray, n_cat: int, k: int) -> list[np.ndarray]:
    """For each category, its items with positive score, best ``k`` first (ties by item code)."""
    named = (cat >= 0) & (score > 0)
    pair, inv = np.unique(cat[named] * (item.max() + 1 if item.size else 1) + item[named], return_inverse=True)
    total = np.bincount(inv, score[named], minlength=pair.size)
    width = item.max() + 1 if item.size else 1
    pc_, pi = pair // width, pair % width
    order = np.lexsort((pi, -total, pc_))
    out: list[np.ndarray] = [np.array([], dtype=np.int64)] * n_cat
    bounds = np.searchsorted(pc_[order], np.arange(n_cat + 1))
    for c in np.flatnonzero(np.diff(bounds)):
        out[c] = pi[order[bounds[c] : bounds[c] + k]]
    return out


def make_plan(
    risk: pa.Table,
    events: pa.Table,
    now: datetime,
    *,
    recommender: Any | None = None,
    config: PlanConfig | None = None,
) -> pa.Table:
    """An ordered plan (highest expected value first) for the users at risk in ``risk``.

    Parameters
    ----------
    risk
        A lapse model's output (``user_id, p_active, risk_rank``), as of ``now``.
    events
        The log; only events at or before ``now`` are read.
    recommender
        A fitted recommender (``recommend(users, k, now)``) for ``reengage_recs``; without
        one that action is skipped.
    """
    cfg = config or PlanConfig()
    now = as_utc(now)
    risk = risk.filter(pc.greater_equal(pc.subtract(1.0, risk.column("p_active")), cfg.at_risk)).sort_by("risk_rank")
    if cfg.max_users is not None:
        risk = risk.slice(0, cfg.max_users)
    log = UserLog.from_events(_past(events, now), now)  # times in days since now (<= 0)
    users, items, user, item, time, cat = log.users, log.items, log.user, log.item, log.time, log.category
    n_users, n_cat = len(users), log.n_categories
    code = users.encode(risk.column(schema.USER)).astype(np.int64)
    p_lapse = 1.0 - risk.column("p_active").to_numpy()

    # The user's value: spend per week since their first event, else active days per week.
    feats = user_features(log, 0.0)
    row = np.full(n_users, -1, dtype=np.int64)
    row[feats.users] = np.arange(feats.users.size)
    weeks = np.maximum(feats.column("tenure_days") / 7.0, 1.0)
    spend = np.expm1(feats.column("log_spend"))
    if spend.sum() > 0:
        value, unit = spend / weeks, "spend per week"
    else:
        value, unit = feats.column("active_days") / weeks, "active days per week"
    away = feats.column("recency_days")[row[code]]
    value = value[row[code]]
    ev = p_lapse * cfg.assumed_uplift * np.exp(-LN2 * away / cfg.uplift_half_life_days) * value

    action = np.full(code.size, "none", dtype=object)
    chosen_cat = np.full(code.size, -1, dtype=np.int64)
    shown: list[list[str]] = [[] for _ in range(code.size)]
    reason = np.empty(code.size, dtype=object)
    planned = ev >= cfg.min_value

    if n_cat:
        named = cat >= 0
        pair, inv = np.unique(user[named] * n_cat + cat[named], return_inverse=True)
        pu, pcat = pair // n_cat, pair % n_cat
        n_ev = np.bincount(inv, minlength=pair.size)
        peak_t, peak_v = peak_times(inv, time[named], np.ones(inv.size), cfg.interest_half_life_days, 0.0, pair.size)
        now_v = np.bincount(inv, np.exp(LN2 * time[named] / cfg.interest_half_life_days), minlength=pair.size)
        faded = (n_ev >= cfg.strong_events) & (now_v < cfg.fade_ratio * peak_v)
        # Per user: the faded interest with the highest peak, and the long-term category.
        best_faded = np.full(n_users, -1, dtype=np.int64)
        fi = np.flatnonzero(faded)
        if fi.size:
            o = fi[np.lexsort((pcat[fi], -peak_v[fi], pu[fi]))]
            head = o[np.r_[True, pu[o][1:] != pu[o][:-1]]]
            best_faded[pu[head]] = head
        o = np.lexsort((pcat, -n_ev, pu))
        head = o[np.r_[True, pu[o][1:] != pu[o][:-1]]]
        long_term = np.full(n_users, -1, dtype=np.int64)
        long_term[pu[head]] = pcat[head]
        # Candidates with room for the per-user exclusions below.
        popular = _top_items_by_category(cat, item, np.exp(LN2 * time / 7.0), n_cat, 3 * cfg.k)
        first_seen = np.full(len(items), np.inf)
        np.minimum.at(first_seen, item, time)
        is_new = first_seen[item] >= -cfg.new_item_days
        new_items = _top_items_by_category(cat, item, is_new.astype(np.float64), n_cat, 3 * cfg.k)
        purchase = log.etype == _PURCHASE
        bought = sp.csr_matrix((np.ones(int(purchase.sum())), (user[purchase], item[purchase])), shape=(n_users, len(items)))
        seen = sp.csr_matrix((np.ones(user.size), (user, item)), shape=(n_users, len(items)))

        def unseen(candidates: np.ndarray, matrix: sp.csr_matrix, u: int) -> np.ndarray:
            row = matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]]
            return candidates[~np.isin(candidates, row)][: cfg.k]

        item_ids = items.ids.to_numpy(zero_copy_only=False)
        cat_ids = log.categories.ids.to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(planned):
            u = code[i]
            f = best_faded[u]
            show = unseen(popular[pcat[f]], bought, u) if f >= 0 else np.array([], dtype=np.int64)
            if show.size:
                c = pcat[f]
                action[i], chosen_cat[i] = "faded_reminder", c
                shown[i] = list(item_ids[show])
                reason[i] = (
                    f"interest in category {cat_ids[c]} peaked {-peak_t[f]:.0f} days ago "
                    f"({int(n_ev[f])} events) and is now {now_v[f] / peak_v[f]:.0%} of its peak: its popular items now"
                )
                continue
            c = long_term[u]
            show = unseen(new_items[c], seen, u) if c >= 0 else np.array([], dtype=np.int64)
            if show.size:
                action[i], chosen_cat[i] = "new_arrivals", c
                shown[i] = list(item_ids[show])
                reason[i] = f"new in category {cat_ids[c]}, where this user has the most events"
    if recommender is not None:
        rest = np.flatnonzero(planned & (action == "none"))
        if rest.size:
            recs = recommender.recommend(risk.column(schema.USER).take(pa.array(rest)), cfg.k, now)
            by_user: dict[str, tuple[list[str], str]] = {}
            for uid, iid, why in zip(
                recs.column(schema.USER).to_pylist(), recs.column(schema.ITEM).to_pylist(), recs.column("reason").to_pylist()
            ):
                entry = by_user.setdefault(uid, ([], why))
                entry[0].append(iid)
            ids = risk.column(schema.USER).to_pylist()
            for i in rest:
                got = by_user.get(ids[i])
                if got and got[0]:
                    action[i] = "reengage_recs"
                    shown[i] = got[0]
                    reason[i] = f"re-engagement picks; first: {got[1]}"
    for j in range(code.size):
        if action[j] == "none":
            reason[j] = f"expected value {ev[j]:.3g} below {cfg.min_value:g}" if not planned[j] else "nothing suitable to show"
        reason[j] = f"P(lapse) {p_lapse[j]:.2f}, away {away[j]:.0f} days; {reason[j]}"
    order = np.lexsort((risk.column("risk_rank").to_numpy(), -np.where(action != "none", ev, -1.0)))
    cat_col = log.categories.decode(chosen_cat) if n_cat else pa.nulls(code.size, pa.string())
    table = pa.table(
        {
            "priority": np.arange(1, code.size + 1),
            schema.USER: risk.column(schema.USER).take(pa.array(order)),
            "risk_rank": risk.column("risk_rank").take(pa.array(order)),
            "p_active": risk.column("p_active").take(pa.array(order)),
            "action": pa.array(action[order].tolist(), pa.string()),
            schema.CATEGORY: cat_col.take(pa.array(order)),
            "items": pa.array(["|".join(shown[i]) for i in order], pa.string()),
            "expected_value": ev[order],
            "value_unit": pa.array([unit] * code.size, pa.string()),
            "reason": pa.array(reason[order].tolist(), pa.string()),
        }
    )
    return table
