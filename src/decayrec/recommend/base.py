"""The one contract every recommender follows (STYLE.md: one contract per role), and the base
class that does its plumbing.

``fit(events, now) -> self`` learns from events at or before ``now`` only (the caller may
pass more; a model must filter, never peek). ``recommend(users, k, now) -> pa.Table``
returns, for every requested user (unknown users included: cold start), at most ``k``
rows with columns :data:`REC_COLUMNS`, ranks starting at 1, best first.
Hyper-parameters are keyword arguments stored unchanged; learned state ends in ``_``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from decayrec.errors import DecayrecError
from decayrec.recommend.interactions import Interactions, interactions
from decayrec.recommend.params import check_k, elapsed_days, request_users

REC_COLUMNS = ("user_id", "item_id", "rank", "score", "reason")
REC_SCHEMA = pa.schema(
    [("user_id", pa.string()), ("item_id", pa.string()), ("rank", pa.int32()), ("score", pa.float64()), ("reason", pa.string())]
)


@runtime_checkable
class Recommender(Protocol):
    """What the evaluation harness, the CLI and the service call."""

    name: str

    def fit(self, events: pa.Table, now: datetime) -> Recommender: ...

    def recommend(self, users: Sequence[str], k: int, now: datetime) -> pa.Table: ...


class BaseRecommender:
    """Shared plumbing: ``fit`` through :func:`interactions`, ``repr`` from the constructor's
    keywords, the fitted check, request parsing.

    A model implements :meth:`fit_interactions`; several models fitted on the same events
    at the same time with the same event weights can share one :class:`Interactions`.
    """

    name: str = ""
    event_weights: Mapping[str, float] | None = None

    def fit(self, events: pa.Table, now: datetime):
        """Learn from the events at or before ``now`` (later rows are dropped unread)."""
        return self.fit_interactions(interactions(events, now, self.event_weights))

    def fit_interactions(self, ix: Interactions):
        """Learn from events already condensed by :func:`interactions` with this model's event weights."""
        raise NotImplementedError

    def __repr__(self) -> str:
        params = inspect.signature(type(self).__init__).parameters
        args = ", ".join(f"{p}={getattr(self, p)!r}" for p in params if p != "self")
        return f"{type(self).__name__}({args})"

    def _start(self, users, k: int, now: datetime) -> tuple[pa.Array, np.ndarray, int, float]:
        """Requested ids, their user codes (-1 = cold start), ``k`` and days since the fit."""
        if not hasattr(self, "fitted_at_"):
            raise DecayrecError(f"{type(self).__name__} is not fitted; call fit(events, now) first")
        req = request_users(users)
        k = check_k(k)
        elapsed = elapsed_days(self.fitted_at_, now)
        return req, self.users_.encode(req), k, elapsed

    def _remember(self, ix: Interactions) -> None:
        """Keep what every fitted model knows: the fit time and the id maps."""
        self.fitted_at_ = ix.now
        self.users_ = ix.users
        self.items_ = ix.items
