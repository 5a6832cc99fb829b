"""Event-type weights: the defaults (what a purchase says against a view) and the lookup table by type code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np

from decayrec import schema
from decayrec.errors import InputError

__all__ = ["DEFAULT_EVENT_WEIGHTS", "EventWeights", "weight_table"]

# The simulator's weights (decayrec.simulate): a purchase says five times what a view does.
DEFAULT_EVENT_WEIGHTS: Final[Mapping[str, float]] = {"view": 1.0, "click": 1.5, "cart": 3.0, "fav": 3.0, "purchase": 5.0}


def weight_table(event_weights: Mapping[str, float] | None) -> np.ndarray:
    """Weights by event type code (schema order), plus a trailing 0 for unknown codes (-1).

    ``None`` means :data:`DEFAULT_EVENT_WEIGHTS`; types missing from a mapping weigh 0,
    so ``{"purchase": 1}`` counts purchases only.
    """
    weights = DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights
    unknown = sorted(set(weights) - set(schema.EVENT_TYPES))
    if unknown:
        raise InputError(f"event_weights names unknown event types {unknown}", f"use types among {schema.EVENT_TYPES}")
    table = np.array([float(weights.get(e, 0.0)) for e in schema.EVENT_TYPES] + [0.0])
    if not np.all(np.isfinite(table)) or table.min() < 0 or table.max() <= 0:
        raise InputError(f"event_weights must be finite, non-negative and not all 0, got {dict(weights)}")
    return table


# A model's ``event_weights`` parameter: weight per event type, or None for the defaults.
EventWeights = Mapping[str, float] | None
