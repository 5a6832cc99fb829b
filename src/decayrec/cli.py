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
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from decayrec import __version__
from decayrec.errors import DecayrecError, InputError
from decayrec.io.formats import READERS
from decayrec.io.outputs import TABLE_SUFFIXES, check_outputs, write_table, write_text
from decayrec.views import balance_lines, decay_table, print_ingest, profile_tables

app = typer.Typer(
    name="decayrec",
    help="Interest decay for e-commerce event logs: ingest, profiles, recommendations, lapse risk, trends.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Results go to stdout; when it is a file or a pipe, tables get room instead of 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

FORMAT_HELP = "Input layout: " + "; ".join(f"{r.name} ({r.description})" for r in READERS.values())


def _version(value: bool) -> None:
    if value:
        out.print(f"decayrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
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


@app.command()
def ingest(
    files: Annotated[
        list[Path],
        typer.Argument(help="Event file(s): CSV, CSV.gz, TSV or Parquet; several for multi-file formats.", show_default=False),
    ],
    store: Annotated[Path, typer.Option("--store", help="Store directory (created if missing).", show_default=False)],
    format: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "canonical",
    quarantine: Annotated[
        Optional[Path],
        typer.Option(
            "--quarantine",
            help="CSV for unusable rows (file, line, reason, raw values). Default: STORE/quarantine/ingest-N.csv when any.",
        ),
    ] = None,
) -> None:
    """Validate event files and append them to an embedded store; duplicates are dropped, bad rows quarantined."""
    from decayrec.ingest import IngestError
    from decayrec.ingest import ingest as run_ingest
    from decayrec.io.formats import get_reader
    from decayrec.store import EventStore

    get_reader(format)  # an unknown --format fails before the store is created
    check_outputs(
        {"--store": store, "--quarantine": quarantine}, files, suffixes={"--quarantine": (".csv",)}, directories=("--store",)
    )
    with EventStore.open(store, create=True) as s, _progress("ingest") as progress:
        try:
            report = run_ingest(files, s, format=format, quarantine=quarantine, progress=progress)
        except IngestError as exc:  # a file failed part-way: show what was stored, then the error
            print_ingest(exc.report, out)
            raise
    print_ingest(report, out)


@app.command()
def export(
    store: Annotated[Path, typer.Option("--store", help="Store directory made by ingest.", show_default=False)],
    out_path: Annotated[Path, typer.Option("--out", help="FILE.csv, FILE.csv.gz or FILE.parquet.", show_default=False)],
    at: Annotated[
        Optional[str], typer.Option("--at", help="Only events at or before this time (ISO-8601 or epoch). Default: all.")
    ] = None,
) -> None:
    """Write the stored events in the canonical format, sorted by timestamp, user_id, item_id."""
    from decayrec.store import EventStore
    from decayrec.timeparse import parse_time

    when = parse_time(at) if at else None
    check_outputs({"--out": out_path}, [store], suffixes={"--out": TABLE_SUFFIXES})
    with EventStore.open(store, read_only=True) as s:
        n = s.export(out_path, when)
    out.print(f"exported {n:,} events to {out_path}")


def _events(source: Path, format: str, at: Optional[str], quarantine: Optional[Path] = None):
    """Open ``--events`` (a file or a store) and resolve "now": ``--at`` or the last event's time.

    A file is validated as ``ingest`` validates it, and the same balance is printed on
    stderr (kept + quarantined + duplicates = rows read), its bad rows going to
    ``--quarantine`` when given.
    """
    from decayrec.events import open_events
    from decayrec.io.formats import get_reader
    from decayrec.timeparse import parse_time

    get_reader(format)
    when = parse_time(at) if at is not None else None
    with _progress("read events") as progress:
        store, report = open_events(source, format=format, quarantine=quarantine, progress=progress)
    if report is not None:
        for line in balance_lines(report):
            err.print(f"{source}: {line}", markup=False, highlight=False, soft_wrap=True)
    first, last = store.first_time(), store.last_time()
    if last is None:
        raise InputError(f"{source} holds no events", "ingest some events first")
    assert first is not None  # the oldest and newest times are None only together
    now = when if when is not None else parse_time(last.isoformat())
    if now < parse_time(first.isoformat()):
        raise InputError(
            f"--at {at} is before the first event ({first:%Y-%m-%dT%H:%M:%SZ})",
            "give a later --at, or none for the last event's time",
        )
    return store, store.scan(now), now


QUARANTINE_HELP = "Also write the rows of an events file that cannot be used to this CSV (file, line, reason, raw values)."


EVENTS_HELP = "Events: a file (CSV, CSV.gz, TSV, Parquet) or a store directory made by ingest."
AT_HELP = "The time to compute as of (ISO-8601 or epoch). Default: the last event's time."


def _fit_progress(label: str):
    """A step progress callback for fit_decay, on stderr."""

    def update(step: int, total: int, what: str) -> None:
        if err.is_terminal:
            err.print(f"[dim]{label}: {what} ({step}/{total})[/]")

    return update


def _epoch_progress(label: str):
    """An epoch progress callback for the sequence model, on stderr."""

    def update(phase: str, epoch: int, total: int) -> None:
        if err.is_terminal:
            err.print(f"[dim]{label}: {phase} epoch {epoch}/{total}[/]")

    return update


@app.command("fit-decay")
def fit_decay_command(
    events: Annotated[Path, typer.Option("--events", help=EVENTS_HELP, show_default=False)],
    out_path: Annotated[Path, typer.Option("--out", help="DECAY.json to write.", show_default=False)],
    at: Annotated[Optional[str], typer.Option("--at", help=AT_HELP)] = None,
    format: Annotated[str, typer.Option("--format", help="Input layout, as for ingest.")] = "canonical",
    grid_points: Annotated[
        Optional[int],
        typer.Option(
            "--grid-points",
            min=5,
            help="Half-lives tried on the log-spaced grid (its ends come from the log: from the shortest gaps, "
            "1 minute to 1 hour, to twice the span); default: about a factor 1.76 between neighbours.",
            show_default=False,
        ),
    ] = None,
    per_user: Annotated[
        bool,
        typer.Option(
            "--per-user",
            help="Also learn how fast each user forgets (a multiplier per user, written to DECAY.json under user_scale).",
        ),
    ] = False,
    quarantine: Annotated[Optional[Path], typer.Option("--quarantine", help=QUARANTINE_HELP)] = None,
) -> None:
    """Learn half-lives per category and per event type (with 95% intervals) and event weights."""
    from decayrec.decay.config import FitConfig
    from decayrec.decay.fit import fit_decay

    check_outputs(
        {"--out": out_path, "--quarantine": quarantine}, [events], suffixes={"--out": (".json",), "--quarantine": (".csv",)}
    )
    _, table, now = _events(events, format, at, quarantine)
    config = FitConfig(grid_points=grid_points, per_user=per_user)
    model = fit_decay(table, now, config, progress=_fit_progress("fit-decay"))
    model.save(out_path)
    out.print(decay_table(model))
    out.print(f"wrote {out_path}")


@app.command()
def profile(
    events: Annotated[Path, typer.Option("--events", help=EVENTS_HELP, show_default=False)],
    user: Annotated[str, typer.Option("--user", help="The user id.", show_default=False)],
    at: Annotated[Optional[str], typer.Option("--at", help=AT_HELP)] = None,
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="PROFILE.json, or a .png plot of the interest curves.")
    ] = None,
    decay: Annotated[Optional[Path], typer.Option("--decay", help="DECAY.json from fit-decay (default: fit it now).")] = None,
    format: Annotated[str, typer.Option("--format", help="Input layout, as for ingest.")] = "canonical",
    top: Annotated[int, typer.Option("--top", min=1, help="Interests listed per level.")] = 10,
    sequence_model: Annotated[
        Optional[Path],
        typer.Option(
            "--sequence-model",
            help="A sequence model saved by recommend --model sequence --save-model: adds the drift of its "
            "learned interest vector next to the category drift.",
        ),
    ] = None,
    quarantine: Annotated[Optional[Path], typer.Option("--quarantine", help=QUARANTINE_HELP)] = None,
) -> None:
    """A user's interest profile now: live and faded interests, strength, half-life, time-to-fade, drift."""
    from decayrec.decay.config import FitConfig
    from decayrec.decay.fit import fit_decay
    from decayrec.decay.model import DecayModel
    from decayrec.decay.profile import build_profile
    from decayrec.decay.strength import StrengthModel

    check_outputs(
        {"--out": out_path, "--quarantine": quarantine},
        [events, decay],
        suffixes={"--out": (".json", ".png"), "--quarantine": (".csv",)},
    )
    _, table, now = _events(events, format, at, quarantine)
    model = DecayModel.load(decay) if decay else fit_decay(table, now, FitConfig(), progress=_fit_progress("fit decay"))
    has_categories = "category_id" in table.column_names and table["category_id"].null_count < table.num_rows
    if has_categories:
        strength_cat = StrengthModel(level="category", faded_threshold=0.10).fit(table, model, now)
    else:
        strength_cat = None
        err.print("the log has no category_id: the profile lists items only (no category interests, no drift)")
    strength_item = StrengthModel(level="item").fit(table, model, now)
    result = build_profile(table, user, model, strength_cat, strength_item, now, top=top)
    out.print(profile_tables(result))
    extra: dict[str, Any] = {}
    if sequence_model is not None:
        from decayrec.sequence import SequenceRecommender

        seq = SequenceRecommender.load(sequence_model)
        moved = float(seq.drift(table, [user], now, lag_days=result.drift_days)[0])
        extra["sequence_drift"] = None if moved != moved else round(moved, 6)  # nan: no event by one of the times
        shown = "n/a" if extra["sequence_drift"] is None else f"{moved:.2f}"
        out.print(f"interest-vector drift over {result.drift_days:g} days (sequence model): {shown}")
    if out_path is not None and out_path.suffix == ".json":
        import json

        write_text(json.dumps(result.to_json_dict() | extra, indent=2) + "\n", out_path)
        out.print(f"wrote {out_path}")
    elif out_path is not None:
        from decayrec.plot import plot_profile

        plot_profile(result, table, model, out_path, level="category", top=min(top, 6))
        out.print(f"wrote {out_path}")


