"""Shared helpers of the public-dataset readers (:mod:`decayrec.io.formats.public`).

Headers are matched on *normalised* names (lower case, no blanks or underscores), so
``userId``, ``user_id`` and ``UserID`` are one column. Per-batch rewrites that need more
than a rename run as one DuckDB statement over the batch (vectorised, zero-copy), and
lookup files (categories, orders) are loaded once into an in-memory DuckDB database that
spills to a private temporary directory, so the big fact file is always streamed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from decayrec import schema
from decayrec.errors import InputError
from decayrec.io.formats.sniff import normalise as norm
from decayrec.io.source import LINE, RAW, REASON, RawBatch, missing_columns_error, open_text, read_header

# A delimiter that never occurs in text files: reads each physical line as one field.
WHOLE_LINE = "\x1f"
POS = "_pos"

_STRING_COLUMNS = (*schema.COLUMNS, REASON, RAW)


def header_names(path: Path, delimiter: str = ",") -> tuple[list[str], dict[str, str]]:
    """The header as written, and normalised name -> name as written (first one wins)."""
    found = read_header(path, delimiter)
    by_norm: dict[str, str] = {}
    for name in found:
        by_norm.setdefault(norm(name), name)
    return found, by_norm


def require(path: Path, found: Sequence[str], by_norm: Mapping[str, str], needed: Mapping[str, str], hint: str) -> None:
    """Raise the one-line missing-column error unless every normalised name in ``needed`` is present.

    ``needed`` maps normalised name -> the name as the dataset publishes it (shown in the error).
    """
    missing = [shown for key, shown in needed.items() if key not in by_norm]
    if missing:
        raise missing_columns_error(path, missing, list(found), hint)


def first_line(path: Path) -> str:
    """The first physical line of a file (``.gz`` decompressed), without BOM or line end."""
    with open_text(path) as fh:
        return fh.readline().lstrip("\ufeff").rstrip("\r\n")


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def as_raw(table: pa.Table) -> pa.Table:
    """Cast the canonical, reason and raw columns to ``string`` (DuckDB may hand out other string types)."""
    for i, name in enumerate(table.column_names):
        if name in _STRING_COLUMNS and table.schema.field(i).type != pa.string():
            table = table.set_column(i, name, table.column(i).cast(pa.string()))
        elif name == LINE and table.schema.field(i).type != pa.int64():
            table = table.set_column(i, name, table.column(i).cast(pa.int64()))
    return table


class Duck:
    """An in-memory DuckDB database for one read: lookup tables and per-batch statements.

    It spills to a private temporary directory (removed by :meth:`close`), never to the
    working directory.
    """

    def __init__(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="decayrec-duckdb-")
        self.con = duckdb.connect()
        self.con.execute(f"SET temp_directory = {sql_str(self._tmp)}")
        self.con.execute("SET TimeZone = 'UTC'")

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def csv(self, path: Path, found: Sequence[str], delimiter: str = ",") -> str:
        """A ``read_csv`` expression for a headed file, every column VARCHAR and named by its normalised name.

        Rows that do not parse (wrong number of fields) are skipped: only lookup files
        are read this way; the rows that become events always come through
        :func:`~decayrec.io.source.csv_batches`, which quarantines such rows.
        """
        names: list[str] = []
        for name in found:
            key = norm(name) or f"column{len(names)}"
            while key in names:
                key += "_"
            names.append(key)
        columns = ", ".join(f"{sql_str(n)}: 'VARCHAR'" for n in names)
        return (
            f"read_csv({sql_str(str(path))}, delim={sql_str(delimiter)}, header=true, quote='\"', escape='\"', "
            f"auto_detect=false, columns={{{columns}}}, ignore_errors=true, null_padding=false, "
            f"strict_mode=false, parallel=false)"
        )

    def create(self, name: str, sql: str, path: Path) -> None:
        """``CREATE TABLE name AS sql``; a file DuckDB cannot read becomes an :class:`InputError`."""
        try:
            self.con.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}")
        except duckdb.Error as exc:
            detail = str(exc).strip().splitlines()[0]
            raise InputError(f"{path}: cannot read it ({detail})", "check the file is the published CSV") from None

    def transform(self, sql: str) -> Callable[[pa.Table], pa.Table]:
        """A ``csv_batches`` transform running ``sql`` over the batch, registered as ``b``.

        ``b`` carries ``_pos`` (the row's position in the batch); ``sql`` must return one
        row per row of ``b`` and end with ``ORDER BY _pos`` when it joins.
        """

        def run(table: pa.Table) -> pa.Table:
            b = table.append_column(POS, pa.array(np.arange(table.num_rows, dtype=np.int64)))
            self.con.register("b", b)
            try:
                out = self.con.sql(sql).to_arrow_table()
            finally:
                self.con.unregister("b")
            if out.num_rows != table.num_rows:  # pragma: no cover - a bug in a reader's SQL
                raise AssertionError(f"transform changed the row count {table.num_rows} -> {out.num_rows}")
            if POS in out.column_names:
                out = out.drop_columns([POS])
            return as_raw(out)

        return run


def duck_batches(duck: Duck, sql: str, source: Path, batch_rows: int) -> Iterator[RawBatch]:
    """Stream the result of ``sql`` (canonical columns, ``_line``, ``_reason``...) as raw batches of ``source``."""
    reader = duck.con.sql(sql).to_arrow_reader(batch_rows)
    size = source.stat().st_size
    for batch in reader:
        if batch.num_rows:
            yield RawBatch(as_raw(pa.Table.from_batches([batch])), str(source), None, size)


def no_main_file(paths: Sequence[Path], needed: Mapping[str, str], expected: str, delimiter: str = ",") -> InputError:
    """The error for inputs among which no file has the main columns: the first file's missing columns."""
    found, by_norm = header_names(paths[0], delimiter)
    require(paths[0], found, by_norm, needed, f"give {expected}")
    return InputError(f"none of {', '.join(str(p) for p in paths)} is the main events file", f"give {expected}")


def sniff_delimiter(path: Path, preferred: str, other: str) -> str:
    """``preferred`` unless the header read with it is one field that contains ``other``."""
    found = read_header(path, preferred)
    return other if len(found) == 1 and other in found[0] else preferred


def classify(
    paths: Sequence[Path],
    signatures: Mapping[str, frozenset[str]],
    ignored: Sequence[frozenset[str]],
    main: Mapping[str, str],
    expected: str,
    delimiter: str | tuple[str, str] = ",",
) -> dict[str, list[tuple[Path, str, list[str], dict[str, str]]]]:
    """Sort a multi-file format's inputs by header (never by file name).

    ``signatures`` maps a role to the normalised columns that identify it (the first
    role that matches wins, so list supersets first); files whose header matches one of
    ``ignored`` (side tables that carry nothing the events need) are skipped; any other
    file gets the missing-column error against ``main`` (the main file's columns,
    normalised -> published name). ``delimiter`` may be a (preferred, other) pair.
    Returns role -> [(path, delimiter, header as written, normalised -> written)].
    """
    roles: dict[str, list[tuple[Path, str, list[str], dict[str, str]]]] = {role: [] for role in signatures}
    for path in paths:
        delim = sniff_delimiter(path, *delimiter) if isinstance(delimiter, tuple) else delimiter
        found, by_norm = header_names(path, delim)
        keys = set(by_norm)
        role = next((r for r, sig in signatures.items() if sig <= keys), None)
        if role is not None:
            roles[role].append((path, delim, found, by_norm))
        elif not any(sig <= keys for sig in ignored):
            require(path, found, by_norm, main, f"give {expected}")
            raise InputError(f"{path} is not a file of this layout", f"give {expected}")  # pragma: no cover
    return roles


__all__ = [
    "POS",
    "WHOLE_LINE",
    "Duck",
    "as_raw",
    "classify",
    "duck_batches",
    "first_line",
    "header_names",
    "no_main_file",
    "norm",
    "require",
    "sniff_delimiter",
    "sql_str",
]
