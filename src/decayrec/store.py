"""The embedded event store: a DuckDB file inside a directory.

One table of typed events, appended with duplicate removal (ingesting the same file
twice adds nothing; two events with the same ``event_id`` are one event, whatever else
differs), read back as of a time (events with ``timestamp <= at`` only), exported to CSV
or Parquet in the canonical format. A schema version in the ``meta`` table guards against
opening a store written by an incompatible release; a version 1 store (before
``event_id`` and ``rec_id``) is upgraded in place when opened for writing.
"""

from __future__ import annotations

import json
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.errors import InputError, StoreError

SCHEMA_VERSION = 2
DB_FILE = "events.duckdb"
# Written by decayrec serve while it holds the store: {"pid", "url"}.
SERVE_LOCK_FILE = "serve.json"

_COLS = schema.COLUMNS
# Exact duplicates: every column equal, NULL equal to NULL.
_SAME = " AND ".join(f"e.{c} IS NOT DISTINCT FROM b.{c}" for c in ("ts", *_COLS[:3], *_COLS[4:]))
# Every list the service serves, under its list_id: who saw which items when (CONTRACT section 4).
_IMPRESSIONS = """
    CREATE TABLE impressions (
        list_id VARCHAR NOT NULL,
        user_id VARCHAR NOT NULL,
        ts TIMESTAMP NOT NULL,
        items VARCHAR[] NOT NULL,
        request JSON
    )
"""
_EVENT_ENUM = ", ".join(f"'{e}'" for e in schema.EVENT_TYPES)
_EXPORT_SELECT = """
    SELECT user_id, item_id, CAST(event AS VARCHAR) AS event,
           {ts} AS "timestamp", category_id, price, quantity, session_id, event_id, rec_id
    FROM events {where}
    ORDER BY events.ts, user_id, item_id
"""
_ISO = "CASE WHEN microsecond(ts) = 0 THEN strftime(ts, '%Y-%m-%dT%H:%M:%SZ') ELSE strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') END"


