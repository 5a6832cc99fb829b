"""Shared helpers: small event files the tests write themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

HEADER = "user_id,item_id,event,timestamp,category_id,price,quantity,session_id"


@pytest.fixture
def write_csv(tmp_path: Path):
    """Write lines (header included unless given) to a CSV in tmp_path and return its path."""

    def write(lines: list[str], name: str = "events.csv", header: str | None = HEADER) -> Path:
        path = tmp_path / name
        text = "\n".join(([header] if header is not None else []) + lines) + "\n"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def store(tmp_path: Path):
    from decayrec.store import EventStore

    s = EventStore.open(tmp_path / "store", create=True)
    yield s
    s.close()