def _read_users(path: Path) -> list[str]:
    """One user id a line; blanks around ids and empty lines are ignored, repeats kept once."""
    if path.is_dir():
        raise InputError(f"--users {path} is a directory", "give a text file with one user id per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path} does not exist", "give a file with one user id per line") from None
    except PermissionError:
        raise InputError(f"{path} is not readable", "check its permissions") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text", "give a text file with one user id per line") from None
    users = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
    if not users:
        raise InputError(f"{path} lists no user", "write one user id per line")
    return users


@app.command()
def recommend(
    events: Annotated[Path, typer.Option("--events", help=EVENTS_HELP, show_default=False)],
    users: Annotated[
        Path,
        typer.Option("--users", help="USERS.txt: one user id a line (unknown users get cold-start lists).", show_default=False),
    ],
    out_path: Annotated[Path, typer.Option("--out", help="RECS.csv to write.", show_default=False)],
    at: Annotated[Optional[str], typer.Option("--at", help=AT_HELP)] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Items per user.")] = 20,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="decayrec, repeat, covisit, itemknn, decayed_popularity, popularity, als, bpr or sequence (the torch extra).",
        ),
    ] = "decayrec",
    horizon_days: Annotated[
        Optional[float],
        typer.Option(
            "--horizon-days",
            min=0.0001,
            help="What the lists are for: the next "
            "visit, basket or month, in days (decayrec). Default: inferred from the log and reported.",
        ),
    ] = None,
    budget_seconds: Annotated[
        Optional[float],
        typer.Option(
            "--budget-seconds",
            min=1.0,
            help="Time bound of decayrec's search for its settings on validation windows inside the training period "
            "(default 600), or of training for --model sequence (default 300).",
        ),
    ] = None,
    card: Annotated[
        Optional[Path],
        typer.Option(
            "--card",
            help="Write CARD.json: what decayrec chose, every setting tried with its validation score, and what it serves.",
        ),
    ] = None,
    use_sequence: Annotated[
        bool,
        typer.Option(
            "--use-sequence",
            help="Offer decayrec's search the sequence model as a candidate source (the torch extra; kept only where it "
            "helps on validation; several times the fit time).",
        ),
    ] = False,
    save_model: Annotated[
        Optional[Path],
        typer.Option(
            "--save-model", help="Save the fitted sequence model to this folder (safetensors + JSON; --model sequence)."
        ),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="Input layout, as for ingest.")] = "canonical",
    quarantine: Annotated[Optional[Path], typer.Option("--quarantine", help=QUARANTINE_HELP)] = None,
) -> None:
    """Recommend k items now for every listed user, each with a reason; writes user_id,item_id,rank,score,reason.

    The default model chooses its own settings on validation windows inside the training
    period (the search is shown on stderr) and serves its best single source instead of
    the ranker where the ranker does not beat it there.
    """
    from decayrec.recommend.registry import MAIN, make_model

    check_outputs(
        {"--out": out_path, "--card": card, "--quarantine": quarantine, "--save-model": save_model},
        [events, users],
        suffixes={"--out": TABLE_SUFFIXES, "--card": (".json",), "--quarantine": (".csv",)},
        directories=["--save-model"],
    )
    wanted = _read_users(users)
    if model != MAIN and (horizon_days is not None or card is not None or use_sequence):
        raise InputError(
            f"--horizon-days, --card and --use-sequence apply to --model {MAIN}, not {model}", f"drop them or use --model {MAIN}"
        )
    if save_model is not None and model != "sequence":
        raise InputError("--save-model applies to --model sequence", "drop it or use --model sequence")
    params: dict[str, Any] = {}
    if model == MAIN:
        params = {"horizon_days": horizon_days, "log": _search_log}
        if use_sequence:
            params["use_sequence"] = True
    elif model == "sequence":
        params = {"log": _search_log, "progress": _epoch_progress("sequence")}
    if budget_seconds is not None and model in (MAIN, "sequence"):
        params["budget_seconds"] = budget_seconds
    recommender = make_model(model, **params)
    _, table, now = _events(events, format, at, quarantine)
    fitted = recommender.fit(table, now)
    recs = fitted.recommend(wanted, k, now)
    write_table(recs.select(["user_id", "item_id", "rank", "score", "reason"]), out_path)
    if save_model is not None:
        from decayrec.sequence import SequenceRecommender

        assert isinstance(fitted, SequenceRecommender)  # --save-model is refused above for any other model
        out.print(f"saved the sequence model to {fitted.save(save_model)}")
    covered = len(set(recs["user_id"].to_pylist()))
    out.print(f"wrote {recs.num_rows:,} recommendations for {covered:,} of {len(wanted):,} users to {out_path}")
    if card is not None:
        from decayrec.recommend.ranker import DecayRanker

        assert isinstance(fitted, DecayRanker)  # --card is refused above for any model but MAIN, a DecayRanker
        fitted.save_card(card)
        out.print(f"wrote the model card to {card} (served: {fitted.served_})")


