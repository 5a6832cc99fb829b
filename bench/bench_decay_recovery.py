"""Half-life recovery on the simulator: fitted vs true half-lives over several seeds.

    python bench/bench_decay_recovery.py --seeds 0,1,2 --presets default,fashion,reviews,purchases,grocery,sessions \
        --out bench/results/decay_recovery.json

For each preset and seed, the simulated shop is fitted as of its end; errors are reported
separately for categories whose events follow the decay model (median and worst) and for
consumable categories (scheduled re-buys), with the share of true values inside the 95%
intervals. ``default-2000`` is the default shop at ``--users`` users.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from decayrec.decay.config import FitConfig
from decayrec.decay.fit import fit_decay
from decayrec.simulate import SimConfig, simulate, simulate_preset
from decayrec.timeparse import parse_time


def one(seed: int, users: int, objective: str = "likelihood", window_end: str = "user_last_event", preset: str = "") -> dict:
    sim = simulate_preset(preset, seed=seed) if preset else simulate(SimConfig(n_users=users, seed=seed))
    truth = sim.truth["half_life_days"]["by_category"]
    consumable = set(sim.truth["consumable_cycles_days"])
    started = time.perf_counter()
    model = fit_decay(
        sim.events, parse_time(sim.truth["end"]), FitConfig(fit_by_event=False, objective=objective, window_end=window_end)
    )
    seconds = time.perf_counter() - started
    rows = []
    for c, h in truth.items():
        fit = model.by_category[c]
        rows.append(
            {
                "category": c,
                "true": h,
                "fitted": fit.days,
                "low": fit.low,
                "high": fit.high,
                "points": fit.points,
                "consumable": c in consumable,
                "rel_error": abs(fit.days - h) / h,
                "inside": fit.low <= h <= fit.high,
            }
        )
    plain = [r for r in rows if not r["consumable"]]
    cons = [r for r in rows if r["consumable"]]
    return {
        "preset": preset or "default-2000",
        "seed": seed,
        "median_rel_error_all": float(np.median([r["rel_error"] for r in rows])),
        "worst_rel_error_plain": float(np.max([r["rel_error"] for r in plain])) if plain else None,
        "events": sim.events.num_rows,
        "fit_seconds": round(seconds, 1),
        "median_rel_error_plain": float(np.median([r["rel_error"] for r in plain])) if plain else None,
        "median_rel_error_consumable": float(np.median([r["rel_error"] for r in cons])) if cons else None,
        "coverage_plain": float(np.mean([r["inside"] for r in plain])) if plain else None,
        "categories_plain": len(plain),
        "categories_consumable": len(cons),
        "weights": model.weights,
        "true_weights": sim.truth["event_weights"],
        "categories": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument(
        "--presets", default="default-2000", help="comma-separated simulator presets (default-2000: the default shop)"
    )
    parser.add_argument("--out", default="bench/results/decay_recovery.json")
    parser.add_argument("--objective", default="likelihood", help="FitConfig.objective: likelihood, next_window or anchors")
    parser.add_argument("--window-end", default="user_last_event", help="FitConfig.window_end: user_last_event, now or dropout")
    args = parser.parse_args()
    results = [
        one(int(s), args.users, args.objective, args.window_end, "" if p == "default-2000" else p)
        for p in args.presets.split(",")
        for s in args.seeds.split(",")
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(
        "| preset | seed | events | fit s | decay-model categories | median error | worst error | 95% interval coverage "
        "| median error, consumable categories |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def pct(x: float | None, digits: int = 1) -> str:
        return "n/a" if x is None else f"{x:.{digits}%}"

    for r in results:
        print(
            f"| {r['preset']} | {r['seed']} | {r['events']:,} | {r['fit_seconds']} | {r['categories_plain']} "
            f"| {pct(r['median_rel_error_plain'])} | {pct(r['worst_rel_error_plain'])} | {pct(r['coverage_plain'], 0)} "
            f"| {pct(r['median_rel_error_consumable'])} ({r['categories_consumable']}) |"
        )


if __name__ == "__main__":
    main()
