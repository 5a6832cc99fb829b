"""Helpers for the service tests: a simulated shop in a store, keys, a clock the test moves."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

READ = "read-key-0123456789abcdef"
WRITE = "write-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
KEYS = f"{READ}:read,{WRITE}:write,{ADMIN}:admin"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Clock:
    """A clock the test sets; the service reads "now" only through it."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def shop_store(directory: Path, *, users: int = 200, seed: int = 3) -> datetime:
    """Ingest a simulated shop into ``directory``; returns the time of its last event."""
    from decayrec.ingest import ingest
    from decayrec.simulate import SimConfig, simulate
    from decayrec.store import EventStore

    events, _ = simulate(SimConfig(n_users=users, n_categories=5, n_items=150, days=60, seed=seed)).write(directory / "sim")
    with EventStore.open(directory / "store", create=True) as store:
        ingest([events], store)
        last = store.last_time()
    assert last is not None
    return last.replace(tzinfo=UTC)


def wait_until(predicate, timeout: float = 60.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(step)
