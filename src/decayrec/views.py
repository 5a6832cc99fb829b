"""Rich renderings of decayrec's results, shared by the CLI and the demo (no computation here)."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from decayrec.ingest import IngestReport
from decayrec.timeparse import iso


def print_ingest(report: IngestReport, out: Console) -> None:
    table = Table(title="ingest", title_justify="left")
    for col in ("file", "rows read", "kept", "quarantined", "duplicates", "epoch unit"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for f in report.files:
        table.add_row(
            f.source, f"{f.rows_read:,}", f"{f.kept:,}", f"{f.quarantined:,}", f"{f.duplicates:,}", epoch_unit_name(f.epoch_unit)
        )
    if len(report.files) > 1:
        table.add_row(
            "total", f"{report.rows_read:,}", f"{report.kept:,}", f"{report.quarantined:,}", f"{report.duplicates:,}", ""
        )
    out.print(table)
    for line in balance_lines(report):
        out.print(line, soft_wrap=True)


def balance_lines(report: IngestReport) -> list[str]:
    """What was quarantined (commonest reasons, where to) and the balance that always holds."""
    lines = []
    if report.quarantined:
        reasons = sum((f.reasons for f in report.files), start=type(report.files[0].reasons)())
        top = ", ".join(f"{n:,} {reason}" for reason, n in reasons.most_common(5))
        where = f" -> {report.quarantine_path}" if report.quarantine_path else " (give --quarantine FILE.csv to keep them)"
        lines.append(f"quarantined: {top}{where}")
    lines.append(
        f"kept {report.kept:,} + quarantined {report.quarantined:,} + duplicates {report.duplicates:,} "
        f"= rows read {report.rows_read:,}"
    )
    lines += [f"{f.source} stopped: {f.error}" for f in report.files if f.error]
    return lines


def epoch_unit_name(unit: str | None) -> str:
    from decayrec.schema import EPOCH_UNIT_NAMES

    return EPOCH_UNIT_NAMES.get(unit, "ISO-8601") if unit else "ISO-8601"


def decay_table(model, truth: dict | None = None, top: int = 15) -> Table:
    """Half-lives as a table: pooled, per event type, the categories with most events."""
    table = Table(title=f"learned decay (as of {model.fitted_at:%Y-%m-%d %H:%M} UTC)", title_justify="left")
    for col in ("key", "half-life (days)", "95% interval", "events", "weight"):
        table.add_column(col, justify="left" if col == "key" else "right")
    if truth is not None:
        table.add_column("true half-life", justify="right")

    def row(name: str, hl, weight: str = "", true: str = "") -> None:
        cells = [name, f"{hl.days:.2f}", f"{hl.low:.2f} .. {hl.high:.2f}", f"{hl.events:,}", weight]
        table.add_row(*cells, *([true] if truth is not None else []))

    row("all (pooled)", model.global_half_life)
    if model.user_scale:
        p10, p50, p90 = np.quantile(list(model.user_scale.values()), [0.1, 0.5, 0.9])
        table.add_row(
            f"per-user multiplier ({len(model.user_scale):,} users)",
            f"x {p50:.2f}",
            f"x {p10:.2f} .. {p90:.2f} (p10..p90)",
            "",
            "",
            *([""] if truth is not None else []),
        )
    for event, hl in model.by_event.items():
        row(f"event: {event}", hl, f"{model.weights.get(event, 0):.2f}")
    ranked = sorted(model.by_category.items(), key=lambda kv: -kv[1].events)
    for name, hl in ranked[:top]:
        true = f"{truth[name]:.2f}" if truth and name in truth else ""
        row(f"category: {name}", hl, "", true)
    if len(ranked) > top:
        table.add_row(f"... {len(ranked) - top} more categories in the JSON", "", "", "", "")
    return table


def profile_tables(result) -> Table:
    """A user's profile as one table: live then faded interests, categories then items."""
    drift = "n/a" if result.drift is None else f"{result.drift:.2f}"
    c, i = result.categories, result.items
    table = Table(
        title=f"profile of {result.user_id} at {iso(result.at)}: {result.n_events:,} events; "
        f"categories {c.n_live} live, {c.n_faded} faded; items {i.n_live} live, {i.n_faded} faded; "
        f"drift over {result.drift_days:g} days {drift}",
        title_justify="left",
    )
    for col in ("level", "key", "state", "interest S", "strength", "half-life d", "fades in d", "last event", "peak"):
        table.add_column(col, justify="left" if col in ("level", "key", "state") else "right")
    for interests in (result.categories, result.items):
        for state, rows in (("live", interests.live), ("faded", interests.faded)):
            for r in rows:
                fade = "now" if r.faded else ("never" if r.time_to_fade_days == float("inf") else f"{r.time_to_fade_days:.1f}")
                table.add_row(
                    interests.level,
                    r.key,
                    state,
                    f"{r.interest:.3f}",
                    f"{r.strength:.2f}",
                    f"{r.half_life_days:.1f}",
                    fade,
                    f"{r.last_event:%Y-%m-%d}",
                    f"{r.peak_at:%Y-%m-%d}",
                )
    return table


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


