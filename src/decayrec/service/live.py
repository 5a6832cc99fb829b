"""The service's live state: multi-scale decayed interest, kept current event by event.

Three :class:`~decayrec.decay.state.DecayState` tables, at the half-lives in
:data:`SCALES`: one row per user (activity), per item (popularity) and per (user, item)
pair (interest). An accepted batch updates them in O(events); a read decays the rows it
needs to "now". Everything here can be rebuilt from the store (``LiveState.from_events``),
which is what a restart does: acknowledgement follows durability, and what is in memory is
derived. Times inside are days since a fixed origin (the epoch), so a state built in one
piece and one built batch by batch hold the same numbers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.decay.state import DecayState
from decayrec.weights import weight_table

__all__ = ["SCALES", "LiveState", "UserView"]

# Half-lives (days) of the live tables: a day, a week, a month.
SCALES = np.array([1.0, 7.0, 30.0])
# The scale that ranks a user's anchors and the shop's popular items (the week).
RANK_SCALE = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER_DAY = 86_400_000_000


def days(at: datetime) -> float:
    """Days since the epoch (the live tables' clock)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH).total_seconds() / 86_400.0


@dataclass(frozen=True)
class UserView:
    """What the live state knows about one user at a time."""

    items: list[str]  # the user's items, most interesting first
    interest: np.ndarray  # (n_items, n_scales) decayed interest at the time asked
    last_seen: np.ndarray  # days since the epoch of each item's latest event
    activity: np.ndarray  # (n_scales,) the user's decayed activity
    last_event: float  # days since the epoch of the user's latest event
    events: int


class _Ids:
    """String ids to dense codes, growing as new ids arrive."""

    def __init__(self) -> None:
        self.code: dict[str, int] = {}
        self.names: list[str] = []

    def encode(self, values: pa.Array) -> np.ndarray:
        """Codes for an array of ids, new ids appended (one dict look-up per distinct id)."""
        uniq = pc.unique(values)
        codes = np.empty(len(uniq), dtype=np.int64)
        for j, name in enumerate(uniq.to_pylist()):
            c = self.code.get(name)
            if c is None:
                c = self.code[name] = len(self.names)
                self.names.append(name)
            codes[j] = c
        return codes[pc.index_in(values, value_set=uniq).to_numpy()]


class LiveState:
    """Decayed activity, popularity and interest, current to the last accepted event.

    Readers and the one writer share a lock: an update holds it for the length of one batch's
    arithmetic (microseconds to a few milliseconds), a read for its own look-ups.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users = _Ids()
        self.items = _Ids()
        self.item_category: list[str | None] = []
        self.user_state = DecayState(SCALES)
        self.item_state = DecayState(SCALES)
        self.pair_state = DecayState(SCALES)
        self._pair_key: dict[int, int] = {}  # user_code << 32 | item_code -> pair row
        self._user_pairs: list[list[int]] = []  # pair rows of each user
        self._pair_item: list[int] = []
        self._user_events: list[int] = []
        self.events = 0
        self._weights = weight_table(None)

    @classmethod
    def from_events(cls, events: pa.Table) -> LiveState:
        state = cls()
        state.apply(events)
        return state

    # -- writing ----------------------------------------------------------------------
    def apply(self, events: pa.Table) -> None:
        """Add validated events (the store's columns) to every table."""
        if events.num_rows == 0:
            return
        ts = pc.cast(events[schema.TIMESTAMP], pa.timestamp("us")).to_numpy().astype("datetime64[us]").astype(np.int64)
        t = ts / _US_PER_DAY
        etype = pc.index_in(pc.cast(events[schema.EVENT], pa.string()), value_set=pa.array(schema.EVENT_TYPES)).to_numpy(
            zero_copy_only=False
        )
        w = self._weights[np.where(np.isnan(etype.astype(float)), -1, etype).astype(np.int64)]
        with self.lock:
            u = self.users.encode(events[schema.USER])
            i = self.items.encode(events[schema.ITEM])
            self._grow(u, i, events)
            pair = self._pairs(u, i)
            self.user_state.update_many(u, t, w)
            self.item_state.update_many(i, t, w)
            self.pair_state.update_many(pair, t, w)
            counts = np.bincount(u)
            for code in np.flatnonzero(counts):
                self._user_events[code] += int(counts[code])
            self.events += events.num_rows

    def _grow(self, u: np.ndarray, i: np.ndarray, events: pa.Table) -> None:
        while len(self._user_pairs) < len(self.users.names):
            self._user_pairs.append([])
            self._user_events.append(0)
        while len(self.item_category) < len(self.items.names):
            self.item_category.append(None)
        if schema.CATEGORY in events.column_names:
            named = np.flatnonzero(pc.is_valid(events[schema.CATEGORY]).to_numpy(zero_copy_only=False))
            if named.size:
                # The last event of the batch that names a category for an item sets it: one look-up per item.
                codes, last = np.unique(i[named][::-1], return_index=True)
                cats = events[schema.CATEGORY].take(pa.array(named[::-1][last])).to_pylist()
                for code, cat in zip(codes.tolist(), cats):
                    self.item_category[code] = cat

    def _pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        key = (u << 32) | i
        uniq, inverse = np.unique(key, return_inverse=True)
        rows = np.empty(uniq.size, dtype=np.int64)
        for j, k in enumerate(uniq.tolist()):
            row = self._pair_key.get(k)
            if row is None:
                row = self._pair_key[k] = len(self._pair_item)
                self._pair_item.append(k & 0xFFFFFFFF)
                self._user_pairs[k >> 32].append(row)
            rows[j] = row
        return rows[inverse]

    def forget(self, user_id: str) -> bool:
        """Erase a user's rows (their pairs and activity are zeroed, their id unmapped)."""
        with self.lock:
            code = self.users.code.pop(user_id, None)
            if code is None:
                return False
            rows = self._user_pairs[code]
            self.users.names[code] = ""
            # Popularity keeps no per-user trace but their share of it: take it back out.
            if rows:
                pair_rows = np.array(rows)
                items = np.array([self._pair_item[r] for r in rows])
                self._subtract_popularity(items, pair_rows)
                self.pair_state.clear(pair_rows)
                for r in rows:
                    self._pair_key.pop((code << 32) | self._pair_item[r], None)
            self.user_state.clear(np.array([code]))
            self.events -= self._user_events[code]
            self._user_events[code] = 0
            self._user_pairs[code] = []
            return True

    def _subtract_popularity(self, items: np.ndarray, pair_rows: np.ndarray) -> None:
        """Take the user's pair values out of the items' popularity (both brought to one time)."""
        t = float(max(self.item_state.last[items].max(), self.pair_state.last[pair_rows].max()))
        mine = self.pair_state.value_at(pair_rows, t)
        self.item_state.advance_keys(items, t)
        self.item_state.subtract(items, mine)

    # -- reading ----------------------------------------------------------------------
    def user(self, user_id: str, now: float) -> UserView | None:
        """The user's items and decayed interest at ``now`` (days since the epoch), or None."""
        with self.lock:
            code = self.users.code.get(user_id)
            if code is None:
                return None
            rows = np.array(self._user_pairs[code], dtype=np.int64)
            at = max(now, float(self.user_state.last[code]))
            interest = self.pair_state.value_at(rows, at)
            last_seen = self.pair_state.last[rows].copy()
            items = [self.items.names[self._pair_item[r]] for r in rows.tolist()]
            activity = self.user_state.value_at(np.array([code]), at)[0]
            last_event = float(self.user_state.last[code])
            n = self._user_events[code]
        order = np.lexsort((-last_seen, -interest[:, RANK_SCALE]))
        return UserView([items[j] for j in order], interest[order], last_seen[order], activity, last_event, n)

    def popularity(self, now: float) -> np.ndarray:
        """Every item's decayed weighted events at the rank scale, at ``now`` (index = item code)."""
        with self.lock:
            n = len(self.items.names)
            if n == 0:
                return np.zeros(0)
            keys = np.arange(n)
            at = max(now, float(self.item_state.last[:n].max()))
            return self.item_state.value_at(keys, at)[:, RANK_SCALE]

    @property
    def n_users(self) -> int:
        return len(self.users.code)

    @property
    def n_pairs(self) -> int:
        return len(self._pair_key)

    @property
    def nbytes(self) -> int:
        return self.user_state.nbytes + self.item_state.nbytes + self.pair_state.nbytes
