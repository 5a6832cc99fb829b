"""Parameter and request checks every recommender shares: positive numbers, ``k``, requested users, elapsed time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec.decay.kernels import LN2
from decayrec.decay.strength import as_utc
from decayrec.errors import InputError
from decayrec.timeparse import iso

__all__ = ["COLD_START_HALF_LIFE_DAYS", "check_k", "check_positive", "elapsed_days", "half_life_factor", "request_users"]
# Models without a popularity of their own answer cold-start users with this one.
COLD_START_HALF_LIFE_DAYS: Final = 7.0


def check_positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    """Raise :class:`InputError` unless ``value`` is a positive finite number (or None when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < np.inf:
        raise InputError(f"{name} must be a positive number, got {value!r}")


def check_k(k: int) -> int:
    """``k`` as a positive int."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    return int(k)


def request_users(users: Sequence[str] | pa.Array | pa.ChunkedArray | np.ndarray) -> pa.Array:
    """Requested user ids as a string array, duplicates dropped (first occurrence kept)."""
    if isinstance(users, str):
        raise InputError("users must be a sequence of user ids, not one string", "pass [user_id]")
    if not isinstance(users, (pa.Array, pa.ChunkedArray)):
        users = pa.array(users if isinstance(users, np.ndarray) else list(users))
    if isinstance(users, pa.ChunkedArray):
        users = users.combine_chunks() if users.num_chunks else pa.array([], pa.string())
    if pa.types.is_dictionary(users.type):
        users = users.cast(users.type.value_type)
    if pa.types.is_null(users.type) and len(users) == 0:
        users = users.cast(pa.string())
    if users.null_count:
        raise InputError("the requested users include a null id", "drop missing user ids before recommending")
    if not pa.types.is_string(users.type):
        users = users.cast(pa.string())
    return pc.unique(users)


def elapsed_days(fitted_at: datetime, now: datetime) -> float:
    """Days from the fit time to ``now``; an earlier ``now`` would use events from its future."""
    now = as_utc(now)
    days = (now - fitted_at).total_seconds() / 86_400
    if days < 0:
        raise InputError(
            f"cannot recommend as of {iso(now)}: the model was fitted as of {iso(fitted_at)}, a later time",
            "fit the model as of a time at or before the recommendation time",
        )
    return days


def half_life_factor(days: float, half_life_days: float | None) -> float:
    """``2 ** (-days / h)``: what a decayed score is worth ``days`` later; 1 without a half-life."""
    return 1.0 if half_life_days is None else float(np.exp(-LN2 * days / half_life_days))
