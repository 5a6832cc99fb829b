"""The one contract every recommender follows (STYLE.md: one contract per role).

``fit(events, now) -> self`` learns from events at or before ``now`` only (the caller may
pass more; a model must filter, never peek). ``recommend(users, k, now) -> pa.Table``
returns, for every requested user (unknown users included: cold start), at most ``k``
rows with columns :data:`REC_COLUMNS`, ranks starting at 1, best first.
Hyper-parameters are keyword arguments stored unchanged; learned state ends in ``_``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import pyarrow as pa

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
