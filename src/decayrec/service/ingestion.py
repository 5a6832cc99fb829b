"""Events posted to the service: checked, made durable, then applied to the live state.

``POST /events`` bodies go through the same schema boundary as files
(:func:`decayrec.io.validate.validate_batch`), after a check of each object's shape and sizes.
A batch is stored in one DuckDB transaction (DuckDB syncs its write-ahead log on commit), and
only then applied in memory and acknowledged: an acknowledged event is on disk, and whatever
is in memory can be rebuilt from the store. ``event_id``\\ s make re-sends idempotent; the set
of stored ids is loaded when the service starts (the service is the store's one writer).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
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
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ID_FIELDS = (schema.USER, schema.ITEM, schema.CATEGORY, schema.SESSION, schema.EVENT_ID, schema.REC_ID)


# Lines of the batches in one group commit are numbered apart: batch n's event i is n * stride + i.
_TICKET_STRIDE = 1 << 20
_ROW = (
    schema.USER,
    schema.ITEM,
    schema.EVENT,
    schema.TIMESTAMP,
    schema.CATEGORY,
    schema.PRICE,
    schema.QUANTITY,
    schema.SESSION,
    schema.REC_ID,
)


@dataclass
class _Ticket:
    """One posted batch waiting for (or done with) its group commit."""

    rows: list[tuple[int, dict[str, str | None]]]
    rejected: list[dict[str, Any]]
    numeric: bool  # some timestamp is an epoch number: the batch's unit must be detected
    now: datetime
    result: BatchResult | None = None
    error: BaseException | None = None


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
        self.lock = threading.RLock()  # the store's connection and the id set are the writer's alone
        self._con = duckdb.connect()  # validation runs in its own in-memory engine
        self.seen_ids: set[str] = store.event_ids()
        self._pending: list[_Ticket] = []
        self._pending_lock = threading.Lock()

    def write(self, events: list[Any], now: datetime) -> BatchResult:
        """Store and apply a batch of event objects; ``now`` is the server's clock at the request.

        Batches that arrive while another is being committed wait for the writer and are then
        committed together (group commit): one validation, one transaction and one sync for
        all of them, each still answered with its own counts. The answer comes only after
        the transaction holding the batch has committed.
        """
        rows, shape_rejects = self._shaped(events)
        ticket = _Ticket(rows, shape_rejects, any(_looks_numeric(r.get(schema.TIMESTAMP)) for _, r in rows), now)
        with self._pending_lock:
            self._pending.append(ticket)
        with self.lock:
            if ticket.result is None and ticket.error is None:
                with self._pending_lock:
                    group, self._pending = self._pending, []
                try:
                    self._commit(group)
                except Exception as exc:  # noqa: BLE001 - handed to every batch of the group, each request raises it
                    for t in group:
                        t.error = exc
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        return ticket.result

    def _commit(self, group: list[_Ticket]) -> None:
        """Validate, store in one transaction and apply the batches of ``group`` (under the writer lock)."""
        results = [BatchResult(rejected=list(t.rejected)) for t in group]
        tables = []
        for n, t in enumerate(group):
            raw = _raw_table(t.rows, offset=n * _TICKET_STRIDE)
            median = numeric_timestamp_median(self._con, raw) if t.numeric else None
            unit = schema.detect_epoch_unit(median) if median is not None else "s"
            checked = validate_batch(self._con, raw, unit) if raw.num_rows else None
            if checked is None:
                continue
            bad = checked.quarantined
            for line, reason in zip(bad["line"].to_pylist(), bad["reason"].to_pylist()):
                results[line // _TICKET_STRIDE].rejected.append({"index": line % _TICKET_STRIDE, "reason": reason})
            good, late = _split_future(checked.events, t.now + timedelta(seconds=self.config.max_future_seconds), t.now)
            for r in late:
                results[r["index"] // _TICKET_STRIDE].rejected.append(
                    {"index": r["index"] % _TICKET_STRIDE, "reason": r["reason"]}
                )
            tables.append(good)
        good = pa.concat_tables(tables) if tables else None
        if good is not None and good.num_rows:
            if self.pseudonymiser is not None:
                i = good.schema.get_field_index(schema.USER)
                good = good.set_column(i, schema.USER, self.pseudonymiser.array(good[schema.USER]))
            ids = good[schema.EVENT_ID]
            known = pc.fill_null(
                pc.is_in(ids, value_set=pa.array(sorted(self.seen_ids.intersection(ids.drop_null().to_pylist())), pa.string())),
                False,
            )
            for line in good.filter(known)[LINE].to_pylist():  # re-sent: stored already
                results[line // _TICKET_STRIDE].duplicates += 1
            fresh = good.filter(pc.invert(known))
            stored, _ = self.store.append_new(fresh.drop_columns([LINE]), ids_checked=True)
            for line, kept in zip(fresh[LINE].to_pylist(), _attribute(fresh, stored)):
                result = results[line // _TICKET_STRIDE]
                if kept:
                    result.accepted += 1
                else:
                    result.duplicates += 1
            self.seen_ids.update(stored[schema.EVENT_ID].drop_null().to_pylist())
            self.live.apply(stored)
        for t, result in zip(group, results):
            result.rejected.sort(key=lambda r: r["index"])
            t.result = result

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
                        if name in _ID_FIELDS and _CONTROL.search(text):
                            reason = f"{name} holds a control character (ids are addressed in URL paths)"
                            break
                        fields[name] = text
            if reason is None:
                ok.append((index, fields))
            else:
                rejected.append({"index": index, "reason": reason})
        return ok, rejected

    def erase(self, user_id: str) -> int:
        """Delete a user's events and impressions, their ids and live rows; returns the events removed."""
        with self.lock:
            mine = self.store.user_events(user_id)[schema.EVENT_ID].drop_null().to_pylist()
            n = self.store.delete_user(user_id)
            self.seen_ids.difference_update(mine)
            self.live.forget(user_id)
            if n:
                # Rewrite the table now rather than at DuckDB's next automatic checkpoint, so the
                # deleted rows leave the database file's live blocks (freed blocks are reused later).
                self.store.con.execute("CHECKPOINT")
        return n

    def record_impressions(self, rows: list[tuple[str, str, datetime, list[str], str]]) -> None:
        with self.lock:
            self.store.record_impressions(rows)


