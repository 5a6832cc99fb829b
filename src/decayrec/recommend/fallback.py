"""Popularity fallbacks: decayed, windowed or all-time popular items, for cold-start users and short lists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec.recommend.interactions import Interactions, distinct_pairs
from decayrec.recommend.params import half_life_factor
from decayrec.recommend.reasons import COLD_PREFIX, join_text, shoppers_text, span_text

__all__ = ["Fallback", "fallback_rows", "popularity"]


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
    first = distinct_pairs(ix, np.ones(ix.user.size, dtype=bool))
    shoppers = np.bincount(ix.item[first], minlength=n)
    span_days = half_life_days if window_days is None else window_days
    if span_days is None:
        reason = join_text("popular overall (", shoppers_text(shoppers), ")")
    else:
        recent = distinct_pairs(ix, ix.time >= -span_days)
        lately = np.bincount(ix.item[recent], minlength=n)
        span = span_text(span_days)
        live = join_text("popular lately (", shoppers_text(lately), f" in the last {span})")
        faded = join_text("popular earlier (", shoppers_text(shoppers), f", none in the last {span})")
        reason = pc.if_else(pa.array(lately > 0), live, faded)
    return Fallback(score=score, order=order, reason=reason, half_life_days=half_life_days)


def fallback_rows(
    pos: np.ndarray, fallback: Fallback, k: int, elapsed: float, *, cold: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """The same top-``k`` popular items for each position in ``pos``; ``cold`` marks the reason."""
    top = fallback.order[:k]
    reason = fallback.reason.take(pa.array(top))
    if cold:
        reason = join_text(COLD_PREFIX, reason)
    rows = np.repeat(np.asarray(pos, dtype=np.int64), top.size)
    items = np.tile(top, len(pos))
    score = np.tile(fallback.scores(elapsed)[top], len(pos))
    return rows, items, score, reason.take(pa.array(np.tile(np.arange(top.size), len(pos))))
