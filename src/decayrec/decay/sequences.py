"""The fit's data: events as (user, category) sequences of engagement points on a day axis.

:func:`prepare` cuts the events at ``now``, codes users, categories and event types, and
orders each sequence by time; :func:`truncate` keeps a subset of sequences up to a time
(for held-out windows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.decay.ids import IdMap, pair_codes
from decayrec.decay.kernels import to_days
from decayrec.decay.model import event_codes
from decayrec.errors import InputError

__all__ = ["N_TYPES", "Sequences", "prepare", "truncate"]
N_TYPES = len(schema.EVENT_TYPES)


# -- data ----------------------------------------------------------------------------
@dataclass
class Sequences:
    """Events as of ``now`` in (sequence, time) order, with everything the likelihood needs."""

    times: np.ndarray  # days since origin
    seq: np.ndarray  # sequence code (user x category)
    cat: np.ndarray  # category code per event (n_cat = unknown)
    etype: np.ndarray  # event type code
    is_point: np.ndarray  # bool: counts as an engagement point (and is not a sequence's first event)
    first: np.ndarray  # per sequence: its first event (the window opens there)
    end: np.ndarray  # per sequence: where its window closes (the user's last event, or now)
    seq_cat: np.ndarray  # per sequence: its category code
    seq_user: np.ndarray  # per sequence: its user code
    now: float
    categories: IdMap
    point_types: tuple[str, ...]
    origin: np.datetime64
    users: IdMap | None = None  # user id of each code in seq_user

    @property
    def n_seq(self) -> int:
        return self.first.size

    @property
    def n_days(self) -> int:
        return math.floor(self.now) + 1

    @property
    def n_cat(self) -> int:
        return len(self.categories) + 1  # the last code is "no category"


def prepare(
    events: pa.Table, now: datetime, point_events: tuple[str, ...] | None = None, window_end: str = "user_last_event"
) -> Sequences:
    """Sequences of (user, category) as of ``now``; events after ``now`` are never read.

    ``window_end="user_last_event"`` closes every sequence of a user at that user's last
    event: half-lives then describe how interest fades while a customer stays active, and
    a customer who left the shop (lapse, a separate model) does not read as fast decay.
    ``"now"`` keeps every window open until ``now``.
    """
    ts = events[schema.TIMESTAMP]
    if pa.types.is_timestamp(ts.type) and ts.type.tz is not None:
        ts = ts.cast(pa.timestamp("us"))
    now_naive = np.datetime64(now.astimezone(UTC).replace(tzinfo=None), "us")
    keep = pc.less_equal(ts, pa.scalar(now_naive.astype(object), pa.timestamp("us")))
    events = events.filter(keep)
    if events.num_rows < 2:
        raise InputError(
            f"only {events.num_rows} event(s) at or before {now:%Y-%m-%d %H:%M}", "give more history or a later --at"
        )
    ts = events[schema.TIMESTAMP]
    if pa.types.is_timestamp(ts.type) and ts.type.tz is not None:
        ts = ts.cast(pa.timestamp("us"))
    origin = np.datetime64(pc.min(ts).as_py(), "us")
    times = to_days(ts, origin)
    now_days = float((now_naive - origin) / np.timedelta64(1, "us")) / 86_400e6
    users = IdMap.from_values(events[schema.USER])
    cats = events[schema.CATEGORY] if schema.CATEGORY in events.column_names else pa.nulls(events.num_rows, pa.string())
    categories = IdMap.from_values(pc.drop_null(cats))
    cat = categories.encode(cats).astype(np.int64)
    cat[cat < 0] = len(categories)
    etype = event_codes(events[schema.EVENT])
    user = users.encode(events[schema.USER]).astype(np.int64)
    seq, _ = pair_codes(user, cat, len(categories) + 1)
    order = np.lexsort((times, seq))
    times, seq, cat, etype, user = times[order], seq[order], cat[order], etype[order], user[order]

    present = [schema.EVENT_TYPES[i] for i in np.unique(etype)]
    if point_events is None:
        point_events = tuple(e for e in ("view", "click") if e in present) or tuple(present)
    point_codes = np.array([schema.EVENT_TYPES.index(e) for e in point_events])
    first = np.r_[True, seq[1:] != seq[:-1]]
    starts = np.flatnonzero(first)
    n_seq = int(seq.max()) + 1
    first_time = np.full(n_seq, np.nan)
    first_time[seq[starts]] = times[starts]
    # The first event of a sequence is conditioned on (it opens the window), not predicted.
    is_point = np.isin(etype, point_codes) & (times > first_time[seq])
    seq_cat = np.zeros(n_seq, dtype=np.int64)
    seq_cat[seq[starts]] = cat[starts]
    seq_user = np.zeros(n_seq, dtype=np.int64)
    seq_user[seq[starts]] = user[starts]
    if window_end == "now":
        end = np.full(n_seq, now_days)
    else:
        user_last = np.full(len(users), -np.inf)
        np.maximum.at(user_last, user, times)
        end = np.zeros(n_seq)
        end[seq[starts]] = user_last[user[starts]]
    return Sequences(
        times=times,
        seq=seq,
        cat=cat,
        etype=etype,
        is_point=is_point,
        first=first_time,
        end=end,
        seq_cat=seq_cat,
        seq_user=seq_user,
        now=now_days,
        categories=categories,
        point_types=tuple(point_events),
        origin=origin,
        users=users,
    )


def truncate(data: Sequences, keep: np.ndarray, now: float, window_end: str) -> tuple[Sequences, np.ndarray]:
    """The same sequences (same codes) restricted to events at or before ``now``, and which have any.

    A sequence with no event by then gets an empty window (no exposure, no points).
    """
    t, s = data.times[keep], data.seq[keep]
    seen = np.zeros(data.n_seq, dtype=bool)
    first = np.zeros(data.n_seq)
    end = np.zeros(data.n_seq)
    if s.size:
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        seen[s[starts]] = True
        first[s[starts]] = t[starts]
        if window_end == "now":
            end[seen] = now
        else:  # each user's last event by then closes all of that user's sequences
            user_last = np.full(int(data.seq_user.max()) + 1, -np.inf)
            np.maximum.at(user_last, data.seq_user[s], t)
            end[seen] = user_last[data.seq_user[seen]]
    truncated = Sequences(
        times=t,
        seq=s,
        cat=data.cat[keep],
        etype=data.etype[keep],
        is_point=data.is_point[keep],
        first=first,
        end=end,
        seq_cat=data.seq_cat,
        seq_user=data.seq_user,
        now=now,
        categories=data.categories,
        point_types=data.point_types,
        origin=data.origin,
        users=data.users,
    )
    return truncated, seen
