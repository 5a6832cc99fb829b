"""Events as of ``now`` condensed for recommenders: the user x item matrix and each user's history.

Inside a model users and items are dense codes (:class:`~decayrec.decay.IdMap`, ids sorted,
so ties broken by code are ties broken by id); external ids appear only in the output.
Times are float64 days relative to the fit time (``<= 0``). Nothing here reads the clock.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from decayrec import schema
from decayrec.decay.ids import IdMap, PairMap
from decayrec.decay.kernels import LN2, to_days
from decayrec.decay.model import event_codes
from decayrec.decay.strength import as_utc
from decayrec.errors import InputError
from decayrec.recommend.reasons import PARTICIPLE, PHRASE, ago, by_type, join_text, times_text
from decayrec.weights import weight_table

__all__ = ["History", "Interactions", "distinct_pairs", "interactions"]


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
        verb = by_type(PHRASE, etype)
        many = join_text("you ", verb, " ", times_text(count), "; last ", ago(age))
        once = join_text("you ", verb, " ", ago(age))
        return pc.if_else(pa.array(count > 1), many, once)

    def participle(self, codes: np.ndarray, elapsed: float) -> pa.Array:
        """``"bought 12 days ago"`` for each pair code (all >= 0): the strongest type, its latest time."""
        return join_text(by_type(PARTICIPLE, self.etype[codes]), " ", ago(elapsed - self.last[codes]))


def distinct_pairs(ix: Interactions, mask: np.ndarray) -> np.ndarray:
    """Indices of one event per distinct (user, item) pair among ``mask``."""
    idx = np.flatnonzero(mask)
    combined = ix.user[idx].astype(np.int64) * max(ix.n_items, 1) + ix.item[idx]
    _, first = np.unique(combined, return_index=True)
    return idx[first]
