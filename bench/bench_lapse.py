"""Lapse-risk benchmark: the learned model against BG/NBD on every dataset, one time split.

    python bench/bench_lapse.py --out bench/results/lapse.json

For each dataset: both models are fitted as of a cutoff (the learned one on time-shifted
windows that end at or before it, calibrated on the newest), and score every user with an
event before the cutoff; the outcome is "no event of any kind in (cutoff, cutoff +
horizon]". ROC-AUC, PR-AUC (positive class: lapsed), Brier, and precision / recall / F1 at
P(lapse) >= 0.5, with paired bootstrap intervals of the differences (learned - BG/NBD).
On the simulator the truth is known: the ROC-AUC of the risk ranking against the users who
truly lapsed (their lapse time lies before the fit time) is reported too.
Writes the JSON and a markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from decayrec import schema
from decayrec.events import open_events
from decayrec.lapse.evaluate import evaluate_lapse
from decayrec.lapse.metrics import roc_auc
from decayrec.lapse.models import make_lapse_model
from decayrec.timeparse import parse_time

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# dataset -> horizon in days (the cutoff is the last event minus the horizon)
DATASETS = {
    "amazon-beauty": 90.0,
    "amazon-grocery": 90.0,
    "taobao-fav": 1.0,
    "yoochoose-clicks-100k": 1.0,
    "simulated": 30.0,
}
# A dataset whose rarer outcome has fewer users than this is reported as n/a.
MIN_CLASS = 50


def load(name: str, quick: bool):
    if name == "simulated":
        from decayrec.simulate import SimConfig, simulate

        sim = simulate(SimConfig(n_users=1000 if quick else 5000, seed=7))
        return sim.events, sim.truth
    store, _ = open_events(DATA / name / "events.csv.gz")
    return store.scan(), None


def truth_auc(events, truth: dict, horizon: float) -> dict[str, float]:
    """ROC-AUC of each model's risk against the simulator's true lapses before the fit time."""
    end = parse_time(truth["end"])
    out = {}
    for name in ("bgnbd", "decayrec"):
        risk = make_lapse_model(name, horizon).fit(events, end).predict()
        ids = risk.column(schema.USER).to_pylist()
        lapse = [truth["users"][u]["lapse"] for u in ids]
        y = np.array([t is not None and parse_time(t) <= end for t in lapse], dtype=np.int8)
        out[name] = roc_auc(y, 1.0 - risk.column("p_active").to_numpy())
    out["truly_lapsed_share"] = float(y.mean())
    return out


def run(name: str, horizon: float, quick: bool, earlier: int) -> dict:
    """The main split (cutoff = last event - horizon), then ``earlier`` splits one horizon apart before it."""
    events, truth = load(name, quick)
    last = parse_time(str(events.column(schema.TIMESTAMP).to_numpy().max()) + "Z")
    cutoff = last - timedelta(days=horizon)
    started = time.perf_counter()
    try:
        result = evaluate_lapse(events, cutoff, horizon, bootstrap=100 if quick else 500)
    except Exception as exc:  # noqa: BLE001 - a dataset the protocol cannot score is reported, not fatal
        return {"dataset": name, "horizon_days": horizon, "skipped": f"{type(exc).__name__}: {exc}"}
    share, n = result["protocol"]["lapsed_share"], result["protocol"]["users"]
    minority = round(min(share, 1 - share) * n)
    if minority < MIN_CLASS:
        return {
            "dataset": name,
            "horizon_days": horizon,
            "skipped": f"n/a: only {minority} of {n:,} users fall in the rarer outcome (ids that do not return, "
            "e.g. sessions): nothing to rank",
        }
    result["dataset"] = name
    result["events"] = events.num_rows
    result["seconds"] = time.perf_counter() - started
    result["earlier_splits"] = []
    for j in range(1, earlier + 1):
        try:
            more = evaluate_lapse(events, cutoff - timedelta(days=j * horizon), horizon, bootstrap=0)
        except Exception as exc:  # noqa: BLE001 - too little history that far back
            result["earlier_splits"].append({"cutoff": str(cutoff - timedelta(days=j * horizon)), "skipped": str(exc)})
            continue
        bg, dr = more["models"]
        result["earlier_splits"].append(
            {
                "cutoff": more["protocol"]["cutoff"],
                "users": more["protocol"]["users"],
                "roc_auc": {"bgnbd": bg["roc_auc"], "decayrec": dr["roc_auc"]},
                "brier": {"bgnbd": bg["brier"], "decayrec": dr["brier"]},
            }
        )
    if truth is not None:
        result["truth_roc_auc"] = truth_auc(events, truth, horizon)
    return result


def timings(n: int = 1_000_000, seed: int = 0) -> dict[str, float]:
    """Seconds for the visit summary (BG/NBD input) and the learned model's features on n events."""
    import pyarrow as pa

    from decayrec.lapse.features import UserLog, user_features
    from decayrec.lapse.rfm import rfm_summary

    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01", "us").astype(np.int64)
    ticks = start + rng.integers(0, 180 * 86_400 * 10**6, n)
    table = pa.table(
        {
            "user_id": pa.array(rng.integers(0, 100_000, n).astype(str)),
            "item_id": pa.array(rng.integers(0, 50_000, n).astype(str)),
            "event": pa.array(np.where(rng.random(n) < 0.1, "purchase", "view")),
            "timestamp": pa.array(ticks, pa.timestamp("us", tz="UTC")),
            "category_id": pa.array(rng.integers(0, 300, n).astype(str)),
        }
    )
    now = parse_time("2024-06-29T00:00:00Z")
    out = {"events": n}
    t = time.perf_counter()
    rfm_summary(table, now)
    out["rfm_summary_s"] = time.perf_counter() - t
    t = time.perf_counter()
    log = UserLog.from_events(table, now)
    out["encode_s"] = time.perf_counter() - t
    t = time.perf_counter()
    user_features(log, 0.0)
    out["features_one_window_s"] = time.perf_counter() - t
    return out


