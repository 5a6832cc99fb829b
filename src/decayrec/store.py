"""The embedded event store: a DuckDB file inside a directory.

One table of typed events, appended with exact-duplicate removal (ingesting the same
file twice adds nothing), read back as of a time (events with ``timestamp <= at``
only), exported to CSV or Parquet in the canonical format. A schema version in the
``meta`` table guards against opening a store written by an incompatible release.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa

from decayrec import schema
from decayrec.errors import InputError, StoreError

SCHEMA_VERSION = 1
DB_FILE = "events.duckdb"

_COLS = schema.COLUMNS
# Exact duplicates: every column equal, NULL equal to NULL.
_SAME = " AND ".join(f"e.{c} IS NOT DISTINCT FROM b.{c}" for c in ("ts", *_COLS[:3], *_COLS[4:]))
_EVENT_ENUM = ", ".join(f"'{e}'" for e in schema.EVENT_TYPES)
_EXPORT_SELECT = """
    SELECT user_id, item_id, CAST(event AS VARCHAR) AS event,
           {ts} AS "timestamp", category_id, price, quantity, session_id
    FROM events {where}
    ORDER BY events.ts, user_id, item_id
"""
_ISO = "CASE WHEN microsecond(ts) = 0 THEN strftime(ts, '%Y-%m-%dT%H:%M:%SZ') ELSE strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') END"


class EventStore:
    """Events of one shop, in ``DIR/events.duckdb``.

    Open with :meth:`open` (or use as a context manager). The store holds at most one
    writer process at a time (DuckDB's rule); readers may open it ``read_only``.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, directory: Path | None):
        self.con = con
        self.directory = directory

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
            raise StoreError(
                f"cannot open the store {directory} ({str(exc).splitlines()[0]}); "
                "another decayrec process (a server or an ingest) may hold it: stop it and retry"
            ) from None
        con.execute("SET TimeZone = 'UTC'")
        store = cls(con, directory)
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
                    session_id VARCHAR
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
        else:
            self._check_version()

    def _check_version(self) -> None:
        try:
            rows = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
            row = rows[0] if rows else None
        except duckdb.CatalogException:
            row = None
        if row is None:
            raise StoreError(f"{self.directory} has no schema version; it was not written by decayrec")
        if int(row[0]) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.directory} has store schema version {row[0]}, this decayrec reads version "
                f"{SCHEMA_VERSION}; export it with the release that wrote it and ingest the export"
            )

    @property
    def schema_version(self) -> int:
        return int(self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()[0][0])

    # -- writing ---------------------------------------------------------------------
    def append(self, events: pa.Table) -> tuple[int, int]:
        """Add validated events, dropping exact duplicates (within the batch and of stored rows).

        Parameters
        ----------
        events
            A table with the typed canonical columns (as made by :mod:`decayrec.io.validate`);
            extra columns are ignored.

        Returns
        -------
        (inserted, duplicates)
            ``inserted + duplicates == events.num_rows``.
        """
        if events.num_rows == 0:
            return 0, 0
        batch = events.select(list(_COLS))
        con = self.con
        con.register("incoming", batch)
        try:
            con.execute("BEGIN TRANSACTION")
            lo, hi = con.execute('SELECT min("timestamp"), max("timestamp") FROM incoming').fetchall()[0]
            inserted = con.execute(
                f"""
                INSERT INTO events
                SELECT * FROM (
                    SELECT DISTINCT user_id, item_id, CAST(event AS event_type) AS event, "timestamp" AS ts,
                           category_id, price, quantity, session_id
                    FROM incoming
                ) AS b
                WHERE NOT EXISTS (
                    SELECT 1 FROM (SELECT * FROM events WHERE ts BETWEEN $lo AND $hi) AS e WHERE {_SAME}
                )
                """,
                {"lo": lo, "hi": hi},
            ).fetchall()[0][0]
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("incoming")
        return int(inserted), events.num_rows - int(inserted)

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
        """Erase every stored event of one user; returns how many were removed."""
        return int(self.con.execute("DELETE FROM events WHERE user_id = ?", [user_id]).fetchall()[0][0])

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


def _naive_utc(at: datetime) -> datetime:
    """Times inside the store are naive UTC."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at


def _sql_string(path: Path) -> str:
    return str(path).replace("'", "''")
