"""Output paths: checked before any work starts, written whole or not at all.

Every command names its outputs (``--out``, ``--quarantine``, ``--card``, ``--plan``,
``--plot``, a store) and its inputs, and calls :func:`check_outputs` first: an output that
is a directory, has a suffix the command cannot write, lies under an unwritable or
missing-and-uncreatable folder, or is one of the inputs (or another output) is refused
with one line before a single row is read. :func:`write_table` then writes a table by its
suffix (CSV, gzip CSV or Parquet) through a temporary file renamed into place, so a
failure never leaves half a file, and never over an input.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from decayrec.errors import InputError

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def suffix_of(path: Path) -> str:
    """``.csv.gz`` for a gzip CSV, else the last suffix (lower case)."""
    name = path.name.lower()
    if name.endswith(".csv.gz"):
        return ".csv.gz"
    return path.suffix.lower()


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _writable_parent(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path``, if decayrec can create ``path`` under it."""
    parent = path.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return None
    try:  # permissions can say yes where the file system says no (read-only mounts, /proc, root)
        fd, probe = tempfile.mkstemp(prefix=".decayrec-probe-", dir=parent)
    except OSError:
        return None
    os.close(fd)
    os.unlink(probe)
    return parent


def check_outputs(
    outputs: Mapping[str, Path | None],
    inputs: Iterable[Path | None] = (),
    *,
    suffixes: Mapping[str, Sequence[str]] | None = None,
    directories: Sequence[str] = (),
) -> None:
    """Refuse unusable output paths before any work starts.

    Parameters
    ----------
    outputs
        Option name (as the user typed it, e.g. ``"--out"``) -> path, or None when not given.
    inputs
        Every path the command reads (files and store directories).
    suffixes
        Option name -> the suffixes it can write (e.g. ``(".csv", ".parquet")``).
    directories
        Options whose path is a directory (a store): it may exist as a directory.
    """
    suffixes = suffixes or {}
    read = [Path(p) for p in inputs if p is not None]
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        is_dir_option = option in directories
        if path.is_dir() and not is_dir_option:
            raise InputError(
                f"{option} {path} is a directory", f"give a file name for {option}, e.g. {path / _example(option, suffixes)}"
            )
        if is_dir_option and path.exists() and not path.is_dir():
            raise InputError(f"{option} {path} is a file", f"give a directory for {option}")
        allowed = suffixes.get(option)
        if allowed and suffix_of(path) not in allowed:
            raise InputError(f"cannot tell what to write to {path} ({option})", f"name it FILE{' or FILE'.join(allowed)}")
        for source in read:
            if _same(path, source) or (source.is_dir() and _same(path, source / "events.duckdb")):
                raise InputError(
                    f"{option} {path} is also an input", "write it to another path: decayrec never writes over its inputs"
                )
            if is_dir_option and source.exists() and path.resolve() in source.resolve().parents:
                raise InputError(f"{option} {path} contains the input {source}", "put the store somewhere else")
        key = path.resolve()
        if key in seen:
            raise InputError(f"{option} and {seen[key]} are the same file {path}", "give each output its own path")
        seen[key] = option
        if not (path.exists() and os.access(path, os.W_OK)) and _writable_parent(path) is None:
            raise InputError(f"cannot write {path} ({option}): its folder is missing or not writable", "choose a writable path")


def _example(option: str, suffixes: Mapping[str, Sequence[str]]) -> str:
    allowed = suffixes.get(option) or (".csv",)
    return {"--card": "CARD", "--quarantine": "bad_rows", "--plot": "plot"}.get(option, "OUT") + allowed[0]


def _replace_into(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(table: pa.Table, path: str | Path) -> None:
    """Write ``table`` to ``path`` as CSV (``.csv``), gzip CSV (``.csv.gz``) or Parquet (``.parquet``)."""
    path = Path(path)
    kind = suffix_of(path)
    if kind not in TABLE_SUFFIXES:
        raise InputError(f"cannot tell the format of {path}", "name it FILE.csv, FILE.csv.gz or FILE.parquet")
    table = table.replace_schema_metadata(None)

    def write(tmp: Path) -> None:
        if kind == ".parquet":
            pq.write_table(table, tmp, compression="zstd")
        elif kind == ".csv.gz":
            with pa.CompressedOutputStream(str(tmp), "gzip") as stream:
                pacsv.write_csv(table, stream)
        else:
            pacsv.write_csv(table, tmp)

    _replace_into(path, write)


def write_text(text: str, path: str | Path) -> None:
    """Write a text file (JSON) whole or not at all."""
    _replace_into(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_safe(value: Any) -> Any:
    """NaN and infinities become None (JSON has no such numbers), recursively through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


__all__ = ["TABLE_SUFFIXES", "check_outputs", "json_safe", "suffix_of", "write_table", "write_text"]