def _f(x: float, d: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{d}f}"


def markdown(results: list[dict]) -> str:
    lines = [
        "Lapse risk: learned model (decayrec) vs BG/NBD, fitted as of the cutoff, scored on (cutoff, cutoff + horizon].",
        "Outcome: lapsed = no event of any kind in the window; PR-AUC and P/R/F1 treat 'lapsed' as the positive class,",
        "at P(lapse) >= 0.5. Differences: learned - BG/NBD with a paired bootstrap 95% interval over users.",
        "",
        "| dataset | horizon | users | lapsed | model | ROC-AUC | PR-AUC | Brier | precision | recall | F1 | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    diffs = [
        "",
        "| dataset | ROC-AUC diff [95% CI] | Brier diff [95% CI] (lower is better) | learned beats BG/NBD on both |",
        "|---|---|---|---|",
    ]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['dataset']} | {r['horizon_days']:g} d | | | | {r['skipped']} | | | | | | |")
            continue
        p = r["protocol"]
        for m in r["models"]:
            t = m["at_threshold"]
            lines.append(
                f"| {r['dataset']} | {p['horizon_days']:g} d | {p['users']:,} | {p['lapsed_share']:.1%} | {m['name']} | "
                f"{_f(m['roc_auc'])} | {_f(m['pr_auc'])} | {_f(m['brier'])} | {_f(t['precision'], 3)} | "
                f"{_f(t['recall'], 3)} | {_f(t['f1'], 3)} | {m['fit_seconds']:.1f} |"
            )
            v = m.get("vs_reference")
            if v:
                wins = v["roc_auc_diff"] > 0 and v["brier_diff"] < 0
                diffs.append(
                    f"| {r['dataset']} | {v['roc_auc_diff']:+.4f} [{v['roc_auc_diff_ci'][0]:+.4f}, {v['roc_auc_diff_ci'][1]:+.4f}] | "
                    f"{v['brier_diff']:+.4f} [{v['brier_diff_ci'][0]:+.4f}, {v['brier_diff_ci'][1]:+.4f}] | {'yes' if wins else 'no'} |"
                )
    lines += diffs
    stable = [r for r in results if r.get("earlier_splits")]
    if stable:
        lines += [
            "",
            "Earlier splits (same protocol, cutoffs one horizon apart before the main one): ROC-AUC and Brier, BG/NBD -> learned.",
            "",
            "| dataset | cutoff | users | ROC-AUC BG/NBD | ROC-AUC learned | Brier BG/NBD | Brier learned |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in stable:
            for e in r["earlier_splits"]:
                if "skipped" in e:
                    lines.append(f"| {r['dataset']} | {e['cutoff'][:10]} | {e['skipped']} | | | | |")
                    continue
                a, b = e["roc_auc"], e["brier"]
                lines.append(
                    f"| {r['dataset']} | {e['cutoff'][:10]} | {e['users']:,} | {_f(a['bgnbd'])} | {_f(a['decayrec'])} | "
                    f"{_f(b['bgnbd'])} | {_f(b['decayrec'])} |"
                )
    truths = [r for r in results if "truth_roc_auc" in r]
    for r in truths:
        t = r["truth_roc_auc"]
        lines += [
            "",
            (
                f"Simulator ({r['dataset']}): ROC-AUC of the risk ranking at the end of the log against the users who "
                f"truly lapsed ({t['truly_lapsed_share']:.1%} of them): decayrec {t['decayrec']:.4f}, BG/NBD {t['bgnbd']:.4f}."
            ),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/lapse.json")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--quick", action="store_true", help="smaller simulator, fewer bootstrap rounds")
    ap.add_argument("--earlier", type=int, default=2, help="extra splits, one horizon apart, before the main one")
    args = ap.parse_args()
    results = []
    for name in args.datasets.split(","):
        print(f"{name} ...", flush=True)
        results.append(run(name, DATASETS[name], args.quick, args.earlier))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": f"{platform.machine()} python {platform.python_version()}"}
    speed = timings(100_000 if args.quick else 1_000_000)
    out.write_text(json.dumps({"meta": meta, "results": results, "timings": speed}, indent=1, default=float) + "\n")
    md = markdown(results) + (
        f"\nSpeed on {speed['events']:,} synthetic events (100,000 users): visit summary for BG/NBD "
        f"{speed['rfm_summary_s']:.2f} s; the learned model's features: encoding {speed['encode_s']:.2f} s, then "
        f"{speed['features_one_window_s']:.2f} s per window.\n"
    )
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
