"""Trend forecast error against naive baselines, on real logs and the simulator; trends() speed.

For each canonical dataset under ``../shared/data`` (see its README and SOURCE.md files) and
for the project's simulator, at category and item level:

1. load ``events.csv.gz`` with :func:`decayrec.events.open_events` and ``store.scan()``;
2. ``now`` = the last event; run :func:`decayrec.trends.forecast_backtest` with a window
   suited to the log's span (``WINDOWS``): the model is fitted on windows before
   ``cutoff = now - window`` and forecasts each key's events in ``(cutoff, now]``;
3. report MAE, WAPE and Poisson deviance of the model (and of the Poisson median of its
   forecast), the naive last-window count and the long-run mean; the WAPE differences
   with 95% bootstrap intervals over keys; the label counts and run time of
   :func:`decayrec.trends.trends` as of ``now``.

Speed: ``trends()`` on a synthetic log of 1M events (100k users, 50k items, 500 categories,
180 days), at both levels (best of 3), single-threaded BLAS.

    python bench/bench_trends.py                 # everything (~1-2 min)
    python bench/bench_trends.py --quick         # smaller simulator, 200 bootstrap draws, no 1M run

Writes ``--out`` (JSON) and the same path with ``.md`` (the markdown table, also printed).
"""

from __future__ import annotations

import os

# One BLAS thread: the forecast's small GLM loses more to thread contention than it gains.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from decayrec import schema  # noqa: E402
from decayrec.errors import InputError  # noqa: E402
from decayrec.events import open_events  # noqa: E402
from decayrec.simulate import SimConfig, simulate  # noqa: E402
from decayrec.trends import TrendConfig, forecast_backtest, trends  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = ("amazon-beauty", "amazon-grocery", "taobao-fav", "yoochoose-clicks-100k")
# Forecast window per log (days) and why.
WINDOWS: dict[str, tuple[float, str]] = {
    "amazon-beauty": (30.0, "12 years of daily reviews: monthly demand"),
    "amazon-grocery": (30.0, "14 years of daily reviews: monthly demand"),
    "taobao-fav": (1.0, "9 days, seconds: next-day favourites"),
    "yoochoose-clicks-100k": (1.0, "7 days, ms: next-day clicks"),
    "simulator": (7.0, "the simulated shop: next week"),
}
LEVELS = ("category", "item")


def load(name: str) -> pa.Table:
    store, _ = open_events(DATA / name / "events.csv.gz")
    try:
        return store.scan()
    finally:
        store.close()


def last_time(events: pa.Table) -> datetime:
    return pc.max(events.column(schema.TIMESTAMP)).as_py().replace(tzinfo=UTC)


def run_one(events: pa.Table, name: str, level: str, n_boot: int) -> dict:
    window, why = WINDOWS[name]
    cfg = TrendConfig(window_days=window)
    now = last_time(events)
    out: dict = {"dataset": name, "level": level, "window_days": window, "window_why": why}
    try:
        start = time.perf_counter()
        report = forecast_backtest(events, now, level=level, config=cfg, n_boot=n_boot)
        out["backtest_s"] = time.perf_counter() - start
        start = time.perf_counter()
        table = trends(events, now, level=level, config=cfg)
        out["trends_s"] = time.perf_counter() - start
    except InputError as exc:
        out["skipped"] = str(exc)
        return out
    labels = table.column("trend").value_counts().to_pylist()
    out["trends"] = {"keys": table.num_rows, "labels": {d["values"]: d["counts"] for d in labels}}
    out["backtest"] = report
    return out