class EventStore:
    """Events of one shop, in ``DIR/events.duckdb``.

    Open with :meth:`open` (or use as a context manager). The store holds at most one
    writer process at a time (DuckDB's rule); readers may open it ``read_only``.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, directory: Path | None, read_only: bool = False):
        self.con = con
        self.directory = directory
        self.read_only = read_only

    # -- lifecycle -------------------------------------------------------------------
    @classmethod
    def in_memory(cls) -> EventStore:
        """A throw-away store in memory, for commands given an events file instead of a store."""
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        store = cls(con, None)
        store._init_schema()
        return store

    @staticmethod
    def is_store(path: str | Path) -> bool:
        """Whether ``path`` is a store directory made by ``decayrec ingest``."""
        return (Path(path) / DB_FILE).is_file()

    @classmethod
    def open(cls, directory: str | Path, *, create: bool = False, read_only: bool = False) -> EventStore:
        directory = Path(directory)
        path = directory / DB_FILE
        if not path.exists():
            if not create:
                raise InputError(
                    f"{directory} is not a decayrec store (no {DB_FILE})",
                    "create one with: decayrec ingest FILE --store DIR",
                )
            if directory.exists() and not directory.is_dir():
                raise InputError(f"{directory} is a file", "give a directory for --store")
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(
                    f"cannot create the store {directory} ({exc.strerror})", "choose a writable place for --store"
                ) from None
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            server = _server_holding(directory)
            if server:
                raise StoreError(
                    f"the store {directory} is held by decayrec serve ({server}); it is the store's one writer: "
                    "read and write through its HTTP API, or stop it first"
                ) from None
            raise StoreError(
                f"cannot open the store {directory} ({str(exc).splitlines()[0]}); "
                "another decayrec process (a server or an ingest) may hold it: stop it and retry"
            ) from None
        con.execute("SET TimeZone = 'UTC'")
        store = cls(con, directory, read_only)
        if read_only:
            store._check_version()
        else:
            store._init_schema()
        return store

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init_schema(self) -> None:
        con = self.con
        con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        row = rows[0] if rows else None
        if row is None:
            con.execute(f"CREATE TYPE event_type AS ENUM ({_EVENT_ENUM})")
            con.execute(
                """
                CREATE TABLE events (
                    user_id VARCHAR NOT NULL,
                    item_id VARCHAR NOT NULL,
                    event event_type NOT NULL,
                    ts TIMESTAMP NOT NULL,
                    category_id VARCHAR,
                    price DOUBLE,
                    quantity DOUBLE,
                    session_id VARCHAR,
                    event_id VARCHAR,
                    rec_id VARCHAR
                )
                """
            )
            con.execute(
                """
                CREATE TABLE ingests (
                    id INTEGER PRIMARY KEY,
                    report JSON NOT NULL
                )
                """
            )
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            con.execute(_IMPRESSIONS)
        elif row[0] == "1":
            self._upgrade_from_1()
        else:
            self._check_version()

    def _upgrade_from_1(self) -> None:
        """Version 1 had no ``event_id`` / ``rec_id``: add them (empty for the stored rows)."""
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("ALTER TABLE events ADD COLUMN event_id VARCHAR")
            con.execute("ALTER TABLE events ADD COLUMN rec_id VARCHAR")
            con.execute(_IMPRESSIONS)
            con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _check_version(self) -> None:
        try:
            rows = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
            row = rows[0] if rows else None
        except duckdb.CatalogException:
            row = None
        if row is None:
            raise StoreError(f"{self.directory} has no schema version; it was not written by decayrec")
        if int(row[0]) == 1 and self.read_only:
            raise StoreError(
                f"{self.directory} has store schema version 1, which this decayrec upgrades when it opens "
                "the store for writing; run any write once (e.g. decayrec ingest with an empty file) or "
                "stop the process that holds it"
            )
        if int(row[0]) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.directory} has store schema version {row[0]}, this decayrec reads version "
                f"{SCHEMA_VERSION}; export it with the release that wrote it and ingest the export"
            )

    @property
    def schema_version(self) -> int:
        return int(self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()[0][0])

    # -- writing ---------------------------------------------------------------------
    def append(self, events: pa.Table, *, ids_checked: bool = False) -> tuple[int, int]:
        """Add validated events in one transaction, dropping duplicates; see :meth:`append_new`."""
        inserted, duplicates, _ = self._append(events, ids_checked=ids_checked, returning=False)
        return inserted, duplicates

    def append_new(self, events: pa.Table, *, ids_checked: bool = False) -> tuple[pa.Table, int]:
        """:meth:`append`, returning the rows it stored (the scan's columns) and the duplicates' count."""
        _, duplicates, rows = self._append(events, ids_checked=ids_checked, returning=True)
        assert rows is not None
        return rows, duplicates

    def _append(self, events: pa.Table, *, ids_checked: bool, returning: bool) -> tuple[int, int, pa.Table | None]:
        """Add validated events in one transaction, dropping duplicates.

        An event with an ``event_id`` is a duplicate when an earlier event of the batch or a
        stored event has the same ``event_id``; one without is a duplicate when every column
        equals those of another event of the batch or of a stored one.

        Parameters
        ----------
        events
            A table with the typed canonical columns (as made by :mod:`decayrec.io.validate`);
            extra columns are ignored, missing optional ones are empty.
        ids_checked
            The caller guarantees that no ``event_id`` of the batch is stored already (the
            service, the store's one writer, keeps the set of stored ids): the look-up
            against every stored id is skipped.

        Returns
        -------
        (inserted, duplicates)
            ``inserted + duplicates == events.num_rows``.
        """
        if events.num_rows == 0:
            return 0, 0, self.scan().slice(0, 0) if returning else None
        batch = _with_columns(events).append_column("_pos", pa.array(range(events.num_rows), pa.int64()))
        con = self.con
        con.register("incoming", batch)
        stored_id = "" if ids_checked else "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = b.event_id)"
        tail = (
            'RETURNING user_id, item_id, CAST(event AS VARCHAR) AS event, ts AS "timestamp", category_id, price, quantity, '
            "session_id, event_id, rec_id"
            if returning
            else ""
        )
        rows = None
        try:
            con.execute("BEGIN TRANSACTION")
            span = pc.min_max(batch["timestamp"])
            lo, hi = span["min"].as_py(), span["max"].as_py()
            result = con.execute(
                f"""
                INSERT INTO events
                WITH typed AS (
                    SELECT user_id, item_id, CAST(event AS event_type) AS event, "timestamp" AS ts,
                           category_id, price, quantity, session_id, event_id, rec_id, _pos
                    FROM incoming
                ), b AS (
                    SELECT DISTINCT * EXCLUDE (_pos) FROM typed WHERE event_id IS NULL
                    UNION ALL
                    SELECT * EXCLUDE (_pos) FROM typed WHERE event_id IS NOT NULL
                    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY _pos) = 1
                )
                SELECT * FROM b
                WHERE (b.event_id IS NULL AND NOT EXISTS (
                          SELECT 1 FROM (SELECT * FROM events WHERE ts BETWEEN $lo AND $hi) AS e WHERE {_SAME}))
                   OR (b.event_id IS NOT NULL {stored_id})
                {tail}
                """,
                {"lo": lo, "hi": hi},
            )
            if returning:
                with warnings.catch_warnings():  # DuckDB notes the copy a DB-API result costs: a batch's rows are few
                    warnings.simplefilter("ignore", UserWarning)
                    stored: pa.Table = result.to_arrow_table()
                rows, inserted = stored, stored.num_rows
            else:
                inserted = result.fetchall()[0][0]
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("incoming")
        return int(inserted), events.num_rows - int(inserted), rows

    def event_ids(self) -> set[str]:
        """Every stored ``event_id`` (the service's idempotency set)."""
        rows = self.con.execute("SELECT event_id FROM events WHERE event_id IS NOT NULL").fetchall()
        return {r[0] for r in rows}

    def record_ingest(self, report: dict[str, Any]) -> int:
        """Keep an ingest's report (files, counts, epoch units) in the store's log."""
        next_id = self.con.execute("SELECT coalesce(max(id), 0) + 1 FROM ingests").fetchall()[0][0]
        self.con.execute("INSERT INTO ingests VALUES (?, ?)", [next_id, json.dumps(report)])
        return int(next_id)

    def ingests(self) -> list[dict[str, Any]]:
        rows = self.con.execute("SELECT report FROM ingests ORDER BY id").fetchall()
        return [json.loads(r[0]) for r in rows]

    def next_ingest_id(self) -> int:
        return int(self.con.execute("SELECT coalesce(max(id), 0) + 1 FROM ingests").fetchall()[0][0])

    def delete_user(self, user_id: str) -> int:
        """Erase every stored event and impression of one user in one transaction; returns the events removed."""
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            n = int(con.execute("DELETE FROM events WHERE user_id = ?", [user_id]).fetchall()[0][0])
            con.execute("DELETE FROM impressions WHERE user_id = ?", [user_id])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return n

    def record_impressions(self, rows: list[tuple[str, str, datetime, list[str], str]]) -> None:
        """Store served lists: ``(list_id, user_id, time, item_ids, request JSON)`` each, in one transaction."""
        if not rows:
            return
        table = pa.table(
            {
                "list_id": [r[0] for r in rows],
                "user_id": [r[1] for r in rows],
                "ts": pa.array([_naive_utc(r[2]) for r in rows], pa.timestamp("us")),
                "items": pa.array([r[3] for r in rows], pa.list_(pa.string())),
                "request": [r[4] for r in rows],
            }
        )
        self.con.register("new_impressions", table)
        try:
            self.con.execute("INSERT INTO impressions SELECT list_id, user_id, ts, items, request FROM new_impressions")
        finally:
            self.con.unregister("new_impressions")

    def impressions(self, user_id: str | None = None) -> pa.Table:
        """Stored impressions (of one user when given), oldest first."""
        where, params = ("WHERE user_id = ?", [user_id]) if user_id is not None else ("", [])
        sql = f"SELECT list_id, user_id, ts, items, request FROM impressions {where} ORDER BY ts, list_id"
        return self.con.sql(sql, params=params or None).to_arrow_table()

    def user_events(self, user_id: str, at: datetime | None = None) -> pa.Table:
        """One user's events at or before ``at``, time-ordered, in :meth:`scan`'s columns."""
        where, params = self._where(at)
        where = (where + " AND" if where else "WHERE") + " user_id = ?"
        sql = _EXPORT_SELECT.format(ts="ts", where=where)
        return self.con.sql(sql, params=[*params, user_id]).to_arrow_table()

    # -- reading ---------------------------------------------------------------------
    def _where(self, at: datetime | None) -> tuple[str, list[Any]]:
        return ("WHERE ts <= ?", [_naive_utc(at)]) if at is not None else ("", [])

    def count(self, at: datetime | None = None) -> int:
        where, params = self._where(at)
        return int(self.con.execute(f"SELECT count(*) FROM events {where}", params).fetchall()[0][0])

    def first_time(self) -> datetime | None:
        """The time of the oldest stored event."""
        return cast(datetime | None, self.con.execute("SELECT min(ts) FROM events").fetchall()[0][0])

    def last_time(self) -> datetime | None:
        """The time of the newest stored event: the default "now" of every command."""
        return cast(datetime | None, self.con.execute("SELECT max(ts) FROM events").fetchall()[0][0])

    def scan(self, at: datetime | None = None) -> pa.Table:
        """All events with ``timestamp <= at`` (all events when ``at`` is None), time-ordered, typed."""
        where, params = self._where(at)
        sql = _EXPORT_SELECT.format(ts="ts", where=where)
        return self.con.sql(sql, params=params or None).to_arrow_table()

    def export(self, out: str | Path, at: datetime | None = None) -> int:
        """Write the stored events (as of ``at``) in the canonical format to ``.csv`` or ``.parquet``."""
        out = Path(out)
        suffix = "".join(out.suffixes[-2:]) if out.suffix == ".gz" else out.suffix
        if suffix not in (".csv", ".csv.gz", ".parquet"):
            raise InputError(f"cannot tell the format of {out}", "name the output FILE.csv, FILE.csv.gz or FILE.parquet")
        out.parent.mkdir(parents=True, exist_ok=True)
        where, params = self._where(at)
        if suffix == ".parquet":
            sql = _EXPORT_SELECT.format(ts="CAST(ts AS TIMESTAMPTZ)", where=where)
            options = "FORMAT parquet, COMPRESSION zstd"
        else:
            sql = _EXPORT_SELECT.format(ts=_ISO, where=where)
            options = "FORMAT csv, HEADER true" + (", COMPRESSION gzip" if suffix == ".csv.gz" else "")
        # COPY takes no prepared parameters: the cutoff is a typed literal we build ourselves.
        if params:
            sql = sql.replace("?", f"TIMESTAMP '{params[0].isoformat(sep=' ')}'")
        self.con.execute(f"COPY ({sql}) TO '{_sql_string(out)}' ({options})")
        return self.count(at)

    def summary(self, at: datetime | None = None) -> dict[str, Any]:
        """Users, items, categories, events by type and the time span, as of ``at``."""
        where, params = self._where(at)
        users, items, categories, n, first, last = self.con.execute(
            f"""SELECT count(DISTINCT user_id), count(DISTINCT item_id), count(DISTINCT category_id),
                       count(*), min(ts), max(ts) FROM events {where}""",
            params,
        ).fetchall()[0]
        by_type = dict(
            self.con.execute(f"SELECT CAST(event AS VARCHAR), count(*) FROM events {where} GROUP BY 1", params).fetchall()
        )
        return {
            "users": users,
            "items": items,
            "categories": categories,
            "events": n,
            "events_by_type": {e: int(by_type.get(e, 0)) for e in schema.EVENT_TYPES},
            "first": first,
            "last": last,
        }


def _server_holding(directory: Path) -> str | None:
    """``pid N at URL`` of the decayrec serve that wrote its lock file in ``directory``, if any."""
    try:
        info = json.loads((directory / SERVE_LOCK_FILE).read_text(encoding="utf-8"))
        pid = int(info["pid"])
        os.kill(pid, 0)  # a lock file left by a killed server names no one
        return f"pid {pid} at {info['url']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _with_columns(events: pa.Table) -> pa.Table:
    """The canonical columns in order; optional ones the table lacks come in empty."""
    cols = []
    for name in _COLS:
        if name in events.column_names:
            cols.append(events[name])
        else:
            kind = pa.float64() if name in schema.NUMERIC_COLUMNS else pa.string()
            cols.append(pa.nulls(events.num_rows, kind))
    return pa.table(cols, names=list(_COLS))


def _naive_utc(at: datetime) -> datetime:
    """Times inside the store are naive UTC."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at


def _sql_string(path: Path) -> str:
    return str(path).replace("'", "''")
