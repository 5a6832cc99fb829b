"""The canonical event schema: column names, event types, aliases and bounds.

This is the one place that names columns and event types (CONTRACT.md, section 1).
Input is checked against it once, at the boundary (:mod:`decayrec.io.validate`);
code inside the package trusts what the boundary lets through.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

USER: Final = "user_id"
ITEM: Final = "item_id"
EVENT: Final = "event"
TIMESTAMP: Final = "timestamp"
CATEGORY: Final = "category_id"
PRICE: Final = "price"
QUANTITY: Final = "quantity"
SESSION: Final = "session_id"
EVENT_ID: Final = "event_id"
REC_ID: Final = "rec_id"

REQUIRED_COLUMNS: Final = (USER, ITEM, EVENT, TIMESTAMP)
OPTIONAL_COLUMNS: Final = (CATEGORY, PRICE, QUANTITY, SESSION, EVENT_ID, REC_ID)
COLUMNS: Final = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
NUMERIC_COLUMNS: Final = (PRICE, QUANTITY)

# Ordered from weakest to strongest signal; the order is also the store's enum order.
EVENT_TYPES: Final = ("view", "click", "cart", "fav", "purchase")

EVENT_ALIASES: Final[dict[str, str]] = {
    "pv": "view",
    "addtocart": "cart",
    "transaction": "purchase",
    "buy": "purchase",
    "order": "purchase",
    "favorite": "fav",
    "like": "fav",
}


def canonical_event(name: str) -> str | None:
    """Map an event name or alias (any case, surrounding blanks) to its canonical type."""
    key = name.strip().lower()
    if key in EVENT_TYPES:
        return key
    return EVENT_ALIASES.get(key)


# Timestamps outside this window are rejected as absurd: they are almost always a wrong
# epoch unit, a zero placeholder or a typo. Public logs start in the mid 1990s.
EARLIEST: Final = datetime(1990, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)

# Unix epoch units, detected per file from the magnitude of the numbers.
EPOCH_UNITS: Final[dict[str, int]] = {"s": 1_000_000, "ms": 1_000, "us": 1}
EPOCH_UNIT_NAMES: Final[dict[str, str]] = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}


def detect_epoch_unit(median_abs: float) -> str:
    """Guess the unit of Unix epoch numbers from their typical magnitude.

    Seconds since 1970 stay below 1e11 until the year 5138; milliseconds pass 1e11 in
    1973 and microseconds pass 1e14 in 1973, so the three ranges do not overlap for
    any date the store accepts.
    """
    if median_abs >= 1e14:
        return "us"
    if median_abs >= 1e11:
        return "ms"
    return "s"