def _search_log(line: str) -> None:
    """decayrec's search report, on stderr."""
    err.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def churn(
    events: Annotated[Path, typer.Option("--events", help=EVENTS_HELP, show_default=False)],
    out_path: Annotated[Path, typer.Option("--out", help="RISK.csv to write.", show_default=False)],
    at: Annotated[Optional[str], typer.Option("--at", help=AT_HELP)] = None,
    horizon_days: Annotated[float, typer.Option("--horizon-days", min=0.001, help="p_active is over (at, at + horizon].")] = 30.0,
    model: Annotated[
        str, typer.Option("--model", help="decayrec (learned, any horizon), bgnbd (BG/NBD) or paretonbd (Pareto/NBD).")
    ] = "decayrec",
    plan_path: Annotated[
        Optional[Path], typer.Option("--plan", help="Also write a re-engagement PLAN.csv for the users at risk.")
    ] = None,
    plan_model: Annotated[str, typer.Option("--plan-model", help="Recommender for the plan's re-engagement lists.")] = "decayrec",
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="Items per plan action.")] = 10,
    top: Annotated[int, typer.Option("--top", min=0, help="At-risk users printed.")] = 10,
    format: Annotated[str, typer.Option("--format", help="Input layout, as for ingest.")] = "canonical",
    quarantine: Annotated[Optional[Path], typer.Option("--quarantine", help=QUARANTINE_HELP)] = None,
) -> None:
    """Lapse risk for every user with history: P(any event in the horizon), a risk rank (1 = most likely to lapse) and expected active days.

    Any horizon is answered, even one longer than the history: the learned model trains on
    label windows that fit inside the history and a BG/NBD or Pareto/NBD model carries its
    answer to the asked horizon.
    """
    from decayrec.lapse import PlanConfig, make_lapse_model, make_plan
    from decayrec.views import plan_table, risk_view

    check_outputs(
        {"--out": out_path, "--plan": plan_path, "--quarantine": quarantine},
        [events],
        suffixes={"--out": TABLE_SUFFIXES, "--plan": TABLE_SUFFIXES, "--quarantine": (".csv",)},
    )
    lapse = make_lapse_model(model, horizon_days)
    if plan_path is not None:
        from decayrec.recommend.registry import make_model

        recommender = make_model(plan_model)
    _, table, now = _events(events, format, at, quarantine)
    risk = lapse.fit(table, now).predict()
    write_table(risk, out_path)
    at_risk = int((risk.column("p_active").to_numpy() <= 0.5).sum())
    out.print(
        f"wrote lapse risk for {risk.num_rows:,} users to {out_path} ({model}, horizon {horizon_days:g} days as of "
        f"{now.isoformat()}); {at_risk:,} are more likely than not to lapse"
    )
    if top:
        out.print(risk_view(risk, top))
    if plan_path is not None:
        plan = make_plan(risk, table, now, recommender=recommender.fit(table, now), config=PlanConfig(k=k))
        write_table(plan, plan_path)
        counts = dict(zip(*np.unique(plan.column("action").to_numpy(zero_copy_only=False), return_counts=True)))
        out.print(
            f"wrote a plan for {plan.num_rows:,} users at risk to {plan_path}: "
            + ", ".join(f"{a} {n:,}" for a, n in sorted(counts.items()))
        )
        if top:
            out.print(plan_table(plan, top))


