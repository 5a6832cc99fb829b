"""Lapse-risk benchmark: decayrec's learned model against BG/NBD, Pareto/NBD and an RFM logistic regression.

    python bench/bench_lapse.py --out bench/results/lapse.json

Cases: every log in ../shared/data with canonical events, every simulator preset, and two
purchase-log cases where the horizon is long against the history (39 weeks of history
and a 39-week horizon; 26 weeks and 13). One rule for every log, the one of
../shared/bench: the cutoff is the time with 10% of the events after it and the horizon
runs to the last event, rounded up to whole days; the two long cases fix theirs by name.
Nothing is set per dataset for any model.

Every model is fitted as of the cutoff and scores every user with an event before it; the
outcome is "lapsed" = no event of any kind in (cutoff, cutoff + horizon]. Scores: ROC-AUC,
PR-AUC (positive class: lapsed), Brier, log loss, a calibration table (in the JSON), and
the mean absolute error of expected against actual active days in the window; paired
bootstrap intervals of decayrec minus each baseline.

The RFM logistic regression is the one of ../shared/bench/churn.py (scikit-learn
``LogisticRegressionCV`` on log recency, tenure, active days, events and spend per day),
trained with a label window inside the history (the horizon, or half the history if
shorter) and carried to the horizon as ``1 - (1 - p) ** (horizon / label)``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.decay.strength import as_utc
from decayrec.errors import InputError
from decayrec.events import open_events
from decayrec.lapse.evaluate import evaluate_lapse, lapse_labels
from decayrec.lapse.models import make_lapse_model, risk_table
from decayrec.simulate import PRESETS, simulate_preset
from decayrec.timeparse import parse_time

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LOGS = ("amazon-beauty", "amazon-grocery", "taobao-fav", "yoochoose-clicks-100k")
LONG = {  # name: (preset, simulated days, history days, horizon days)
    "purchases-39w-history-39w-horizon": ("purchases", 546.0, 273.0, 273.0),
    "purchases-26w-history-13w-horizon": ("purchases", 273.0, 182.0, 91.0),
}
MODELS = ("bgnbd", "paretonbd", "rfm-logreg", "decayrec")
BASELINES = ("bgnbd", "paretonbd", "rfm-logreg")


class RFMLogReg:
    """The RFM logistic regression of ../shared/bench/churn.py on decayrec's tables (see the module doc)."""

    name = "rfm-logreg"

    def __init__(self, horizon_days: float):
        self.horizon_days = horizon_days

    @staticmethod
    def _features(events: pa.Table, at: datetime) -> tuple[pa.Array, np.ndarray]:
        ts_col = events.column(schema.TIMESTAMP)
        past = events.filter(pc.less_equal(ts_col, pa.scalar(at, ts_col.type)))
        ts = past.column(schema.TIMESTAMP).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy() / 1e6
        spend = np.zeros(ts.size)
        if schema.PRICE in past.column_names:
            price = past.column(schema.PRICE).cast(pa.float64()).fill_null(0.0).to_numpy()
            qty = (
                past.column(schema.QUANTITY).cast(pa.float64()).fill_null(1.0).to_numpy()
                if schema.QUANTITY in past.column_names
                else 1.0
            )
            spend = price * qty
        table = pa.table({"u": past.column(schema.USER).cast(pa.string()), "ts": ts, "day": np.floor(ts / 86400), "sp": spend})
        aggs = [("ts", "max"), ("ts", "min"), ("day", "count_distinct"), ("ts", "count"), ("sp", "sum")]
        g = table.group_by("u").aggregate(aggs).sort_by("u")
        cut = at.timestamp()
        days = g["day_count_distinct"].to_numpy().astype(np.float64)
        x = np.column_stack(
            [
                (cut - g["ts_max"].to_numpy()) / 86400,
                (cut - g["ts_min"].to_numpy()) / 86400,
                days,
                g["ts_count"].to_numpy(),
                g["sp_sum"].to_numpy() / days,
            ]
        )
        return g["u"].combine_chunks(), np.log1p(np.clip(x, 0, None))

    def fit(self, events: pa.Table, now: datetime) -> RFMLogReg:
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        now = as_utc(now)
        first = parse_time(str(pc.min(events.column(schema.TIMESTAMP)).as_py().isoformat()))
        self.label_days = min(self.horizon_days, (now - first).total_seconds() / 86400 / 2)
        t0 = now - timedelta(days=self.label_days)
        users, x = self._features(events, t0)
        y = 1 - lapse_labels(events, users, t0, self.label_days)
        if users.__len__() < 10 or y.min() == y.max():
            raise InputError("not enough labelled history for the logistic regression", "use a longer history")
        grid = {"Cs": [0.01, 0.1, 1.0, 10.0], "cv": 5, "scoring": "neg_log_loss", "max_iter": 2000}
        self.model_ = make_pipeline(StandardScaler(), LogisticRegressionCV(**grid)).fit(x, y)
        self.events_, self.now_ = events, now
        return self

    def predict(self) -> pa.Table:
        users, x = self._features(self.events_, self.now_)
        p = 1 - (1 - self.model_.predict_proba(x)[:, 1]) ** (self.horizon_days / self.label_days)
        # A Poisson count with P(N > 0) = p: its crude expected active days.
        return risk_table(users, p, {"expected_active_days": -np.log1p(-np.clip(p, 0, 1 - 1e-9))})


def make(name: str, horizon_days: float):
    return RFMLogReg(horizon_days) if name == "rfm-logreg" else make_lapse_model(name, horizon_days)


