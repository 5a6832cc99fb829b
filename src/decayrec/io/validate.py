"""The schema boundary: raw string batches in, typed events and quarantined rows out.

One SQL statement over each batch (DuckDB, vectorised, zero-copy from Arrow) trims and
types every column, maps event aliases, parses timestamps (ISO-8601 with or without an
offset, or Unix epoch numbers in the file's unit) and gives each unusable row its reason.
Rows leave here either typed and trusted, or in the quarantine table with their line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.io.source import LINE, RAW, REASON

# The typed columns of a validated event table, in canonical order.
EVENT_SCHEMA = pa.schema(
    [
        (schema.USER, pa.string()),
        (schema.ITEM, pa.string()),
        (schema.EVENT, pa.string()),
        (schema.TIMESTAMP, pa.timestamp("us")),
        (schema.CATEGORY, pa.string()),
        (schema.PRICE, pa.float64()),
        (schema.QUANTITY, pa.float64()),
        (schema.SESSION, pa.string()),
        (schema.EVENT_ID, pa.string()),
        (schema.REC_ID, pa.string()),
    ]
)

_POS = "_pos"
# An ISO time whose offset (+HH:MM or +HHMM after a clock time) is beyond +-14:00 or has minutes
# over 59. Cheap tests first: most stamps end in Z or are too short to carry an offset.
_IMPOSSIBLE_OFFSET = """(NOT ends_with(ts_s, 'Z') AND length(ts_s) >= 21 AND (
        (substr(ts_s, -6, 1) IN ('+', '-') AND substr(ts_s, -3, 1) = ':' AND substr(ts_s, -9, 1) = ':'
         AND (try_cast(substr(ts_s, -5, 2) AS INTEGER) > 14 OR try_cast(substr(ts_s, -2, 2) AS INTEGER) > 59))
        OR (substr(ts_s, -5, 1) IN ('+', '-') AND substr(ts_s, -8, 1) = ':'
         AND (try_cast(substr(ts_s, -4, 2) AS INTEGER) > 14 OR try_cast(substr(ts_s, -2, 2) AS INTEGER) > 59))))"""
QUARANTINE_COLUMNS = ("file", "line", "reason", *schema.COLUMNS, "raw")


@dataclass(frozen=True)
class Validated:
    """The outcome of validating one raw batch."""

    events: pa.Table  # EVENT_SCHEMA, plus _line
    quarantined: pa.Table  # line, reason, the raw canonical columns, raw


def _event_case(column: str) -> str:
    names = {name: name for name in schema.EVENT_TYPES} | schema.EVENT_ALIASES
    whens = " ".join(f"WHEN '{alias}' THEN '{canonical}'" for alias, canonical in names.items())
    return f"CASE lower({column}) {whens} END"


def _shown(column: str) -> str:
    """A value quoted for a reason message, cut to 40 characters."""
    return f"'''' || left({column}, 40) || ''''"


def _sql(epoch_unit: str) -> str:
    factor = schema.EPOCH_UNITS[epoch_unit]
    lo = schema.EARLIEST.strftime("%Y-%m-%d")
    hi = schema.LATEST.strftime("%Y-%m-%d")
    unit = schema.EPOCH_UNIT_NAMES[epoch_unit]
    return f"""
    WITH t AS (
        SELECT
            {LINE} AS line, {REASON} AS preset, {_POS},
            nullif(user_id, '') AS u,
            nullif(item_id, '') AS i,
            nullif(event, '') AS e,
            nullif("timestamp", '') AS ts_s,
            nullif(category_id, '') AS c,
            nullif(price, '') AS p_s,
            nullif(quantity, '') AS q_s,
            nullif(session_id, '') AS s,
            nullif(event_id, '') AS eid,
            nullif(rec_id, '') AS rid
        FROM raw_batch
    ), typed AS (
        SELECT *,
            {_event_case("e")} AS ev,
            try_cast(ts_s AS DOUBLE) AS ts_num,
            try_cast(p_s AS DOUBLE) AS p,
            try_cast(q_s AS DOUBLE) AS q
        FROM t
    ), parsed AS (
        SELECT *,
            CASE WHEN ts_num IS NOT NULL
                 THEN CASE WHEN abs(ts_num) < 9.2e18 / {factor}
                           THEN make_timestamp(CAST(ts_num * {factor} AS BIGINT)) END
                 ELSE try_cast(try_cast(ts_s AS TIMESTAMPTZ) AS TIMESTAMP) END AS ts
        FROM typed
    ), judged AS (
        SELECT *,
            CASE
                WHEN preset IS NOT NULL THEN preset
                WHEN u IS NULL THEN 'missing user_id'
                WHEN i IS NULL THEN 'missing item_id'
                WHEN e IS NULL THEN 'missing event'
                WHEN ev IS NULL THEN 'unknown event type: ' || {_shown("e")}
                    || ' (expected view, click, cart, fav, purchase or an alias such as pv, addtocart, transaction)'
                WHEN ts_s IS NULL THEN 'missing timestamp'
                WHEN ts_num IS NULL AND {_IMPOSSIBLE_OFFSET} THEN 'impossible UTC offset: ' || {_shown("ts_s")}
                    || ' (offsets run from -12:00 to +14:00)'
                WHEN ts IS NULL THEN 'unparseable timestamp: ' || {_shown("ts_s")}
                    || ' (expected ISO-8601 or a Unix epoch number in {unit})'
                WHEN ts < TIMESTAMP '{lo}' OR ts >= TIMESTAMP '{hi}' THEN 'timestamp out of range: ' || {_shown("ts_s")}
                    || ' reads as ' || strftime(ts, '%Y-%m-%d') || ', outside {lo[:4]}..{hi[:4]} (wrong epoch unit or a placeholder?)'
                WHEN p_s IS NOT NULL AND (p IS NULL OR isnan(p) OR isinf(p)) THEN 'price is not a number: ' || {_shown("p_s")}
                WHEN p < 0 THEN 'negative price: ' || {_shown("p_s")}
                WHEN q_s IS NOT NULL AND (q IS NULL OR isnan(q) OR isinf(q)) THEN 'quantity is not a number: ' || {_shown("q_s")}
                WHEN q < 0 THEN 'negative quantity: ' || {_shown("q_s")}
            END AS reason
        FROM parsed
    )
    SELECT u AS user_id, i AS item_id, ev AS event, ts AS "timestamp", c AS category_id,
           p AS price, q AS quantity, s AS session_id,
           eid AS event_id, rid AS rec_id, line AS {LINE}, reason, {_POS}
    FROM judged
    """


def _with_all_columns(table: pa.Table) -> pa.Table:
    """Add the canonical, reason and raw columns a reader did not provide, as nulls."""
    for name in (*schema.COLUMNS, REASON, RAW):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table


def _trimmed(table: pa.Table) -> pa.Table:
    """Strip surrounding blanks from the canonical columns (ASCII whitespace; safe on UTF-8 bytes)."""
    for name in schema.COLUMNS:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.ascii_trim_whitespace(table[name]))
    return table


def validate_batch(con: duckdb.DuckDBPyConnection, table: pa.Table, epoch_unit: str) -> Validated:
    """Split one raw batch into typed events and quarantined rows.

    Parameters
    ----------
    con
        A DuckDB connection (its session time zone is set to UTC here, so naive
        timestamps are read as UTC).
    table
        A raw batch (see :mod:`decayrec.io.source`).
    epoch_unit
        The unit of numeric timestamps in this file: ``"s"``, ``"ms"`` or ``"us"``.
    """
    con.execute("SET TimeZone = 'UTC'")
    raw = _with_all_columns(table)
    raw_batch = _trimmed(raw).append_column(_POS, pa.array(np.arange(raw.num_rows, dtype=np.int64)))
    con.register("raw_batch", raw_batch)
    try:
        judged = con.sql(_sql(epoch_unit)).to_arrow_table()
    finally:
        con.unregister("raw_batch")
    ok = pc.is_null(judged["reason"])
    events = judged.filter(ok).select([*EVENT_SCHEMA.names, LINE])
    bad = judged.filter(pc.invert(ok))
    quarantined = raw.take(bad[_POS]).select([LINE, *schema.COLUMNS, RAW])
    quarantined = quarantined.add_column(1, "reason", bad["reason"]).rename_columns(["line", "reason", *schema.COLUMNS, "raw"])
    return Validated(events, quarantined)


def numeric_timestamp_median(con: duckdb.DuckDBPyConnection, table: pa.Table) -> float | None:
    """The median magnitude of the numeric timestamps in a raw batch, or None if it has none."""
    if schema.TIMESTAMP not in table.column_names:
        return None
    ts_batch = table.select([schema.TIMESTAMP])
    con.register("ts_batch", ts_batch)
    try:
        value = con.execute('SELECT median(abs(try_cast(trim("timestamp") AS DOUBLE))) FROM ts_batch').fetchall()[0][0]
    finally:
        con.unregister("ts_batch")
    return cast(float | None, value)  # duckdb's fetchall rows are Any