@app.command()
def trends(
    events: Annotated[Path, typer.Option("--events", help=EVENTS_HELP, show_default=False)],
    out_path: Annotated[Path, typer.Option("--out", help="TRENDS.csv to write.", show_default=False)],
    at: Annotated[Optional[str], typer.Option("--at", help=AT_HELP)] = None,
    level: Annotated[str, typer.Option("--level", help="item or category.")] = "category",
    window_days: Annotated[float, typer.Option("--window-days", min=0.001, help="Forecast window.")] = 7.0,
    plot: Annotated[
        Optional[Path], typer.Option("--plot", help="Also draw the top rising and fading keys over time (PNG).")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="Rising and fading keys printed.")] = 5,
    format: Annotated[str, typer.Option("--format", help="Input layout, as for ingest.")] = "canonical",
    quarantine: Annotated[Optional[Path], typer.Option("--quarantine", help=QUARANTINE_HELP)] = None,
) -> None:
    """Shop-wide interest per item or category: level, momentum, rising/steady/fading, and a next-window forecast."""
    from decayrec.trends import Level, TrendConfig, plot_trends
    from decayrec.trends import trends as trend_table
    from decayrec.views import trends_view

    if level not in ("item", "category"):
        raise InputError(f"unknown level {level!r}", "use --level item or --level category")
    trend_level: Level = "item" if level == "item" else "category"
    check_outputs(
        {"--out": out_path, "--plot": plot, "--quarantine": quarantine},
        [events],
        suffixes={"--out": TABLE_SUFFIXES, "--plot": (".png",), "--quarantine": (".csv",)},
    )
    config = TrendConfig(window_days=window_days)
    _, table, now = _events(events, format, at, quarantine)
    result = trend_table(table, now, level=trend_level, config=config)
    write_table(result, out_path)
    labels = dict(zip(*np.unique(result.column("trend").to_numpy(zero_copy_only=False), return_counts=True)))
    out.print(
        f"wrote {result.num_rows:,} {level} trends as of {now.isoformat()} to {out_path}: "
        + ", ".join(f"{labels.get(t, 0):,} {t}" for t in ("rising", "steady", "fading"))
    )
    if top:
        out.print(trends_view(result, top))
    if plot is not None:
        plot_trends(table, now, plot, level=trend_level, config=config, top=top or 5)
        out.print(f"wrote the plot to {plot}")