def shared_split(events: pa.Table) -> tuple[datetime, float]:
    """../shared/bench's rule: 10% of the events after the cutoff, the horizon to the last event in whole days."""
    ts = np.sort(events.column(schema.TIMESTAMP).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy())
    cut = ts[int(np.ceil(ts.size * 0.9)) - 1]
    horizon = math.ceil((ts[-1] - cut) / 86_400e6)
    return parse_time(str(np.datetime64(int(cut), "us")) + "Z"), float(horizon)


def cases(names: list[str]) -> list[tuple[str, pa.Table, datetime, float]]:
    out = []
    for name in names:
        if name in LOGS:
            store, _ = open_events(DATA / name / "events.csv.gz")
            events = store.scan()
            out.append((name, events, *shared_split(events)))
        elif name in PRESETS:
            events = simulate_preset(name).events
            out.append((f"sim:{name}", events, *shared_split(events)))
        elif name in LONG:
            preset, days, history, horizon = LONG[name]
            sim = simulate_preset(preset, days=days)
            start = parse_time(sim.truth["end"]) - timedelta(days=days)
            out.append((name, sim.events, start + timedelta(days=history), horizon))
        else:
            raise SystemExit(f"unknown case {name!r}")
    return out


def run(name: str, events: pa.Table, cutoff: datetime, horizon: float, bootstrap: int) -> dict[str, Any]:
    started = time.perf_counter()
    result = evaluate_lapse(events, cutoff, horizon, models=MODELS, bootstrap=bootstrap, make=make)
    result["dataset"] = name
    result["events"] = events.num_rows
    result["seconds"] = time.perf_counter() - started
    return result


def _f(x: Any, d: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{d}f}"


def _ci(c: dict[str, Any], key: str) -> str:
    lo, hi = c[f"{key}_diff_ci"]
    return f"{c[f'{key}_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def verdict(r: dict[str, Any]) -> str:
    """Does decayrec beat BG/NBD and the RFM logistic regression on ROC-AUC and Brier (point estimates)?"""
    by = {m["name"]: m for m in r["models"] if "error" not in m}
    if "decayrec" not in by:
        return "decayrec failed"
    d = by["decayrec"]
    misses = []
    for base in ("bgnbd", "rfm-logreg"):
        b = by.get(base)
        if b is None:
            continue
        if not d["roc_auc"] > b["roc_auc"]:
            misses.append(f"ROC-AUC vs {base} {d['roc_auc'] - b['roc_auc']:+.4f}")
        if not d["brier"] < b["brier"]:
            misses.append(f"Brier vs {base} {d['brier'] - b['brier']:+.4f}")
    return "yes" if not misses else "no: " + "; ".join(misses)


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        (
            "Lapse risk: every model fitted as of the cutoff, scored on (cutoff, cutoff + horizon]; outcome lapsed = no event "
            "of any kind in the window (PR-AUC: lapsed is the positive class). MAE: expected vs actual active days per user."
        ),
        "",
        "| case | history d | horizon d | users | lapsed | model | ROC-AUC | PR-AUC | Brier | log loss | MAE days | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    diffs = [
        "",
        (
            "decayrec minus each baseline, paired bootstrap 95% intervals over users (ROC-AUC: higher is better; Brier and "
            "log loss: lower is better)."
        ),
        "",
        "| case | baseline | ROC-AUC diff | Brier diff | log-loss diff |",
        "|---|---|---|---|---|",
    ]
    verdicts = ["", "| case | decayrec beats BG/NBD and RFM-logistic on ROC-AUC and Brier |", "|---|---|"]
    for r in results:
        p = r["protocol"]
        for m in r["models"]:
            if "error" in m:
                lines.append(
                    f"| {r['dataset']} | {r['history_days']:.0f} | {p['horizon_days']:g} | | | {m['name']} | {m['error']} |"
                )
                continue
            lines.append(
                f"| {r['dataset']} | {r['history_days']:.0f} | {p['horizon_days']:g} | {p['users']:,} | {p['lapsed_share']:.1%} | "
                f"{m['name']} | {_f(m['roc_auc'])} | {_f(m['pr_auc'])} | {_f(m['brier'])} | {_f(m['log_loss'])} | "
                f"{_f(m.get('active_days_mae'), 3)} | {m['fit_seconds']:.1f} |"
            )
        diffs.extend(
            f"| {r['dataset']} | {c['baseline']} | {_ci(c, 'roc_auc')} | {_ci(c, 'brier')} | {_ci(c, 'log_loss')} |"
            for c in r["comparisons"]
        )
        verdicts.append(f"| {r['dataset']} | {verdict(r)} |")
    return "\n".join(lines + diffs + verdicts) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", default="bench/results/lapse.json")
    ap.add_argument("--cases", default=",".join([*LOGS, *PRESETS, *LONG]))
    ap.add_argument("--bootstrap", type=int, default=300)
    args = ap.parse_args()
    results = []
    for name, events, cutoff, horizon in cases(args.cases.split(",")):
        print(f"{name}: cutoff {cutoff:%Y-%m-%d %H:%M}, horizon {horizon:g} d ...", flush=True)
        r = run(name, events, cutoff, horizon, args.bootstrap)
        first = parse_time(pc.min(events.column(schema.TIMESTAMP)).as_py().isoformat())
        r["history_days"] = (cutoff - first).total_seconds() / 86400
        results.append(r)
        print(markdown([r]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": f"{platform.machine()} python {platform.python_version()}", "models": MODELS}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=float) + "\n")
    md = markdown(results)
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
