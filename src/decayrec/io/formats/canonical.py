"""The canonical layout (CONTRACT.md section 1): CSV (optionally gzip) or Parquet with named columns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from decayrec import schema
from decayrec.errors import InputError
from decayrec.io.source import LINE, RawBatch, Reader, check_readable, csv_batches, missing_columns_error, read_header


def _match_columns(path: Path, found: Sequence[str]) -> dict[str, str]:
    """Source column -> canonical column; header names match ignoring case and blanks."""
    wanted = {c.lower(): c for c in schema.COLUMNS}
    mapping: dict[str, str] = {}
    for name in found:
        canonical = wanted.get(name.strip().lower())
        if canonical is not None and canonical not in mapping.values():
            mapping[name] = canonical
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in mapping.values()]
    if missing:
        from decayrec.io.formats.sniff import guess_format

        guess = guess_format(found)
        hint = f"this looks like the {guess} layout: pass --format {guess}" if guess else ""
        raise missing_columns_error(path, missing, list(found), hint)
    return mapping


def _parquet_batches(path: Path, block_rows: int) -> Iterator[RawBatch]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path} is not a readable Parquet file ({exc})", "check the file") from None
    mapping = _match_columns(path, pf.schema_arrow.names)
    done = 0
    total = path.stat().st_size
    n_rows = max(pf.metadata.num_rows, 1)
    for batch in pf.iter_batches(batch_size=block_rows, columns=list(mapping)):
        table = pa.Table.from_batches([batch])
        columns = {}
        for name in table.column_names:
            col = table[name]
            if pa.types.is_timestamp(col.type) and col.type.tz is None:
                col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))
            columns[mapping[name]] = col.cast(pa.string())
        lines = pa.array(range(done + 1, done + table.num_rows + 1), pa.int64())
        done += table.num_rows
        yield RawBatch(pa.table(columns).append_column(LINE, lines), str(path), None, int(total * done / n_rows))


def read(paths: Sequence[Path], block_bytes: int) -> Iterator[RawBatch]:
    for path in paths:
        check_readable(path)
        if path.suffix == ".parquet":
            yield from _parquet_batches(path, block_rows=max(block_bytes // 64, 10_000))
            continue
        delimiter = "\t" if path.name.endswith((".tsv", ".tsv.gz")) else ","
        mapping = _match_columns(path, read_header(path, delimiter))
        yield from csv_batches(path, columns=mapping, delimiter=delimiter, block_bytes=block_bytes)


def check(paths: Sequence[Path]) -> None:
    """Every file's columns, before any is stored."""
    for path in paths:
        if path.suffix == ".parquet":
            try:
                names = pq.ParquetFile(path).schema_arrow.names
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputError(f"{path} is not a readable Parquet file ({exc})", "check the file") from None
        else:
            names = read_header(path, "\t" if path.name.endswith((".tsv", ".tsv.gz")) else ",")
        _match_columns(path, names)


READER = Reader(
    "canonical",
    "user_id,item_id,event,timestamp[,category_id,price,quantity,session_id] as CSV, CSV.gz, TSV or Parquet",
    read,
    check,
)
