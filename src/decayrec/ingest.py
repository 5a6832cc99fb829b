"""Ingest: read files in a format, validate at the boundary, append to the store, quarantine the rest.

The counts obey ``kept + quarantined + duplicates == rows_read`` for every file and in total;
:class:`IngestReport` carries them, the epoch unit found per file and the commonest reasons.
Files are streamed in blocks, so a file larger than memory works; each block is committed
to the store before the next is read.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from decayrec import schema
from decayrec.errors import InputError
from decayrec.io.formats import get_reader
from decayrec.io.source import DEFAULT_BLOCK_BYTES, RawBatch, preflight
from decayrec.io.validate import QUARANTINE_COLUMNS, Validated, numeric_timestamp_median, validate_batch
from decayrec.store import EventStore

ProgressFn = Callable[[int, int], None]


@dataclass
class FileReport:
    """Counts for one source file."""

    source: str
    rows_read: int = 0
    kept: int = 0
    quarantined: int = 0
    duplicates: int = 0
    epoch_unit: str | None = None
    reasons: Counter = field(default_factory=Counter)
    error: str | None = None  # why the file could not be read to its end (its rows before that are counted)

    @property
    def balanced(self) -> bool:
        return self.kept + self.quarantined + self.duplicates == self.rows_read


@dataclass
class IngestReport:
    """What an ingest did: per-file counts, totals, and where the quarantined rows went."""

    format: str
    files: list[FileReport]
    quarantine_path: str | None

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def kept(self) -> int:
        return sum(f.kept for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    def to_dict(self) -> dict:
        files = [asdict(f) | {"reasons": dict(f.reasons.most_common(20))} for f in self.files]
        return {
            "format": self.format,
            "files": files,
            "rows_read": self.rows_read,
            "kept": self.kept,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "quarantine_path": self.quarantine_path,
        }


class IngestError(InputError):
    """A file failed part-way through an ingest; :attr:`report` says what was stored before it."""

    def __init__(self, problem: str, fix: str, report: IngestReport):
        super().__init__(problem, fix)
        self.report = report


class _Quarantine:
    """Appends quarantined rows to one CSV, opened on first use (or at once when asked for)."""

    schema = pa.schema(
        [("file", pa.string()), ("line", pa.int64()), ("reason", pa.string())]
        + [(c, pa.string()) for c in QUARANTINE_COLUMNS[3:]]
    )

    def __init__(self, path: Path | None, always: bool):
        self.path = path
        self.writer: pacsv.CSVWriter | None = None
        if always:
            self._open()

    def _open(self) -> None:
        assert self.path is not None  # opened only with a path (write returns first without one; always needs one)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = pacsv.CSVWriter(str(self.path), self.schema)

    def write(self, source: str, table: pa.Table) -> None:
        if table.num_rows == 0 or self.path is None:
            return
        if self.writer is None:
            self._open()
            assert self.writer is not None  # set by _open
        table = table.select(list(QUARANTINE_COLUMNS[1:]))
        table = table.add_column(0, "file", pa.array([source] * table.num_rows, pa.string()))
        self.writer.write_table(table.cast(self.schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def ingest(
    paths: Sequence[str | Path],
    store: EventStore,
    *,
    format: str = "canonical",
    quarantine: str | Path | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Validate ``paths`` and append their usable events to ``store``.

    Parameters
    ----------
    paths
        The files to read; multi-file formats (Instacart, Olist) take all of theirs at once.
    format
        A reader name from :data:`decayrec.io.formats.READERS`.
    quarantine
        Where rows that cannot be used are written (CSV with file, line, reason and the raw
        values). Default: ``STORE/quarantine/ingest-N.csv``, written only if a row is quarantined.
    progress
        Called as ``progress(bytes_done, bytes_total)`` after each block.

    Raises
    ------
    InputError
        A file is missing, unreadable, empty, not gzip, or lacks a required column: raised
        before anything is stored.
    IngestError
        A file failed part-way (cut short) or has no usable row: the files and rows read
        before are stored, the report (with the error) is in the store's log and on
        the exception, whose message says so; ingesting again adds only what is new.
    """
    reader = get_reader(format)
    path_list = [Path(p) for p in paths]
    if not path_list:
        raise InputError("no input file given", "name at least one events file")
    # Files that cannot be read at all are refused before anything is stored.
    preflight(path_list)
    if reader.check is not None:
        reader.check(path_list)
    total = sum(p.stat().st_size for p in path_list if p.is_file())
    if quarantine is not None:
        qpath, always = Path(quarantine), True
    elif store.directory is not None:
        qpath, always = store.directory / "quarantine" / f"ingest-{store.next_ingest_id()}.csv", False
    else:  # an in-memory store for a read-only command: counts only, no file written
        qpath, always = None, False
    sink = _Quarantine(qpath, always)
    files: dict[str, FileReport] = {}
    finished_bytes: dict[str, int] = {}
    failure: InputError | None = None
    try:
        for source, validated, bytes_done in _guarded(_validated_stream(reader.read(path_list, block_bytes), files)):
            if isinstance(validated, InputError):
                failure = validated
                break
            report = files[source]
            inserted, duplicates = store.append(validated.events)
            report.kept += inserted
            report.duplicates += duplicates
            report.quarantined += validated.quarantined.num_rows
            if validated.quarantined.num_rows:
                report.reasons.update(_reason_kinds(validated.quarantined["reason"].to_pylist()))
                sink.write(source, validated.quarantined)
            finished_bytes[source] = bytes_done
            if progress is not None:
                progress(min(sum(finished_bytes.values()), total), total)
    finally:
        sink.close()
    if failure is not None:
        _failed_file(failure, files, path_list).error = failure.problem
    result = IngestReport(format, list(files.values()), str(qpath) if (always or sink.writer) else None)
    if failure is not None:
        store.record_ingest(result.to_dict())
        kept = result.kept
        raise IngestError(
            failure.problem,
            (failure.fix or "fix the file")
            + (f"; {kept:,} events read before it are stored, and ingesting it again adds only what is new" if kept else ""),
            result,
        )
    store.record_ingest(result.to_dict())
    stored = f"; the {result.kept:,} events of the other files are stored" if result.kept else ""
    for report in result.files:
        if report.rows_read == 0:
            raise IngestError(
                f"{report.source} has no events", "give a file with at least one row after the header" + stored, result
            )
        if report.kept + report.duplicates == 0:
            reason, count = report.reasons.most_common(1)[0]
            raise IngestError(
                f"{report.source}: none of its {report.rows_read:,} rows is usable "
                f"({count:,} x {reason}" + (f"; all rows are in {qpath})" if qpath else ")"),
                "fix the rows or pass the --format that matches the file" + stored,
                result,
            )
    if not files:
        raise InputError(f"{', '.join(map(str, path_list))} has no events", "give a file with at least one row after the header")
    return result


