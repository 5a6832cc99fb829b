"""The fitted decay: half-lives per category and per event type, event weights, excitation.

A :class:`DecayModel` is what ``decayrec fit-decay`` writes (DECAY.json) and what profiles,
features and the service read. It is plain data: JSON in, JSON out, no pickle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa

from decayrec import schema
from decayrec.errors import InputError
from decayrec.timeparse import iso, parse_time

FORMAT_VERSION = 1


@dataclass(frozen=True)
class HalfLife:
    """One fitted half-life in days, with its profile-likelihood 95% interval and support."""

    days: float
    low: float
    high: float
    mle: float
    events: int
    points: int


@dataclass(frozen=True)
class DecayModel:
    """Learned decay of interest.

    Attributes
    ----------
    global_half_life
        The half-life pooled over all categories (days): the fallback for unknown keys.
    by_category
        Category id -> :class:`HalfLife` (shrunk toward the pooled value when sparse).
    by_event
        Event type -> :class:`HalfLife` from the pooled model with one kernel per type.
    weights
        Event type -> relative weight of its contribution to interest (the largest is 1).
    alpha_by_category
        Category id -> excitation per unit of interest (events per day); ``alpha_global`` pools.
    point_events
        The event types treated as engagement points (the others only feed interest).
    fitted_at
        The fitting time: no event after it was read.
    user_scale
        User id -> multiplier of every half-life for that user, whose event weights are divided
        by it (``FitConfig(per_user=True)``; empty otherwise, and 1 for users not listed).
        ``user_scale_log_sd`` is its prior's spread.
    """

    global_half_life: HalfLife
    by_category: dict[str, HalfLife]
    by_event: dict[str, HalfLife]
    weights: dict[str, float]
    alpha_by_category: dict[str, float]
    alpha_global: float
    point_events: tuple[str, ...]
    fitted_at: datetime
    prior_log_sd: float = 1.0
    user_scale: dict[str, float] = field(default_factory=dict)
    user_scale_log_sd: float | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    # -- lookups used by profiles and features -------------------------------------
    def half_life_for(self, categories: pa.Array | np.ndarray | list[Any]) -> np.ndarray:
        """Half-life in days for each category id (the pooled value for null or unknown ones); vectorised."""
        return lookup(categories, {k: v.days for k, v in self.by_category.items()}, self.global_half_life.days)

    def scales_for(self, user_ids: pa.Array | np.ndarray | list[Any]) -> np.ndarray:
        """Each user's half-life multiplier (1 for unknown users or without a per-user fit); vectorised."""
        return lookup(user_ids, self.user_scale, 1.0)

    def scale_for(self, user_id: str) -> float:
        """The user's half-life multiplier (1 without a per-user fit or for an unknown user)."""
        return float(self.user_scale.get(str(user_id), 1.0))

    def without_user(self, user_id: str) -> DecayModel:
        """The same model with the user's multiplier removed (erasing a user's data)."""
        from dataclasses import replace

        return replace(self, user_scale={u: v for u, v in self.user_scale.items() if u != str(user_id)})

    def weight_for(self, events: pa.Array | np.ndarray | list[Any]) -> np.ndarray:
        """The interest weight of each event (by canonical type)."""
        table = np.array([self.weights.get(e, 0.0) for e in schema.EVENT_TYPES])
        codes = event_codes(events)
        return cast(np.ndarray, table[codes])  # numpy types fancy indexing as Any

    # -- persistence ------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        """The DECAY.json object (CONTRACT.md: ``half_life_days.by_event``, ``.by_category``, ``fitted_at``)."""
        return {
            "format_version": FORMAT_VERSION,
            "fitted_at": iso(self.fitted_at),
            "half_life_days": {
                "global": self.global_half_life.days,
                "by_event": {k: v.days for k, v in self.by_event.items()},
                "by_category": {k: v.days for k, v in self.by_category.items()},
            },
            "uncertainty": {
                "method": "profile likelihood, 95% (log-likelihood within 1.92 of its maximum)",
                "global": asdict(self.global_half_life),
                "by_event": {k: asdict(v) for k, v in self.by_event.items()},
                "by_category": {k: asdict(v) for k, v in self.by_category.items()},
            },
            "weights": self.weights,
            "alpha": {"global": self.alpha_global, "by_category": self.alpha_by_category},
            "point_events": list(self.point_events),
            "prior_log_sd": self.prior_log_sd,
            **({"user_scale": {"log_sd": self.user_scale_log_sd, "by_user": self.user_scale}} if self.user_scale else {}),
            "diagnostics": self.diagnostics,
        }

    def save(self, path: str | Path) -> None:
        from decayrec.io.outputs import write_text

        write_text(json.dumps(self.to_json_dict(), indent=2) + "\n", path)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> DecayModel:
        try:
            unc = data["uncertainty"]
            return cls(
                global_half_life=HalfLife(**unc["global"]),
                by_category={k: HalfLife(**v) for k, v in unc["by_category"].items()},
                by_event={k: HalfLife(**v) for k, v in unc["by_event"].items()},
                weights={k: float(v) for k, v in data["weights"].items()},
                alpha_by_category={k: float(v) for k, v in data["alpha"]["by_category"].items()},
                alpha_global=float(data["alpha"]["global"]),
                point_events=tuple(data["point_events"]),
                fitted_at=parse_time(data["fitted_at"], option="fitted_at"),
                prior_log_sd=float(data.get("prior_log_sd", 1.0)),
                user_scale={str(k): float(v) for k, v in data.get("user_scale", {}).get("by_user", {}).items()},
                user_scale_log_sd=data.get("user_scale", {}).get("log_sd"),
                diagnostics=data.get("diagnostics", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a DECAY.json written by decayrec fit-decay ({exc})", "re-run decayrec fit-decay") from None

    @classmethod
    def load(cls, path: str | Path) -> DecayModel:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise InputError(f"{path} does not exist", "write one with decayrec fit-decay") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not JSON ({exc})", "give the DECAY.json written by decayrec fit-decay") from None
        return cls.from_json_dict(data)


def lookup(ids: pa.Array | pa.ChunkedArray | np.ndarray | list[Any], mapping: dict[str, float], default: float) -> np.ndarray:
    """``mapping[id]`` for each id, ``default`` for ids not in it (and nulls), without a Python loop."""
    import pyarrow.compute as pc

    values = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(ids, pa.string())
    names = pa.array(list(mapping), pa.string())
    table = np.append(np.fromiter(mapping.values(), dtype=np.float64, count=len(mapping)), default)
    idx = pc.fill_null(pc.index_in(values, value_set=names), len(names)).to_numpy(zero_copy_only=False)
    return cast(np.ndarray, table[idx])  # numpy types fancy indexing as Any


def event_codes(events: pa.Array | np.ndarray | list[Any]) -> np.ndarray:
    """Canonical event type names -> their index in :data:`decayrec.schema.EVENT_TYPES`."""
    import pyarrow.compute as pc

    values = events if isinstance(events, (pa.Array, pa.ChunkedArray)) else pa.array(events, pa.string())
    if pa.types.is_dictionary(values.type):
        values = values.cast(pa.string())
    codes = pc.index_in(values, value_set=pa.array(schema.EVENT_TYPES)).to_numpy(zero_copy_only=False)
    return np.asarray(codes, dtype=np.int64)