def _looks_numeric(text: str | None) -> bool:
    """Whether a timestamp reads as a number (an epoch time), as the validation would read it."""
    if not text:
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def _attribute(sent: pa.Table, stored: pa.Table) -> list[bool]:
    """Which sent rows, in order, are among the stored ones (the others were duplicates).

    A row with an ``event_id`` (none of them stored before) is stored when it is the first with
    that id; one without, when an equal stored row is still unclaimed (the store keeps
    the first of equal rows).
    """
    stored_ids = set(stored[schema.EVENT_ID].drop_null().to_pylist())
    anonymous = stored.filter(pc.is_null(stored[schema.EVENT_ID]))
    unclaimed = Counter(zip(*(anonymous[c].to_pylist() for c in _ROW))) if anonymous.num_rows else Counter()
    out = []
    ids = sent[schema.EVENT_ID].to_pylist()
    tuples: list[tuple[Any, ...]] = list(zip(*(sent[c].to_pylist() for c in _ROW))) if unclaimed else [()] * len(ids)
    for event_id, row in zip(ids, tuples):
        if event_id is not None:
            kept = event_id in stored_ids
            stored_ids.discard(event_id)
        else:
            kept = unclaimed[row] > 0
            if kept:
                unclaimed[row] -= 1
        out.append(kept)
    return out


def _raw_table(rows: list[tuple[int, dict[str, str | None]]], offset: int = 0) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [r.get(name) for _, r in rows] for name in schema.COLUMNS}
    columns[LINE] = [offset + i for i, _ in rows]
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
