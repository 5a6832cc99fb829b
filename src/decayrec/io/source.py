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
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from decayrec.errors import InputError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

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
    check: Callable[[Sequence[Path]], None] | None = None


def preflight(paths: Sequence[Path]) -> None:
    """Refuse, before anything is stored, a file that cannot be read at all: missing, a
    directory, unreadable, empty, or a ``.gz`` that is not gzip."""
    for path in paths:
        check_readable(path)
        if path.stat().st_size == 0:
            raise InputError(f"{path} is empty", "give a file with a header row and at least one event")
        if path.suffix == ".gz":
            try:
                with gzip.open(path, "rb") as fh:
                    fh.read(1)
            except (OSError, EOFError) as exc:
                raise compression_error(path, exc) from None


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file, transparently decompressing ``.gz``; a UTF-8 byte-order mark is dropped."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def compression_error(path: Path, exc: BaseException) -> InputError:
    """The one-line error for a ``.gz`` that is not gzip, or is cut short."""
    text = str(exc).lower()
    if "truncat" in text or isinstance(exc, EOFError) or "end of" in text:
        return InputError(f"{path} is cut short (the gzip stream ends early)", "copy or download the file again")
    return InputError(
        f"{path} is not a readable gzip file ({str(exc).splitlines()[0]})",
        "decompress it with gunzip to check, or drop the .gz suffix if it is plain text",
    )


def read_header(path: Path, delimiter: str = ",") -> list[str]:
    """The first row of a delimited file, stripped of blanks and a UTF-8 BOM."""
    check_readable(path)
    try:
        with open_text(path) as fh:
            try:
                row = next(csv.reader(fh, delimiter=delimiter))
            except StopIteration:
                raise InputError(f"{path} is empty", "give a file with a header row and at least one event") from None
            except csv.Error as exc:
                raise InputError(f"{path}: cannot read the header ({exc})", "check the file is a delimited text file") from None
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise compression_error(path, exc) from None
    return [name.strip().lstrip("\ufeff").strip() for name in row]


UNBALANCED_QUOTE = (
    "unbalanced quote: the line has an odd number of '\"' characters (a quoted field must close on "
    "its own line; fields with line breaks are not supported)"
)
NOT_UTF8 = "not UTF-8 text: the line holds bytes that are not UTF-8 (save the file as UTF-8)"