def synthetic(n: int = 1_000_000, seed: int = 0) -> pa.Table:
    """Skewed users and items over 180 days, five event types: the speed test's log."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n_cats = 100_000, 50_000, 500
    item = rng.zipf(1.3, n) % n_items
    start = np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64)
    ts = np.sort(start + rng.integers(0, 180 * 86_400 * 10**6, n))
    return pa.table(
        {
            "user_id": pa.array(np.char.add("u", rng.integers(0, n_users, n).astype(str))),
            "item_id": pa.array(np.char.add("i", item.astype(str))),
            "event": pa.array(np.array(schema.EVENT_TYPES)[rng.choice(5, n, p=[0.6, 0.2, 0.1, 0.05, 0.05])]),
            "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "category_id": pa.array(np.char.add("c", (item % n_cats).astype(str))),
        }
    )


def speed(repeat: int = 3) -> dict:
    events = synthetic()
    now = last_time(events)
    out = {"events": events.num_rows}
    for level in LEVELS:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            table = trends(events, now, level=level)
            times.append(time.perf_counter() - start)
        out[level] = {"keys": table.num_rows, "best_s": min(times), "all_s": times}
    return out


def _ci(gap: dict | None) -> str:
    if gap is None:
        return "n/a"
    lo, hi = gap["ci95"]
    return f"{gap['estimate']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def markdown(results: list[dict], fast: dict | None, n_boot: int) -> str:
    lines = [
        (
            "Forecast of each key's events in the last window (cutoff = last event - window), fitted only on "
            "windows before the cutoff. Scored: keys with an event before the cutoff. WAPE = sum |error| / sum "
            "actual, MAE per key; lower is better. model = the expected count (Poisson GLM, the last window's "
            "total shared out); model median = the median of a Poisson with that mean (what an absolute-error "
            "metric rewards on sparse keys); naive = the key's count in the window before the cutoff; long-run = "
            f"its events so far per window. Intervals: 95% bootstrap over keys (B={n_boot}); negative = the model "
            "is better. Deviance: mean Poisson deviance (forecasts floored at 0.01), the proper score of an "
            "expected count. Labels: rising / steady / fading keys of trends() as of the last event."
        ),
        "",
        (
            "| dataset | level | window | keys scored (actual events) | WAPE model | WAPE model median | WAPE naive "
            "| WAPE long-run | MAE model | MAE naive | WAPE model - naive [95% CI] "
            "| WAPE model median - naive [95% CI] | deviance model / naive / long-run | labels r/s/f |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        head = f"| {r['dataset']} | {r['level']} | {r['window_days']:g} d |"
        if "skipped" in r:
            lines.append(head + f" n/a: {r['skipped']} | | | | | | | | | | |")
            continue
        b, m = r["backtest"], r["backtest"]["metrics"]
        lab = r["trends"]["labels"]
        dev = " / ".join(f"{m[k]['poisson_deviance']:.3f}" for k in ("model", "naive_last_window", "long_run_mean"))
        lines.append(
            head
            + f" {b['scored']['keys']:,} ({b['scored']['actual_events']:,}) |"
            + f" {m['model']['wape']:.3f} | {m['model_median']['wape']:.3f} | {m['naive_last_window']['wape']:.3f} |"
            + f" {m['long_run_mean']['wape']:.3f} | {m['model']['mae']:.3f} | {m['naive_last_window']['mae']:.3f} |"
            + f" {_ci(b['wape_diff_vs_naive'])} | {_ci(b['wape_diff_median_vs_naive'])} | {dev} |"
            + f" {lab.get('rising', 0)}/{lab.get('steady', 0)}/{lab.get('fading', 0)} |"
        )
    if fast is not None:
        lines += [
            "",
            (
                f"trends() on {fast['events']:,} synthetic events, best of {len(fast['category']['all_s'])}: "
                f"category level {fast['category']['best_s']:.2f} s ({fast['category']['keys']:,} keys), "
                f"item level {fast['item']['best_s']:.2f} s ({fast['item']['keys']:,} keys), one BLAS thread."
            ),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/trends.json"))
    parser.add_argument("--quick", action="store_true", help="smaller simulator, fewer bootstrap draws, no 1M run")
    parser.add_argument("--datasets", default=",".join(DATASETS + ("simulator",)))
    args = parser.parse_args()
    n_boot = 200 if args.quick else 1000
    started = time.perf_counter()
    results = []
    for name in args.datasets.split(","):
        t0 = time.perf_counter()
        if name == "simulator":
            shop = {"n_users": 1000, "days": 120} if args.quick else {"n_users": 5000, "days": 240}
            events = simulate(SimConfig(**shop, seed=1)).events
        else:
            events = load(name)
        print(f"{name}: {events.num_rows:,} events loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for level in LEVELS:
            r = run_one(events, name, level, n_boot)
            r["events"] = events.num_rows
            results.append(r)
            status = r.get("skipped") or f"done in {r['backtest_s']:.1f} s"
            print(f"  {level}: {status}", file=sys.stderr)
    fast = None if args.quick else speed()
    doc = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "quick": args.quick,
        "n_boot": n_boot,
        "results": results,
        "speed_1m": fast,
        "total_s": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    md = markdown(results, fast, n_boot)
    args.out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    print(f"total {doc['total_s']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
