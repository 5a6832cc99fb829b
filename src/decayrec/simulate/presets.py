"""Simulator presets: shops that differ the way real shops do, each with its truth.

A default fitted on one kind of shop can be wrong on another, so every change to a default
is tried on all of these (and on the real logs in ``../shared/data``):

| preset | what it is like |
|---|---|
| ``grocery`` | repeat-heavy baskets: most categories are consumables with re-buy cycles; purchases only, gathered into weekly trips |
| ``fashion`` | discovery: nothing is bought twice, many new releases, few revisits; views, carts, purchases |
| ``reviews`` | sparse, day-resolution purchase (review) log over two years, like Amazon's 5-core sets |
| ``sessions`` | anonymous sessions: every visit is a new user id, clicks and views within minutes |
| ``purchases`` | purchase-only log with little history (39 weeks) and lapsing customers, for long horizons (CDNOW-like) |
| ``default`` | the demo shop: mixed regimes, all event types |

:func:`simulate_preset` runs one; the :class:`~decayrec.simulate.shop.Simulation` it returns
writes ``events.csv`` and ``truth.json`` as any simulation does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from decayrec.errors import InputError
from decayrec.simulate.shop import SimConfig, Simulation, simulate

__all__ = ["PRESETS", "preset", "simulate_preset"]

PRESETS: Final[Mapping[str, Mapping[str, Any]]] = {
    "default": {},
    "grocery": {
        "n_users": 2500,
        "n_categories": 25,
        "n_items": 800,
        "days": 240.0,
        "consumable_share": 0.8,
        "rebuy_cycle_range_days": (6.0, 30.0),
        "rebuy_continue": 0.85,
        "cart_prob": 0.55,
        "purchase_prob": 0.85,
        "revisit_prob": 0.5,
        "episodes_per_day": 0.4,
        "observe": "purchases",
        "basket_days": 7.0,
    },
    "fashion": {
        "n_users": 4000,
        "n_categories": 40,
        "n_items": 4000,
        "days": 180.0,
        "consumable_share": 0.0,
        "revisit_prob": 0.05,
        "newness_boost": 6.0,
        "newness_half_life_days": 7.0,
        "prereleased_share": 0.3,
        "half_life_range_days": (0.5, 20.0),
        "episodes_per_day": 0.15,
        "taste_concentration": 0.2,
    },
    "reviews": {
        "n_users": 12000,
        "n_categories": 40,
        "n_items": 5000,
        "days": 730.0,
        "consumable_share": 0.0,
        "revisit_prob": 0.0,
        "episodes_per_day": 0.05,
        "cart_prob": 0.5,
        "purchase_prob": 0.6,
        "half_life_range_days": (5.0, 120.0),
        "late_signup_share": 0.6,
        "lapse_mean_days": 300.0,
        "observe": "purchases",
        "time_resolution": "day",
    },
    "sessions": {
        "n_users": 10000,
        "n_categories": 30,
        "n_items": 2000,
        "days": 10.0,
        "consumable_share": 0.0,
        "half_life_range_days": (0.002, 0.03),
        "branching_ratio": 0.85,
        "episodes_per_day": 0.15,
        "revisit_prob": 0.4,
        "cart_prob": 0.1,
        "fav_prob": 0.02,
        "late_signup_share": 0.0,
        "never_lapse_share": 1.0,
        "session_gap_minutes": 30.0,
        "anonymous_sessions": True,
    },
    "purchases": {
        "n_users": 5000,
        "n_categories": 20,
        "n_items": 600,
        "days": 273.0,
        "consumable_share": 0.5,
        "rebuy_cycle_range_days": (20.0, 90.0),
        "episodes_per_day": 0.06,
        "cart_prob": 0.6,
        "purchase_prob": 0.7,
        "late_signup_share": 0.5,
        "never_lapse_share": 0.25,
        "lapse_mean_days": 90.0,
        "observe": "purchases",
        "time_resolution": "day",
    },
}


def preset(name: str, **changes: Any) -> SimConfig:
    """The :class:`SimConfig` of preset ``name``, with ``changes`` (e.g. ``seed``, ``n_users``) on top."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise InputError(f"no simulator preset named {name!r}", f"choose one of {', '.join(PRESETS)}") from None
    return SimConfig(**(dict(base) | changes))


def simulate_preset(name: str, **changes: Any) -> Simulation:
    """Simulate preset ``name`` (see the module docstring), with ``changes`` to its configuration."""
    return simulate(preset(name, **changes))