def _guarded(stream: Iterator[tuple[str, Validated, int]]) -> Iterator[tuple[str, Validated | InputError, int]]:
    """The stream, ending with the InputError that stopped it (if any) instead of raising it."""
    try:
        yield from stream
    except InputError as exc:
        yield "", exc, 0


def _failed_file(failure: InputError, files: dict[str, FileReport], paths: Sequence[Path]) -> FileReport:
    """The report of the file an error names (the last one read when it names none)."""
    for name, report in files.items():
        if failure.problem.startswith(name):
            return report
    named = next((str(p) for p in paths if failure.problem.startswith(str(p))), None)
    if named is None:
        named = list(files)[-1] if files else str(paths[0])
    return files.setdefault(named, FileReport(named))


def _validated_stream(
    batches: Iterator[RawBatch], files: dict[str, FileReport], depth: int = 2
) -> Iterator[tuple[str, Validated, int]]:
    """Read and validate blocks in a background thread, so parsing overlaps the store's writes.

    Validation runs on its own in-memory DuckDB connection; the store's connection stays
    with the caller's thread. Errors raised while reading are re-raised here, in order.
    """
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        con = duckdb.connect()
        try:
            for batch in batches:
                if stop.is_set():
                    return
                report = files.setdefault(batch.source, FileReport(batch.source))
                unit = batch.epoch_unit or report.epoch_unit
                if unit is None:
                    median = numeric_timestamp_median(con, batch.table)
                    if median is not None:
                        unit = schema.detect_epoch_unit(median)
                report.epoch_unit = report.epoch_unit or unit
                report.rows_read += batch.table.num_rows
                put((batch.source, validate_batch(con, batch.table, unit or "s"), batch.bytes_done))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(exc)
            return
        finally:
            con.close()
        put(done)

    thread = threading.Thread(target=work, name="decayrec-ingest-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _reason_kinds(reasons: list[str]) -> list[str]:
    """Group reasons by kind (the text before the first colon), so counts stay readable."""
    return [r.split(":", 1)[0] for r in reasons]
