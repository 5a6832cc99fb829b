"""One entry point for commands that take ``--events``: an events file or a store directory.

A file is validated exactly as ``ingest`` would (same readers, same quarantine rules) into a
throw-away in-memory store; a store directory is opened read-only. Either way the caller
gets an :class:`~decayrec.store.EventStore` and reads it as of a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from decayrec.ingest import IngestReport, ProgressFn, ingest
from decayrec.store import EventStore


def open_events(
    source: str | Path | Sequence[str | Path],
    *,
    format: str = "canonical",
    quarantine: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> tuple[EventStore, IngestReport | None]:
    """Open a store directory read-only, or load event file(s) into an in-memory store.

    Returns the store and, for files, the ingest report (``None`` for a store).
    """
    paths = [Path(source)] if isinstance(source, (str, Path)) else [Path(p) for p in source]
    if len(paths) == 1 and EventStore.is_store(paths[0]):
        return EventStore.open(paths[0], read_only=True), None
    store = EventStore.in_memory()
    report = ingest(paths, store, format=format, quarantine=quarantine, progress=progress)
    return store, report
