"""``decayrec demo``: a simulated shop, ingested into an embedded store, summarised.

Later stages (decay fit, recommendations, lapse risk, trends) add their sections here.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from decayrec.timeparse import iso


def run_demo(workdir: Path, *, users: int, seed: int, console: Console, progress: Callable) -> None:
    from decayrec.cli import _print_ingest
    from decayrec.ingest import ingest
    from decayrec.simulate import SimConfig, simulate
    from decayrec.store import EventStore

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    config = SimConfig(n_users=users, seed=seed)
    sim = simulate(config)
    events_path, truth_path = sim.write(workdir)
    console.print(
        f"[bold]1. simulated a shop[/]: {sim.events.num_rows:,} events from {config.n_users:,} users over "
        f"{config.days:g} days (seed {seed}) in {time.perf_counter() - started:.1f}s -> {events_path}, truth in {truth_path}"
    )

    store_dir = workdir / "store"
    shutil.rmtree(store_dir, ignore_errors=True)  # the demo starts from an empty store every time
    with EventStore.open(store_dir, create=True) as store, progress("ingest") as bar:
        report = ingest([events_path], store, progress=bar)
    console.print(f"[bold]2. ingested into the embedded store[/] {store_dir}")
    _print_ingest(report)

    with EventStore.open(store_dir, read_only=True) as store:
        summary = store.summary()
    console.print(summary_table(summary))


def summary_table(summary: dict) -> Table:
    """The store summary as a two-column table."""
    table = Table(title="what is in the store", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("users", f"{summary['users']:,}")
    table.add_row("items", f"{summary['items']:,}")
    table.add_row("categories", f"{summary['categories']:,}")
    table.add_row("events", f"{summary['events']:,}")
    for event, n in summary["events_by_type"].items():
        table.add_row(f"  {event}", f"{n:,}")
    if summary["first"] is not None:
        days = (summary["last"] - summary["first"]).total_seconds() / 86400
        table.add_row("time span", f"{iso(summary['first'])} .. {iso(summary['last'])} ({days:.0f} days)")
    return table