@app.command()
def evaluate(
    events: Annotated[Path, typer.Option("--events", help=EVENTS_HELP, show_default=False)],
    out_path: Annotated[Path, typer.Option("--out", help="RESULTS.json to write.", show_default=False)],
    cutoff: Annotated[
        Optional[str], typer.Option("--cutoff", help="Train on events up to here; default: last event - horizon.")
    ] = None,
    horizon_days: Annotated[float, typer.Option("--horizon-days", min=0.001, help="Length of the test window.")] = 7.0,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="List length scored.")] = 20,
    models: Annotated[
        str, typer.Option("--models", help="Comma-separated model names.")
    ] = "decayrec,repeat,covisit,decayed_popularity,popularity,als,bpr",
    format: Annotated[str, typer.Option("--format", help="Input layout, as for ingest.")] = "canonical",
    quarantine: Annotated[Optional[Path], typer.Option("--quarantine", help=QUARANTINE_HELP)] = None,
) -> None:
    """Compare models on a time split: fit up to the cutoff, score the next window (NDCG, Recall, HitRate, MRR, coverage)."""
    from decayrec.evaluate import evaluate as run_evaluate
    from decayrec.evaluate import time_split
    from decayrec.recommend.registry import make_model
    from decayrec.timeparse import parse_time

    check_outputs(
        {"--out": out_path, "--quarantine": quarantine}, [events], suffixes={"--out": (".json",), "--quarantine": (".csv",)}
    )
    names = [m.strip() for m in models.split(",") if m.strip()]
    # decayrec trains its ranker on a label window as long as the test window it is judged on.
    built = {name: make_model(name, **({"horizon_days": horizon_days} if name == "decayrec" else {})) for name in names}
    _, table, _ = _events(events, format, None, quarantine)
    split = time_split(table, parse_time(cutoff, option="--cutoff") if cutoff else None, horizon_days)
    results = run_evaluate(built, split=split, k=k)
    results.to_json(out_path)
    out.print(results.table())
    out.print(f"wrote {out_path}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where the simulated shop and its store go.")] = Path(".demo"),
    users: Annotated[int, typer.Option("--users", min=10, help="Simulated users.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed.")] = 0,
) -> None:
    """Simulate a shop with known truth, ingest it into an embedded store, and show what was found."""
    from decayrec.demo import run_demo

    run_demo(workdir, users=users, seed=seed, console=out, progress=_progress)


