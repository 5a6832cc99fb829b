"""Raw batches: files read as plain strings, with physical line numbers, before validation.

Every reader (``--format``) turns its files into a stream of :class:`RawBatch`: a table of
string columns named as in :mod:`decayrec.schema` (any subset of them), plus ``_line``
(the physical line in the source file, the header being line 1), and optionally
``_reason`` (a quarantine reason the reader already knows, e.g. a row with the wrong
number of fields) and ``_raw`` (the original text of such a row). Nothing is typed or
dropped here; :mod:`decayrec.io.validate` decides what is kept.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from decayrec.errors import InputError

LINE = "_line"
REASON = "_reason"
RAW = "_raw"

DEFAULT_BLOCK_BYTES = 32 << 20


@dataclass(frozen=True)
class RawBatch:
    """A chunk of one source file, as strings, ready for validation.

    Attributes
    ----------
    table
        String columns named after :data:`decayrec.schema.COLUMNS` (a subset), ``_line``
        (int64) and optionally ``_reason`` / ``_raw``.
    source
        The file the rows came from, as shown in reports and the quarantine file.
    epoch_unit
        ``"s"``, ``"ms"`` or ``"us"`` when the format fixes the unit of numeric
        timestamps; ``None`` to detect it once per file from the data.
    bytes_done
        How many bytes of the source have been consumed so far (for progress bars).
    """

    table: pa.Table
    source: str
    epoch_unit: str | None = None
    bytes_done: int = 0


@dataclass(frozen=True)
class Reader:
    """One ``--format``: a name, a line of help, and the function that streams raw batches.

    ``read(paths, block_bytes)`` yields :class:`RawBatch` es; it raises
    :class:`~decayrec.errors.InputError` for a file it cannot use at all (missing column,
    unreadable), and leaves row-level problems to validation.
    """

    name: str
    description: str
    read: Callable[[Sequence[Path], int], Iterator[RawBatch]]


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file, transparently decompressing ``.gz``."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def read_header(path: Path, delimiter: str = ",") -> list[str]:
    """The first row of a delimited file, stripped of blanks and a UTF-8 BOM."""
    check_readable(path)
    with open_text(path) as fh:
        try:
            row = next(csv.reader(fh, delimiter=delimiter))
        except StopIteration:
            raise InputError(f"{path} is empty", "give a file with a header row and at least one event") from None
        except csv.Error as exc:
            raise InputError(f"{path}: cannot read the header ({exc})", "check the file is a delimited text file") from None
    return [name.strip().lstrip("\ufeff").strip() for name in row]


def check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path} does not exist", "check the path")
    if path.is_dir():
        raise InputError(f"{path} is a directory", "give the events file inside it")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path} is not readable", "check its permissions")


def _valid_lines(start: int, n: int, invalid: np.ndarray) -> np.ndarray:
    """The physical numbers of ``n`` parsed rows starting at ``start``, skipping rejected ones."""
    candidates = np.arange(start, start + n + len(invalid), dtype=np.int64)
    if len(invalid):
        candidates = candidates[~np.isin(candidates, invalid)]
    return candidates[:n]


def csv_batches(
    path: Path,
    *,
    columns: dict[str, str],
    delimiter: str = ",",
    header: bool = True,
    names: Sequence[str] | None = None,
    epoch_unit: str | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    transform: Callable[[pa.Table], pa.Table] | None = None,
) -> Iterator[RawBatch]:
    """Stream a delimited file as raw string batches with physical line numbers.

    Parameters
    ----------
    path
        The file (``.gz`` is decompressed on the fly).
    columns
        Source column name -> canonical column name, for the columns to keep.
    header
        Whether the first line names the columns; when it does not, ``names`` must.
    transform
        Optional function applied to each batch of canonical string columns (before
        ``_line`` is attached), for formats that need to derive or rewrite columns.
    """
    check_readable(path)
    if header:
        names = read_header(path, delimiter)
        skip = 1
    else:
        if names is None:
            raise ValueError("names are required for a file without a header")
        skip = 0
    names = list(names)
    unnamed = [f"_extra{i}" for i, name in enumerate(names) if not name]
    names = [name or unnamed.pop(0) for name in names]

    rejected: list[tuple[int, str, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        if not row.text.strip():
            reason = "blank line"
        else:
            reason = f"wrong number of fields: expected {row.expected_columns}, found {row.actual_columns}"
        rejected.append((row.number if row.number is not None else -1, reason, row.text))
        return "skip"

    raw = pa.OSFile(str(path), "rb")
    stream = pa.CompressedInputStream(raw, "gzip") if path.suffix == ".gz" else raw
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(
            # Single-threaded: only then does pyarrow report the line of a rejected row
            # (InvalidRow.number is None with threads), and the lines of the kept rows
            # are derived from those of the rejected ones.
            use_threads=False, block_size=block_bytes, column_names=names, skip_rows=skip
        ),
        # Blank lines are rows too (quarantined as such): skipping them would shift line numbers.
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter, invalid_row_handler=on_invalid, newlines_in_values=False, ignore_empty_lines=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            include_columns=list(columns),
            quoted_strings_can_be_null=False,
            strings_can_be_null=False,
        ),
    )
    next_line = skip + 1
    source = str(path)
    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise InputError(f"{path}: cannot parse as delimited text ({exc})", "check the file and --format") from None
            table = pa.Table.from_batches([batch]).rename_columns([columns[c] for c in batch.schema.names])
            if transform is not None:
                table = transform(table)
            # The handler runs ahead of the batches (read-ahead of the next block), so a
            # rejected row is kept until the kept rows have passed its line.
            invalid = np.array(sorted(r[0] for r in rejected if r[0] >= next_line), dtype=np.int64)
            lines = _valid_lines(next_line, table.num_rows, invalid)
            table = table.append_column(LINE, pa.array(lines, pa.int64()))
            if table.num_rows:
                next_line = int(lines[-1]) + 1
            yield RawBatch(table, source, epoch_unit, raw.tell())
            passed = [r for r in rejected if r[0] < next_line]
            if passed:
                yield _rejected_batch(passed, source, epoch_unit, raw.tell())
                rejected[:] = [r for r in rejected if r[0] >= next_line]
        if rejected:
            yield _rejected_batch(rejected, source, epoch_unit, raw.tell())
    finally:
        raw.close()


def _rejected_batch(rejected: list[tuple[int, str, str]], source: str, epoch_unit: str | None, done: int) -> RawBatch:
    lines, reasons, texts = zip(*rejected)
    table = pa.table(
        {
            LINE: pa.array(lines, pa.int64()),
            REASON: pa.array(reasons, pa.string()),
            RAW: pa.array(texts, pa.string()),
        }
    )
    return RawBatch(table, source, epoch_unit, done)


def missing_columns_error(path: Path, missing: Sequence[str], found: Sequence[str], hint: str = "") -> InputError:
    """The one-line error for a file that lacks required columns."""
    shown = ", ".join(found[:12]) + (", ..." if len(found) > 12 else "")
    fix = hint or (
        "rename the columns to the canonical names (user_id,item_id,event,timestamp) "
        "or pass --format for a published layout (see decayrec ingest --help)"
    )
    return InputError(f"{path} has no column {', '.join(repr(m) for m in missing)} (found: {shown})", fix)


__all__ = [
    "LINE",
    "REASON",
    "RAW",
    "RawBatch",
    "Reader",
    "csv_batches",
    "read_header",
    "open_text",
    "check_readable",
    "missing_columns_error",
]
