"""Ranking features of (user, item) candidates, built as of a time and never reading past it.

:class:`FeatureState` condenses the events at or before ``now`` into decayed sums per
(user, item), (user, category), item and user, at several half-lives (plus the learned
per-category half-life of a :class:`~decayrec.decay.DecayModel` when one is given). Sums
are kept as of ``now``; asking ``elapsed`` days later multiplies each by
``2 ** (-elapsed / h)`` (DESIGN.md: a state moves forward exactly by its decay factor), and
recency features add ``elapsed``. :meth:`FeatureState.features` looks candidates up in
bulk: no Python loop over events or candidates.

Times inside are float64 days relative to ``now`` (``<= 0``), as in
:class:`~decayrec.recommend.interactions.Interactions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import pyarrow as pa

from decayrec import schema
from decayrec.decay.ids import IdMap, PairMap
from decayrec.decay.kernels import LN2, counts, decayed_sums, last_event_time, to_days
from decayrec.decay.model import DecayModel, event_codes
from decayrec.decay.strength import StrengthModel, as_utc
from decayrec.recommend.interactions import History, Interactions, interactions
from decayrec.recommend.params import check_positive
from decayrec.weights import weight_table

__all__ = ["DEFAULT_SCALES", "GRADES", "FeatureState", "label_grades"]

# Half-lives (days) of the interest features: intent (1 d) to taste (120 d).
DEFAULT_SCALES: Final = (1.0, 7.0, 30.0, 120.0)
# Scales of item popularity; momentum is the 1-day over the 30-day level, per day.
_POP_SCALES: Final = np.array([1.0, 7.0, 30.0])
# Graded relevance of an event type in a label window (the max over the user's events).
GRADES: Final[Mapping[str, int]] = {"view": 1, "click": 1, "cart": 2, "fav": 2, "purchase": 3}
_PURCHASE: Final = schema.EVENT_TYPES.index("purchase")
_FAR: Final = 1e4  # "days since" when there is no event: far, but finite for the trees
# The drift of a user's category interest is measured against this many days ago.
DRIFT_LAG_DAYS: Final = 30.0
_DRIFT_SCALE: Final = 30.0


def _decay(values: np.ndarray, half_lives: float | np.ndarray, elapsed: float) -> np.ndarray:
    """Sums as of the fit moved ``elapsed`` days on: times ``2 ** (-elapsed / h)`` per column."""
    if elapsed == 0.0:
        return values
    return values * np.exp(-LN2 * elapsed / np.asarray(half_lives))


def _lookup(pairs: PairMap, users: np.ndarray, keys: np.ndarray) -> np.ndarray:
    return pairs.encode(users, keys) if len(pairs) else np.full(np.size(users), -1, dtype=np.int32)


def _take(values: np.ndarray, codes: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """``values[codes]`` with ``fill`` where a code is -1 (rows of a 1-d or 2-d array)."""
    out = values[np.maximum(codes, 0)] if values.shape[0] else np.zeros((codes.size,) + values.shape[1:])
    out = np.array(out, dtype=np.float64)
    out[codes < 0] = fill
    return out


def item_categories(events: pa.Table, keep: np.ndarray | None, item_codes: np.ndarray, time: np.ndarray, n_items: int):
    """Each item's category (that of its latest event naming one) as codes; ``n_cat`` = unknown."""
    if schema.CATEGORY not in events.column_names:
        return IdMap(pa.array([], pa.string())), np.zeros(n_items, dtype=np.int64)
    col = events.column(schema.CATEGORY)
    if keep is not None:
        col = col.filter(pa.array(keep))
    col = col.cast(pa.string())
    cats = IdMap.from_values(col)
    code = cats.encode(col).astype(np.int64)
    named = code >= 0
    last = np.full(n_items, -np.inf)
    np.maximum.at(last, item_codes[named], time[named])
    item_cat = np.full(n_items, len(cats), dtype=np.int64)
    at_last = np.flatnonzero(named & (time == last[item_codes]))
    # Several events at an item's last time may name categories: take the largest code, deterministically.
    best = np.full(n_items, -1, dtype=np.int64)
    np.maximum.at(best, item_codes[at_last], code[at_last])
    item_cat[best >= 0] = best[best >= 0]
    return cats, item_cat


