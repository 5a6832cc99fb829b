"""Ingest benchmark: rows per second for canonical CSV ingest, and peak memory.

Writes a synthetic canonical CSV of ``--rows`` rows (ISO-8601 timestamps, 8 columns,
about 1% duplicate rows), ingests it into a fresh store, ingests it again (everything
must come back as a duplicate) and records throughput and peak resident memory.
Each ingest runs in a fresh child process, so peak memory is that ingest's own.

    python bench/bench_ingest.py --rows 1000000 --out bench/results/ingest.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv


def make_csv(path: Path, rows: int, seed: int = 0) -> int:
    """A canonical CSV with realistic cardinalities; returns the number of distinct rows."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(rows // 20, 1), max(rows // 50, 1)
    base = np.datetime64("2024-01-01T00:00:00", "s").astype(np.int64)
    ts = np.sort(base + rng.integers(0, 90 * 86400, rows))
    dup = rng.random(rows) < 0.01  # 1% of rows repeat the previous row exactly
    idx = np.arange(rows)
    idx[1:][dup[1:]] = idx[:-1][dup[1:]]
    users = rng.integers(0, n_users, rows)[idx]
    items = rng.integers(0, n_items, rows)[idx]
    events = np.array(["view", "click", "cart", "fav", "purchase"])[rng.choice(5, rows, p=[0.6, 0.2, 0.1, 0.05, 0.05])][idx]
    times = ts[idx].astype("datetime64[s]")
    table = pa.table(
        {
            "user_id": pa.array(np.char.add("u", users.astype(str))),
            "item_id": pa.array(np.char.add("i", items.astype(str))),
            "event": pa.array(events),
            "timestamp": pa.array(np.char.add(np.datetime_as_string(times, unit="s"), "Z")),
            "category_id": pa.array(np.char.add("c", (items % 300).astype(str))),
            "price": pa.array(np.round(5 + (items % 97) * 1.25, 2)),
            "quantity": pa.array(np.ones(rows)),
            "session_id": pa.array(np.char.add("s", (users * 1000 + (ts[idx] // 3600) % 1000).astype(str))),
        }
    )
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))
    return len(set(zip(users.tolist(), items.tolist(), events.tolist(), ts[idx].tolist())))


def _child(csv: str, store: str) -> None:
    from decayrec.ingest import ingest
    from decayrec.store import EventStore

    start = time.perf_counter()
    with EventStore.open(store, create=True) as s:
        report = ingest([csv], s)
        stored = s.count()
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"seconds": seconds, "peak_mib": peak_mib, "stored": stored}
            | {k: report.to_dict()[k] for k in ("rows_read", "kept", "quarantined", "duplicates")}
        )
    )


def _stages(csv: str) -> None:
    """Where the time goes: parsing alone, then parsing plus validation (no store)."""
    import duckdb

    from decayrec.io.formats import get_reader
    from decayrec.io.source import DEFAULT_BLOCK_BYTES
    from decayrec.io.validate import validate_batch

    reader = get_reader("canonical")
    start = time.perf_counter()
    for _ in reader.read([Path(csv)], DEFAULT_BLOCK_BYTES):
        pass
    parse = time.perf_counter() - start
    con = duckdb.connect()
    start = time.perf_counter()
    for batch in reader.read([Path(csv)], DEFAULT_BLOCK_BYTES):
        validate_batch(con, batch.table, "s")
    both = time.perf_counter() - start
    print(json.dumps({"parse_seconds": parse, "validate_seconds": both - parse}))


def run_once(csv: Path, store: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(csv), str(store)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", default="bench/results/ingest.json")
    parser.add_argument("--work", default="bench/work")
    parser.add_argument("--child", nargs=2)
    parser.add_argument("--stages")
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    if args.stages:
        _stages(args.stages)
        return
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    csv = work / "events.csv"
    distinct = make_csv(csv, args.rows)
    first = run_once(csv, work / "store")
    second = run_once(csv, work / "store")
    assert first["stored"] == second["stored"] == distinct, (first, second, distinct)
    stages = subprocess.run([sys.executable, __file__, "--stages", str(csv)], check=True, capture_output=True, text=True)
    stages = json.loads(stages.stdout.strip().splitlines()[-1])
    stages["store_seconds"] = max(first["seconds"] - stages["parse_seconds"] - stages["validate_seconds"], 0.0)
    assert second["kept"] == 0 and second["duplicates"] == args.rows
    result = {
        "rows": args.rows,
        "csv_mib": round(csv.stat().st_size / 2**20, 1),
        "distinct_rows": distinct,
        "first_ingest": first | {"rows_per_second": round(args.rows / first["seconds"])},
        "second_ingest": second | {"rows_per_second": round(args.rows / second["seconds"])},
        "first_ingest_stages_seconds": {k: round(v, 3) for k, v in stages.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"ingest {args.rows:,} rows ({result['csv_mib']} MiB CSV): first {result['first_ingest']['rows_per_second']:,} rows/s, "
        f"peak {first['peak_mib']:.0f} MiB; re-ingest {result['second_ingest']['rows_per_second']:,} rows/s, "
        f"stored {first['stored']:,} = distinct rows {distinct:,}; stages (s): {result['first_ingest_stages_seconds']}"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