@app.command()
def serve(
    store: Annotated[Path, typer.Option("--store", help="The store directory (created if missing).", show_default=False)],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
    pseudonymise_key_file: Annotated[
        Optional[Path],
        typer.Option("--pseudonymise-key-file", help="Store a keyed hash (HMAC-SHA256) of every user id instead of the id."),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option("--insecure-no-auth", help="Serve without API keys (DECAYREC_API_KEYS unset): for a trusted machine only."),
    ] = False,
    refit_minutes: Annotated[
        float, typer.Option("--refit-minutes", min=0, help="Minutes between scheduled refits (0: on request only).")
    ] = 60.0,
    horizon_days: Annotated[float, typer.Option("--horizon-days", min=0.01, help="Horizon of the risk endpoint.")] = 30.0,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
) -> None:
    """The live HTTP service: events in, live decayed state, recommendations, profiles, risk and trends out.

    Keys come from DECAYREC_API_KEYS ("KEY:read,KEY2:write,KEY3:admin"). The service is the
    store's one writer; its API documentation is at /docs.
    """
    from decayrec.service.auth import Keys
    from decayrec.service.config import ServiceConfig
    from decayrec.service.server import serve as run_server

    keys = Keys.parse(os.environ.get("DECAYREC_API_KEYS"), insecure=insecure_no_auth)
    config = ServiceConfig(store=store, refit_seconds=refit_minutes * 60.0, horizon_days=horizon_days)
    run_server(config, host=host, port=port, keys=keys, pseudonymise_key_file=pseudonymise_key_file, access_log=access_log)


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps errors to exit codes (2: bad input, 1: internal)."""
    try:
        # Standalone mode: click itself answers usage errors (exit 2) and --help (exit 0).
        app(args=argv)
    except DecayrecError as exc:  # bad input, a locked or foreign store, a missing extra
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:  # a path the system refused (permissions, a vanished folder): the user's to fix
        where = f"{exc.filename}: " if exc.filename else ""
        err.print(
            f"error: {where}{exc.strerror or exc}; check the path and its permissions",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: exit 1, one line
        if os.environ.get("DECAYREC_DEBUG"):
            traceback.print_exc()
        err.print(
            f"internal error: {type(exc).__name__}: {exc} (set DECAYREC_DEBUG=1 for the traceback)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