@dataclass(frozen=True)
class FeatureState:
    """Decayed state of every (user, item), (user, category), item and user as of ``ix.now``.

    Build with :meth:`build`; read with :meth:`features` (a float32 matrix, columns
    :attr:`names`). ``item_cat`` maps item codes to category codes (``n_categories`` =
    unknown); ``ucat`` holds the (user, category) pairs.
    """

    ix: Interactions
    history: History
    scales: np.ndarray
    categories: IdMap
    item_cat: np.ndarray
    pair_sums: np.ndarray
    pair_counts: np.ndarray
    pair_last_purchase: np.ndarray
    ucat: PairMap
    ucat_sums: np.ndarray
    ucat_last: np.ndarray
    ucat_week_items: np.ndarray
    ucat_past: np.ndarray
    ucat_learned: np.ndarray | None
    ucat_strength_sum: np.ndarray | None
    cat_half_life: np.ndarray | None
    item_pop: np.ndarray
    item_first: np.ndarray
    item_cycle: np.ndarray
    user_events: np.ndarray
    user_last: np.ndarray
    user_sums: np.ndarray
    pair_cycle: np.ndarray
    user_basket: np.ndarray
    user_repeat: np.ndarray
    strength: StrengthModel | None

    # -- building -----------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        events: pa.Table,
        now: datetime,
        *,
        event_weights: Mapping[str, float] | None = None,
        scales: Sequence[float] = DEFAULT_SCALES,
        decay: DecayModel | None = None,
        strength: StrengthModel | None = None,
    ) -> FeatureState:
        """Condense ``events`` at or before ``now`` (later rows are dropped unread).

        Parameters
        ----------
        events
            Canonical events; ``category_id`` is optional (all items then share one
            unknown category).
        now
            The as-of time.
        event_weights
            Weight per event type (decayrec defaults when None).
        scales
            Half-lives (days) of the user-item and user-category interest features.
        decay
            A fitted decay: adds the user-category interest at each category's learned
            half-life, with the decay's own event weights.
        strength
            A fitted category-level strength (needs ``decay``): adds the calibrated
            probability that the user engages with the item's category.
        """
        for h in scales:
            check_positive("scales", h)
        scales_arr = np.asarray(scales, dtype=np.float64)
        now = as_utc(now)
        ix = interactions(events, now, event_weights)
        # The rows interactions() kept, recomputed the same way to align optional columns.
        time_all = to_days(events.column(schema.TIMESTAMP), now)
        etype_all = event_codes(events.column(schema.EVENT))
        keep = (time_all <= 0.0) & (weight_table(event_weights)[etype_all] > 0)
        categories, item_cat = item_categories(events, None if keep.all() else keep, ix.item, ix.time, ix.n_items)
        n_cat = len(categories) + 1
        history = ix.history
        n_pairs = len(history.pairs)
        code = history.event_pair
        pair_sums = decayed_sums(code, ix.time, ix.weight, scales_arr, 0.0, n_pairs)
        pair_counts = counts(code, ix.etype, ix.time, 0.0, n_pairs)
        bought = ix.etype == _PURCHASE
        pair_last_purchase = last_event_time(code[bought], ix.time[bought], 0.0, n_pairs)

        ev_cat = item_cat[ix.item]
        ucat, ucode = PairMap.build(ix.user, ev_cat, n_cat)
        n_uc = len(ucat)
        ucat_sums = decayed_sums(ucode, ix.time, ix.weight, scales_arr, 0.0, n_uc)
        ucat_last = last_event_time(ucode, ix.time, 0.0, n_uc)
        ucat_past = decayed_sums(ucode, ix.time, ix.weight, [_DRIFT_SCALE], -DRIFT_LAG_DAYS, n_uc)[:, 0]
        # Distinct items touched in each (user, category) within the last 7 days.
        week = history.last_any >= -7.0
        pair_uc = _lookup(ucat, history.pairs.users, item_cat[history.pairs.keys])
        ucat_week_items = np.bincount(pair_uc[week], minlength=n_uc).astype(np.float64)

        ucat_learned = ucat_strength_sum = cat_half_life = None
        if decay is not None:
            names = pa.concat_arrays([categories.ids, pa.nulls(1, pa.string())])
            cat_half_life = decay.half_life_for(names)
            table = np.array([decay.weights.get(e, 0.0) for e in schema.EVENT_TYPES] + [0.0])
            w = table[ix.etype]
            ucat_learned = np.bincount(ucode, w * np.exp(LN2 * ix.time / cat_half_life[ev_cat]), minlength=n_uc)
            if strength is not None:
                ucat_strength_sum = ucat_learned
        elif strength is not None:
            raise ValueError("a strength model needs the decay model it was fitted with; pass decay= too")

        n_items = ix.n_items
        item_pop = decayed_sums(ix.item, ix.time, ix.weight, _POP_SCALES, 0.0, n_items)
        item_first = np.full(n_items, np.inf)
        np.minimum.at(item_first, ix.item, ix.time)
        item_cycle, pair_cycle = _rebuy_cycles(history, ix, pair_last_purchase)
        user_basket, user_repeat = _user_habits(history, ix)
        user_events = np.bincount(ix.user, minlength=ix.n_users).astype(np.float64)
        user_last = last_event_time(ix.user, ix.time, 0.0, ix.n_users)
        user_sums = decayed_sums(ix.user, ix.time, ix.weight, [7.0, 30.0], 0.0, ix.n_users)
        return cls(
            ix=ix,
            history=history,
            scales=scales_arr,
            categories=categories,
            item_cat=item_cat,
            pair_sums=pair_sums,
            pair_counts=pair_counts,
            pair_last_purchase=pair_last_purchase,
            ucat=ucat,
            ucat_sums=ucat_sums,
            ucat_last=ucat_last,
            ucat_week_items=ucat_week_items,
            ucat_past=ucat_past,
            ucat_learned=ucat_learned,
            ucat_strength_sum=ucat_strength_sum,
            cat_half_life=cat_half_life,
            item_pop=item_pop,
            item_first=item_first,
            item_cycle=item_cycle,
            user_events=user_events,
            user_last=user_last,
            user_sums=user_sums,
            pair_cycle=pair_cycle,
            user_basket=user_basket,
            user_repeat=user_repeat,
            strength=strength,
        )

    # -- reading ------------------------------------------------------------------------
    @property
    def n_categories(self) -> int:
        """Known categories; code ``n_categories`` is the unknown one."""
        return len(self.categories)

    @property
    def names(self) -> list[str]:
        """Feature names, in the column order of :meth:`features`."""
        s = [f"{h:g}d" for h in self.scales]
        out = [f"ui_{x}" for x in s] + [f"n_{e}" for e in schema.EVENT_TYPES]
        out += ["ui_days_since", "ui_days_since_purchase", "ui_due_ratio", "ui_cycle", "ui_due"]
        out += [f"uc_{x}" for x in s] + [f"uc_share_{s[-2]}", "uc_days_since", "uc_week_items"]
        if self.ucat_learned is not None:
            out.append("uc_learned")
        if self.ucat_strength_sum is not None:
            out.append("uc_strength")
        out += ["pop_1d", "pop_7d", "pop_30d", "momentum", "item_age", "item_cycle", "cat_pop_share"]
        out += ["u_events", "u_days_since", "u_7d", "u_30d", "u_basket", "u_repeat"]
        return out

    def category_interest(self, user: np.ndarray, cat: np.ndarray, elapsed: float = 0.0) -> np.ndarray:
        """``(n, n_scales)`` decayed interest of each user in each category."""
        code = _lookup(self.ucat, user, cat)
        return _decay(_take(self.ucat_sums, code), self.scales, elapsed)

    def features(self, user: np.ndarray, item: np.ndarray, elapsed: float = 0.0, extra: int = 0) -> np.ndarray:
        """Features of (user code, item code) pairs ``elapsed`` days after ``now``: float32 ``(n, len(names))``.

        ``extra`` appends that many uninitialised columns, for the caller's own features.
        """
        user = np.asarray(user, dtype=np.int64)
        item = np.asarray(item, dtype=np.int64)
        cols: list[np.ndarray] = []
        pc_ = _lookup(self.history.pairs, user, item)
        cols.append(_decay(_take(self.pair_sums, pc_), self.scales, elapsed))
        cols.append(_take(self.pair_counts.astype(np.float64), pc_))
        since = elapsed - _take(self.history.last_any, pc_, -np.inf)
        since_buy = elapsed - _take(self.pair_last_purchase, pc_, -np.inf)
        cycle = self.item_cycle[item]
        due = np.where(np.isfinite(since_buy) & np.isfinite(cycle), since_buy / cycle, np.nan)
        own_cycle = _take(self.pair_cycle, pc_, np.nan)
        own_due = np.where(np.isfinite(since_buy) & np.isfinite(own_cycle), since_buy / own_cycle, np.nan)
        cols += [np.minimum(since, _FAR)[:, None], np.minimum(since_buy, _FAR)[:, None], due[:, None]]
        cols += [own_cycle[:, None], own_due[:, None]]

        cat = self.item_cat[item]
        uc = _lookup(self.ucat, user, cat)
        uc_sums = _decay(_take(self.ucat_sums, uc), self.scales, elapsed)
        total = _decay(self.user_sums[user, 1], 30.0, elapsed)
        j30 = len(self.scales) - 2
        share = uc_sums[:, j30] / np.maximum(total, 1e-12) if len(self.scales) >= 2 else uc_sums[:, 0]
        cols += [uc_sums, share[:, None]]
        cols.append(np.minimum(elapsed - _take(self.ucat_last, uc, -np.inf), _FAR)[:, None])
        cols.append(_take(self.ucat_week_items, uc)[:, None])  # a count as of the fit: not moved on
        if self.ucat_learned is not None:
            assert self.cat_half_life is not None  # built together with ucat_learned (from_events)
            learned = _take(self.ucat_learned, uc) * np.exp(-LN2 * elapsed / self.cat_half_life[cat])
            cols.append(learned[:, None])
            if self.ucat_strength_sum is not None:
                assert self.strength is not None  # ucat_strength_sum is set only with a strength model
                cols.append(self.strength.predict(learned)[:, None])

        pop = _decay(self.item_pop[item], _POP_SCALES, elapsed)
        momentum = (pop[:, 0] / _POP_SCALES[0]) / (pop[:, 2] / _POP_SCALES[2] + 1e-9)
        cat_pop = np.bincount(self.item_cat, self.item_pop[:, 1], minlength=self.n_categories + 1)
        cols += [pop, momentum[:, None], (elapsed - self.item_first[item])[:, None], cycle[:, None]]
        cols.append((self.item_pop[item, 1] / np.maximum(cat_pop[cat], 1e-12))[:, None])

        cols.append(self.user_events[user][:, None])
        cols.append(np.minimum(elapsed - self.user_last[user], _FAR)[:, None])
        cols.append(_decay(self.user_sums[user], np.array([7.0, 30.0]), elapsed))
        cols += [self.user_basket[user][:, None], self.user_repeat[user][:, None]]
        blocks = [c.reshape(user.size, -1) for c in cols]
        out = np.empty((user.size, sum(b.shape[1] for b in blocks) + extra), dtype=np.float32, order="F")
        at = 0
        for b in blocks:  # column by column into one float32 array: no float64 copy of the whole table
            out[:, at : at + b.shape[1]] = b
            at += b.shape[1]
        return out

    def drift(self, user: np.ndarray, elapsed: float = 0.0) -> np.ndarray:
        """``1 - cos`` between each user's category interest now and :data:`DRIFT_LAG_DAYS` earlier (30-day half-life).

        Both vectors are taken at the fit time (``elapsed`` scales one common factor out
        of the cosine); users without interest then score 0.
        """
        j = int(np.argmin(np.abs(self.scales - _DRIFT_SCALE)))
        now_v, past_v = self.ucat_sums[:, j], self.ucat_past
        if self.scales[j] != _DRIFT_SCALE:
            now_v = decayed_sums(*self._ucat_events(), [_DRIFT_SCALE], 0.0, len(self.ucat))[:, 0]
        owner = self.ucat.users.astype(np.int64)
        n = self.ix.n_users
        dot = np.bincount(owner, now_v * past_v, minlength=n)
        norm = np.sqrt(np.bincount(owner, now_v**2, minlength=n) * np.bincount(owner, past_v**2, minlength=n))
        cos = np.divide(dot, norm, out=np.ones(n), where=norm > 0)
        return 1.0 - cos[user]

    def _ucat_events(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        code = self.ucat.encode(self.ix.user, self.item_cat[self.ix.item])
        return code, self.ix.time, self.ix.weight


# Pseudo-gaps of the item's typical cycle that a user's own re-buy cycle is shrunk toward.
_CYCLE_PRIOR: Final = 2.0


def _rebuy_cycles(history: History, ix: Interactions, last_purchase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-buy cycles in days: per item the mean gap between a user's successive purchases of it
    (NaN without re-buys), and per (user, item) pair the user's own mean gap shrunk toward the
    item's (``_CYCLE_PRIOR`` pseudo-gaps of it; NaN where neither is known).

    Purchases closer than a day apart count as one basket, not a re-buy.
    """
    bought = np.flatnonzero(ix.etype == _PURCHASE)
    pair = history.event_pair[bought].astype(np.int64)
    time = ix.time[bought]
    order = np.lexsort((time, pair))
    pair, time = pair[order], time[order]
    same = pair[1:] == pair[:-1]
    gap = time[1:] - time[:-1]
    ok = same & (gap >= 1.0)
    gap_pair = pair[1:][ok]
    item = history.pairs.keys[gap_pair]
    n = ix.n_items
    total = np.bincount(item, gap[ok], minlength=n)
    num = np.bincount(item, minlength=n)
    item_cycle = np.divide(total, num, out=np.full(n, np.nan), where=num > 0)
    n_pairs = len(history.pairs)
    own_total = np.bincount(gap_pair, gap[ok], minlength=n_pairs)
    own_num = np.bincount(gap_pair, minlength=n_pairs).astype(np.float64)
    prior = item_cycle[history.pairs.keys] if n_pairs else np.zeros(0)
    known = np.isfinite(prior)
    top = own_total + np.where(known, _CYCLE_PRIOR * np.nan_to_num(prior), 0.0)
    bottom = own_num + np.where(known, _CYCLE_PRIOR, 0.0)
    pair_cycle = np.divide(top, bottom, out=np.full(n_pairs, np.nan), where=bottom > 0)
    return item_cycle, pair_cycle


def _user_habits(history: History, ix: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Per user: distinct items per active day (a basket's size), and the share of their items they came back to on another day."""
    day = np.floor(ix.time).astype(np.int64)
    span = int(day.max() - day.min()) + 1 if day.size else 1
    d = day - (day.min() if day.size else 0)
    user_days = np.unique(ix.user.astype(np.int64) * span + d)
    pair_days = np.unique(history.event_pair.astype(np.int64) * span + d)
    n_users = ix.n_users
    days = np.bincount(user_days // span, minlength=n_users).astype(np.float64)
    pair_of = pair_days // span
    owner = history.pairs.users.astype(np.int64)
    item_days = np.bincount(owner[pair_of], minlength=n_users).astype(np.float64)
    basket = np.divide(item_days, days, out=np.zeros(n_users), where=days > 0)
    per_pair = np.bincount(pair_of, minlength=len(history.pairs))
    again = np.bincount(owner, per_pair > 1, minlength=n_users).astype(np.float64)
    pairs = np.bincount(owner, minlength=n_users).astype(np.float64)
    return basket, np.divide(again, pairs, out=np.zeros(n_users), where=pairs > 0)


def label_grades(
    events: pa.Table, start: datetime, end: datetime, users: IdMap, items: IdMap
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Graded engagement in ``(start, end]``: ``(user code, item code, grade)``, one row per pair, the max grade.

    Pairs whose user or item is unknown to the maps are dropped (they cannot be candidates).
    """
    t = to_days(events.column(schema.TIMESTAMP), as_utc(start))
    span = (as_utc(end) - as_utc(start)).total_seconds() / 86_400
    inside = (t > 0) & (t <= span)
    window = events.filter(pa.array(inside)) if not inside.all() else events
    grade_table = np.array([GRADES[e] for e in schema.EVENT_TYPES] + [0])
    grade = grade_table[event_codes(window.column(schema.EVENT))]
    user = users.encode(window.column(schema.USER)).astype(np.int64)
    item = items.encode(window.column(schema.ITEM)).astype(np.int64)
    ok = (user >= 0) & (item >= 0) & (grade > 0)
    key = user[ok] * max(len(items), 1) + item[ok]
    uniq, inv = np.unique(key, return_inverse=True)
    best = np.zeros(uniq.size, dtype=np.int64)
    np.maximum.at(best, inv, grade[ok])
    n = max(len(items), 1)
    return uniq // n, uniq % n, best
