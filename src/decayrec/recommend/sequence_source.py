"""The sequence model as a candidate source of the main model: trained once, read at many cutoffs.

A source of the ranker is fitted at every cutoff its search and training use; training a
neural network at each would cost minutes apiece. :class:`SequenceSources` instead trains
the network at a few times and serves each cutoff with the latest network trained at or
before it, reading the users' events up to the cutoff: the weights never saw the cutoff's
future, so the label windows stay leak-free. A cutoff earlier than every trained network
gets a silent source (no candidates), which the ranker sees as the source being absent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from decayrec.errors import InputError
from decayrec.recommend.interactions import Interactions

__all__ = ["SequenceSources", "Silent"]


class Silent:
    """A source that proposes nothing (no network trained by this cutoff)."""

    name = "sequence"

    def __init__(self, ix: Interactions):
        self.users_, self.items_ = ix.users, ix.items

    def propose(self, users: np.ndarray, n: int, elapsed: float = 0.0, exclude_seen: bool = False):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)

    def recommend(self, users, k: int, now: datetime) -> pa.Table:
        raise InputError("no sequence model was trained by this cutoff")


class SequenceSources:
    """Sequence networks trained at chosen times on one event table, served at any later cutoff."""

    def __init__(self, events: pa.Table, params: Mapping[str, Any], log: Callable[[str], None]):
        self.events, self.params, self.log = events, dict(params), log
        self.models: dict[datetime, Any] = {}

    def fit(self, at: datetime) -> bool:
        """Train a network on the events up to ``at``; False (and a line in the log) when there are too few."""
        from decayrec.sequence import SequenceRecommender

        if at in self.models:
            return True
        try:
            model = SequenceRecommender(**self.params).fit(self.events, at)
        except InputError as exc:
            self.log(f"decayrec: no sequence source as of {at:%Y-%m-%d %H:%M} ({exc})")
            return False
        report = model.report_
        self.log(
            f"decayrec: sequence source trained on the events up to {at:%Y-%m-%d %H:%M}: {report['epochs']} epoch(s) "
            f"in {report['seconds']:.0f} s{'; ' + '; '.join(report['notes']) if report['notes'] else ''}"
        )
        self.models[at] = model
        return True

    def view(self, ix: Interactions, exclude_seen: bool = False):
        """The latest network trained at or before ``ix.now``, serving ``ix``; :class:`Silent` when none is."""
        ready = [t for t in self.models if t <= ix.now]
        if not ready:
            return Silent(ix)
        return self.models[max(ready)].at(ix, exclude_seen)