def risk_view(risk, top: int = 10) -> Table:
    """The ``top`` users most likely to lapse."""
    table = Table(title=f"most likely to lapse (of {risk.num_rows:,} users)", title_justify="left")
    cols = [c for c in ("risk_rank", "user_id", "p_active", "recency_days", "active_days", "p_alive") if c in risk.column_names]
    for col in cols:
        table.add_column(col, justify="left" if col == "user_id" else "right")
    for row in risk.slice(0, top).to_pylist():
        table.add_row(*(_cell(row[c]) for c in cols))
    return table


def plan_table(plan, top: int = 10) -> Table:
    """The first ``top`` rows of a re-engagement plan."""
    table = Table(title=f"re-engagement plan (first {min(top, plan.num_rows)} of {plan.num_rows:,})", title_justify="left")
    for col in ("priority", "user_id", "p_active", "action", "items", "expected_value", "reason"):
        table.add_column(col, justify="right" if col in ("priority", "p_active", "expected_value") else "left")
    for row in plan.slice(0, top).to_pylist():
        items = row["items"].split("|") if row["items"] else []
        shown = ", ".join(items[:3]) + (f" +{len(items) - 3}" if len(items) > 3 else "")
        table.add_row(
            str(row["priority"]),
            row["user_id"],
            f"{row['p_active']:.2f}",
            row["action"],
            shown,
            f"{row['expected_value']:.3g}",
            row["reason"],
        )
    return table


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def trends_view(table, top: int = 5) -> Table:
    """The ``top`` rising and ``top`` fading keys of a trends table, largest change in rate first."""
    level = table.column("level")[0].as_py() if table.num_rows else "key"
    view = Table(title=f"top rising and fading ({level})", title_justify="left")
    for col in ("trend", "key", "interest", "momentum", "events_window", "forecast", "evidence"):
        view.add_column(col, justify="left" if col in ("trend", "key", "evidence") else "right")
    rows = table.to_pylist()

    # Largest change in rate first: a busy key losing a third matters more than a dead one at 0.
    def change(r: dict) -> float:
        return r["interest_short"] - r["interest_long"]

    rising = sorted((r for r in rows if r["trend"] == "rising"), key=lambda r: -change(r))[:top]
    fading = sorted((r for r in rows if r["trend"] == "fading"), key=change)[:top]
    for r in rising + fading:
        view.add_row(
            r["trend"],
            str(r["key"]),
            f"{r['interest']:.3g}",
            f"{r['momentum']:.2f}",
            f"{r['events_window']:,}",
            f"{r['forecast']:.1f}",
            r["evidence"],
        )
    return view
