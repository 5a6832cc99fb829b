"""Events posted to the service: checked, made durable, then applied to the live state.

``POST /events`` bodies go through the same schema boundary as files
(:func:`decayrec.io.validate.validate_batch`), after a check of each object's shape and sizes.
A batch is stored in one DuckDB transaction (DuckDB syncs its write-ahead log on commit), and
only then applied in memory and acknowledged: an acknowledged event is on disk, and whatever
is in memory can be rebuilt from the store. ``event_id``\\ s make re-sends idempotent; the set
of stored ids is loaded when the service starts (the service is the store's one writer).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.io.source import LINE, RAW, REASON
from decayrec.io.validate import numeric_timestamp_median, validate_batch
from decayrec.service.config import ServiceConfig
from decayrec.service.live import LiveState
from decayrec.service.pseudonym import Pseudonymiser
from decayrec.store import EventStore

__all__ = ["BatchResult", "EventWriter"]

_FIELDS = frozenset(schema.COLUMNS)
_ID_FIELDS = (schema.USER, schema.ITEM, schema.CATEGORY, schema.SESSION, schema.EVENT_ID, schema.REC_ID)


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


class EventWriter:
    """The one writer of the store: validation, de-duplication, the durable append, the live update."""

    def __init__(self, store: EventStore, live: LiveState, config: ServiceConfig, pseudonymiser: Pseudonymiser | None):
        self.store = store
        self.live = live
        self.config = config
        self.pseudonymiser = pseudonymiser
        self.lock = threading.Lock()  # the store's connection and the id set are the writer's alone
        self._con = duckdb.connect()  # validation runs in its own in-memory engine
        self.seen_ids: set[str] = store.event_ids()

    def write(self, events: list[Any], now: datetime) -> BatchResult:
        """Store and apply a batch of event objects; ``now`` is the server's clock at the request."""
        result = BatchResult()
        rows, shape_rejects = self._shaped(events)
        result.rejected.extend(shape_rejects)
        raw = _raw_table(rows)
        median = numeric_timestamp_median(self._con, raw)
        unit = schema.detect_epoch_unit(median) if median is not None else "s"
        with self.lock:
            checked = validate_batch(self._con, raw, unit)
            bad = checked.quarantined
            result.rejected.extend(
                {"index": int(i), "reason": r} for i, r in zip(bad["line"].to_pylist(), bad["reason"].to_pylist())
            )
            good = checked.events
            good, late = _split_future(good, now + timedelta(seconds=self.config.max_future_seconds), now)
            result.rejected.extend(late)
            if self.pseudonymiser is not None and good.num_rows:
                i = good.schema.get_field_index(schema.USER)
                good = good.set_column(i, schema.USER, self.pseudonymiser.array(good[schema.USER]))
            good, resent = self._drop_known_ids(good)
            stored, duplicates = self.store.append_new(good.drop_columns([LINE]), ids_checked=True)
            ids = stored[schema.EVENT_ID].drop_null().to_pylist()
            self.seen_ids.update(ids)
            self.live.apply(stored)
        result.accepted = stored.num_rows
        result.duplicates = resent + duplicates
        result.rejected.sort(key=lambda r: r["index"])
        return result

    def _shaped(self, events: list[Any]) -> tuple[list[tuple[int, dict[str, str | None]]], list[dict[str, Any]]]:
        """Event objects whose fields are known names holding strings or numbers within the size limits, as strings."""
        ok: list[tuple[int, dict[str, str | None]]] = []
        rejected: list[dict[str, Any]] = []
        limit = self.config.max_id_length
        for index, event in enumerate(events):
            reason = None
            if not isinstance(event, dict):
                reason = "an event must be an object with the columns of CONTRACT.md section 1"
            else:
                fields: dict[str, str | None] = {}
                for name, value in event.items():
                    if name not in _FIELDS:
                        reason = f"unknown field {str(name)[:40]!r} (known: {', '.join(schema.COLUMNS)})"
                        break
                    if value is None:
                        fields[name] = None
                    elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
                        reason = f"{name} must be a string or a number"
                        break
                    else:
                        text = value if isinstance(value, str) else repr(value)
                        if len(text) > limit:
                            reason = f"{name} is longer than {limit} characters"
                            break
                        if name in _ID_FIELDS and "\x00" in text:
                            reason = f"{name} holds a NUL character"
                            break
                        fields[name] = text
            if reason is None:
                ok.append((index, fields))
            else:
                rejected.append({"index": index, "reason": reason})
        return ok, rejected

    def _drop_known_ids(self, events: pa.Table) -> tuple[pa.Table, int]:
        """Events whose event_id is already stored are duplicates (the store checks the rest of the batch)."""
        ids = events[schema.EVENT_ID]
        if ids.null_count == len(ids) or not self.seen_ids:
            return events, 0
        known = pc.is_in(ids, value_set=pa.array(list(self.seen_ids.intersection(ids.drop_null().to_pylist())), pa.string()))
        known = pc.fill_null(known, False)
        n = pc.sum(known).as_py() or 0
        return (events.filter(pc.invert(known)), int(n)) if n else (events, 0)

    def erase(self, user_id: str) -> int:
        """Delete a user's events and impressions, their ids and live rows; returns the events removed."""
        with self.lock:
            mine = self.store.user_events(user_id)[schema.EVENT_ID].drop_null().to_pylist()
            n = self.store.delete_user(user_id)
            self.seen_ids.difference_update(mine)
            self.live.forget(user_id)
        return n

    def record_impressions(self, rows: list[tuple[str, str, datetime, list[str], str]]) -> None:
        with self.lock:
            self.store.record_impressions(rows)


def _raw_table(rows: list[tuple[int, dict[str, str | None]]]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [r.get(name) for _, r in rows] for name in schema.COLUMNS}
    columns[LINE] = [i for i, _ in rows]
    table = pa.table({name: pa.array(values, pa.string()) for name, values in columns.items() if name != LINE})
    table = table.append_column(LINE, pa.array(columns[LINE], pa.int64()))
    table = table.append_column(REASON, pa.nulls(len(rows), pa.string()))
    return table.append_column(RAW, pa.nulls(len(rows), pa.string()))


def _split_future(events: pa.Table, latest: datetime, now: datetime) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Events stamped after ``latest`` are rejected: almost always a wrong clock or epoch unit."""
    if events.num_rows == 0:
        return events, []
    limit = pa.scalar(latest.replace(tzinfo=None), pa.timestamp("us"))
    late = pc.greater(events[schema.TIMESTAMP], limit)
    if not pc.any(late).as_py():
        return events, []
    bad = events.filter(late)
    clock = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    rejected = [
        {
            "index": int(i),
            "reason": f"timestamp {t.strftime('%Y-%m-%dT%H:%M:%SZ')} is after the server's clock ({clock}) by more than "
            f"{(latest - now).total_seconds() / 3600:g} hours: check the sender's clock or the epoch unit",
        }
        for i, t in zip(bad[LINE].to_pylist(), bad[schema.TIMESTAMP].to_pylist())
    ]
    return events.filter(pc.invert(late)), rejected
