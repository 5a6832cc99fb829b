"""The ``decayrec`` command (CONTRACT.md section 2): thin over the library.

Each command parses its options, calls the library, and prints. Exit codes: 0 on success,
2 on bad input or usage (one line that says how to fix it), 1 on an internal error.
Progress goes to stderr; results go only where the user says.
"""

from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from decayrec import __version__
from decayrec.errors import DecayrecError
from decayrec.ingest import IngestReport
from decayrec.io.formats import READERS

app = typer.Typer(
    name="decayrec",
    help="Interest decay for e-commerce event logs: ingest, profiles, recommendations, lapse risk, trends.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

FORMAT_HELP = "Input layout: " + "; ".join(f"{r.name} ({r.description})" for r in READERS.values())


def _version(value: bool) -> None:
    if value:
        out.print(f"decayrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = None,
) -> None:
    """decayrec: how customers' interest fades, from their event logs."""


@contextmanager
def _progress(label: str):
    """A bytes progress bar on stderr (hidden when stderr is not a terminal), yielding its callback."""
    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    with bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_ingest(report: IngestReport) -> None:
    table = Table(title="ingest", title_justify="left")
    for col in ("file", "rows read", "kept", "quarantined", "duplicates", "epoch unit"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for f in report.files:
        table.add_row(f.source, f"{f.rows_read:,}", f"{f.kept:,}", f"{f.quarantined:,}", f"{f.duplicates:,}", _unit(f.epoch_unit))
    if len(report.files) > 1:
        table.add_row("total", f"{report.rows_read:,}", f"{report.kept:,}", f"{report.quarantined:,}", f"{report.duplicates:,}", "")
    out.print(table)
    reasons = sum((f.reasons for f in report.files), start=type(report.files[0].reasons)()) if report.files else {}
    if report.quarantined:
        top = ", ".join(f"{n:,} {reason}" for reason, n in reasons.most_common(5))
        where = f" -> {report.quarantine_path}" if report.quarantine_path else ""
        out.print(f"quarantined: {top}{where}", soft_wrap=True)
    out.print(
        f"kept {report.kept:,} + quarantined {report.quarantined:,} + duplicates {report.duplicates:,} "
        f"= rows read {report.rows_read:,}"
    )


def _unit(unit: str | None) -> str:
    from decayrec.schema import EPOCH_UNIT_NAMES

    return EPOCH_UNIT_NAMES.get(unit, "ISO-8601") if unit else "ISO-8601"


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Event file(s): CSV, CSV.gz, TSV or Parquet; several for multi-file formats.", show_default=False)],
    store: Annotated[Path, typer.Option("--store", help="Store directory (created if missing).", show_default=False)],
    format: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "canonical",
    quarantine: Annotated[Optional[Path], typer.Option("--quarantine", help="CSV for unusable rows (file, line, reason, raw values). Default: STORE/quarantine/ingest-N.csv when any.")] = None,
) -> None:
    """Validate event files and append them to an embedded store; duplicates are dropped, bad rows quarantined."""
    from decayrec.ingest import ingest as run_ingest
    from decayrec.io.formats import get_reader
    from decayrec.store import EventStore

    get_reader(format)  # an unknown --format fails before the store is created
    with EventStore.open(store, create=True) as s, _progress("ingest") as progress:
        report = run_ingest(files, s, format=format, quarantine=quarantine, progress=progress)
    _print_ingest(report)


@app.command()
def export(
    store: Annotated[Path, typer.Option("--store", help="Store directory made by ingest.", show_default=False)],
    out_path: Annotated[Path, typer.Option("--out", help="FILE.csv, FILE.csv.gz or FILE.parquet.", show_default=False)],
    at: Annotated[Optional[str], typer.Option("--at", help="Only events at or before this time (ISO-8601 or epoch). Default: all.")] = None,
) -> None:
    """Write the stored events in the canonical format, sorted by timestamp, user_id, item_id."""
    from decayrec.store import EventStore
    from decayrec.timeparse import parse_time

    when = parse_time(at) if at else None
    with EventStore.open(store, read_only=True) as s:
        n = s.export(out_path, when)
    out.print(f"exported {n:,} events to {out_path}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where the simulated shop and its store go.")] = Path(".demo"),
    users: Annotated[int, typer.Option("--users", min=10, help="Simulated users.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed.")] = 0,
) -> None:
    """Simulate a shop with known truth, ingest it into an embedded store, and show what was found."""
    from decayrec.demo import run_demo

    run_demo(workdir, users=users, seed=seed, console=out, progress=_progress)


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps errors to exit codes (2: bad input, 1: internal)."""
    try:
        # Standalone mode: click itself answers usage errors (exit 2) and --help (exit 0).
        app(args=argv)
    except DecayrecError as exc:  # bad input, a locked or foreign store, a missing extra
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: exit 1, one line
        if os.environ.get("DECAYREC_DEBUG"):
            traceback.print_exc()
        err.print(f"internal error: {type(exc).__name__}: {exc} (set DECAYREC_DEBUG=1 for the traceback)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
