"""Hand-written event tables for tests: rows of (user, item, event, days after T0, category)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def events(rows: list[tuple[str, str, str, float, str | None]], price: list[float | None] | None = None) -> pa.Table:
    """A canonical events table from rows of (user, item, event, days after T0, category)."""
    cols = {
        "user_id": [r[0] for r in rows],
        "item_id": [r[1] for r in rows],
        "event": [r[2] for r in rows],
        "timestamp": pa.array([T0 + timedelta(days=r[3]) for r in rows], pa.timestamp("us", tz="UTC")),
        "category_id": [r[4] for r in rows],
    }
    if price is not None:
        cols["price"] = pa.array(price, pa.float64())
    return pa.table(cols)