class LineGuard(io.RawIOBase):
    """A byte stream that blanks the lines a CSV parser would misread, remembering them.

    A line with an odd number of quote characters opens a quoted field it never closes;
    handed to the parser as is, it swallows every line after it into one row. A line that
    is not UTF-8 stops the parser. Each such line is passed on empty (so the parser reports
    it as an invalid row at its own physical line, and later line numbers stay exact) and
    kept in :attr:`bad` as ``{line: (reason, text)}``. Lines end as the parser ends them
    (``\n``, ``\r\n`` or a lone ``\r``); the scan is vectorised and the slow path runs
    only on blocks that hold a bad line.
    """

    def __init__(self, stream: pa.NativeFile, chunk_bytes: int = 8 << 20):
        self.stream = stream
        self.chunk_bytes = chunk_bytes
        self.bad: dict[int, tuple[str, str]] = {}
        self._out = b""
        self._pos = 0  # how much of _out has been handed out (an offset: slicing would copy the rest each read)
        self._tail = b""
        self._line = 1  # the physical number of the next line to start
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while self._pos >= len(self._out) and not self._eof:
            chunk = self.stream.read(self.chunk_bytes)
            if not chunk:
                self._eof = True
                block, self._tail = self._tail, b""
            else:
                data = self._tail + bytes(chunk)
                # Cut after the last complete line; a trailing \r waits: it may be half of \r\n.
                cut = max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)) + 1
                block, self._tail = data[:cut], data[cut:]
            if block:
                self._out, self._pos = self._clean(block), 0
        # A bytearray or a memoryview of bytes: a view of it has the same length and slices. Released
        # on leaving the block, so the caller may resize its bytearray (io.RawIOBase.read does).
        with memoryview(buffer) as view, memoryview(self._out) as out:
            n = min(len(view), len(out) - self._pos)
            view[:n] = out[self._pos : self._pos + n]
        self._pos += n
        return n

    def _clean(self, block: bytes) -> bytes:
        """``block`` (whole lines) with its bad lines emptied; line ends as the CSV parser reads them:
        ``\n``, ``\r\n`` or a lone ``\r``."""
        first = self._line
        quoted = b'"' in block
        try:
            block.decode("utf-8")
            utf8 = True
        except UnicodeDecodeError:
            utf8 = False
        if not quoted and utf8 and block.count(b"\r") == block.count(b"\r\n"):  # the common case: nothing to blank
            self._line += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            return block
        arr = np.frombuffer(block, dtype=np.uint8)
        lf = arr == 10
        end = lf | (arr == 13)
        end[:-1] &= ~((arr[:-1] == 13) & lf[1:])  # the \r of \r\n does not end a line: its \n does
        stops = np.flatnonzero(end) + 1  # one past each line's terminator
        if not stops.size or stops[-1] != len(block):
            stops = np.append(stops, len(block))  # the last line of a file without a final line break
        self._line += int(stops.size)
        starts = np.concatenate(([0], stops[:-1]))
        odd = np.zeros(0, dtype=np.int64)
        if quoted:  # the parity of each line's quotes, one pass (every line holds at least its terminator)
            odd = np.flatnonzero(np.bitwise_xor.reduceat((arr == 34).view(np.uint8), starts))
        broken = set() if utf8 else {j for j in range(stops.size) if not _is_utf8(block[starts[j] : stops[j]])}
        if not odd.size and not broken:
            return block
        out, done = [], 0
        for j in sorted(set(odd.tolist()) | broken):
            text = block[starts[j] : stops[j]]
            body = text.rstrip(b"\r\n")
            self.bad[first + j] = (NOT_UTF8 if j in broken else UNBALANCED_QUOTE, body.decode("utf-8", errors="replace"))
            out += [block[done : starts[j]], text[len(body) :]]  # the line's terminator stays: numbering holds
            done = int(stops[j])
        out.append(block[done:])
        return b"".join(out)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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

    raw = pa.OSFile(str(path), "rb")
    # Whole blocks of block_bytes for the parser: smaller reads would make smaller batches.
    guard = LineGuard(pa.CompressedInputStream(raw, "gzip") if path.suffix == ".gz" else raw, chunk_bytes=block_bytes)

    def on_invalid(row: pacsv.InvalidRow) -> str:
        number = row.number if row.number is not None else -1
        if number in guard.bad:
            reason, text = guard.bad.pop(number)
        elif not row.text.strip():
            reason, text = "blank line", row.text
        else:
            reason, text = f"wrong number of fields: expected {row.expected_columns}, found {row.actual_columns}", row.text
        rejected.append((number, reason, text))
        return "skip"

    try:
        reader = _open_csv(guard, names, skip, columns, delimiter, block_bytes, on_invalid)
    except (OSError, EOFError) as exc:
        raw.close()
        raise compression_error(path, exc) from None
    except pa.ArrowInvalid as exc:
        raw.close()
        raise InputError(f"{path}: cannot parse as delimited text ({exc})", "check the file and --format") from None
    next_line = skip + 1
    source = str(path)
    seen_rows = False
    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise InputError(f"{path}: cannot parse as delimited text ({exc})", "check the file and --format") from None
            except (OSError, EOFError) as exc:
                raise compression_error(path, exc) from None
            table = pa.Table.from_batches([batch]).rename_columns([columns[c] for c in batch.schema.names])
            if transform is not None:
                table = transform(table)
            # The handler runs ahead of the batches (read-ahead of the next block), so a
            # rejected row is kept until the kept rows have passed its line.
            invalid = np.array(sorted(r[0] for r in rejected if r[0] >= next_line), dtype=np.int64)
            lines = _valid_lines(next_line, table.num_rows, invalid)
            table = table.append_column(LINE, pa.array(lines, pa.int64()))
            if guard.bad:
                table = _mark_guarded(table, lines, guard.bad)
            if table.num_rows:
                next_line = int(lines[-1]) + 1
                seen_rows = True
            yield RawBatch(table, source, epoch_unit, raw.tell())
            passed = [r for r in rejected if r[0] < next_line]
            seen_rows = seen_rows or bool(rejected)
            if passed:
                yield _rejected_batch(passed, source, epoch_unit, raw.tell())
                rejected[:] = [r for r in rejected if r[0] >= next_line]
        if rejected:
            yield _rejected_batch(rejected, source, epoch_unit, raw.tell())
        if next_line == skip + 1 and not seen_rows:  # a header and nothing else: still a file with 0 rows read
            empty = {columns[c]: pa.array([], pa.string()) for c in columns} | {LINE: pa.array([], pa.int64())}
            yield RawBatch(pa.table(empty), source, epoch_unit, raw.tell())
    finally:
        raw.close()


def _mark_guarded(table: pa.Table, lines: np.ndarray, bad: dict[int, tuple[str, str]]) -> pa.Table:
    """Give the rows of lines the :class:`LineGuard` blanked their reason and original text."""
    hit = lines[np.isin(lines, np.fromiter(bad, dtype=np.int64, count=len(bad)))].tolist()
    if not hit:
        return table
    found = {line: bad.pop(line) for line in hit}
    reason = [found[line][0] if line in found else None for line in lines.tolist()]
    text = [found[line][1] if line in found else None for line in lines.tolist()]
    return table.append_column(REASON, pa.array(reason, pa.string())).append_column(RAW, pa.array(text, pa.string()))


def _open_csv(
    guard: LineGuard,
    names: list[str],
    skip: int,
    columns: dict[str, str],
    delimiter: str,
    block_bytes: int,
    on_invalid: Callable[[pacsv.InvalidRow], str],
) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(
        guard,
        read_options=pacsv.ReadOptions(
            # Single-threaded: only then does pyarrow report the line of a rejected row
            # (InvalidRow.number is None with threads), and the lines of the kept rows
            # are derived from those of the rejected ones.
            use_threads=False,
            block_size=block_bytes,
            column_names=names,
            skip_rows=skip,
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
    "RAW",
    "REASON",
    "RawBatch",
    "Reader",
    "check_readable",
    "compression_error",
    "csv_batches",
    "missing_columns_error",
    "open_text",
    "preflight",
    "read_header",
]
