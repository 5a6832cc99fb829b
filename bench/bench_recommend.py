"""Recommendation benchmark: every model on every dataset, one leak-free protocol.

    python bench/bench_recommend.py --out bench/results/recommend.json

For each dataset: a global time split (train up to the cutoff, test on the next window,
users with history and activity in the window); every baseline is tuned on a validation
split made the same way inside the training period, with the same budget (its grid below,
at most four settings), then refitted at the cutoff and scored on the test window.
Also: recommend time for 10,000 users after fit, and fit times (decayrec next to ALS).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from decayrec.evaluate import evaluate, time_split, validation_split
from decayrec.events import open_events
from decayrec.recommend.registry import make_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# dataset -> (test window in days, k)
DATASETS = {
    "amazon-beauty": 180.0,
    "amazon-grocery": 180.0,
    "taobao-fav": 1.0,
    "yoochoose-clicks-100k": 1.0,
    "simulated": 7.0,
}
# The same tuning budget for every baseline: at most four settings each.
GRIDS = {
    "popularity": [{}],
    "decayed_popularity": [{"half_life_days": h} for h in (1.0, 7.0, 30.0, 120.0)],
    "repeat": [{"half_life_days": h} for h in (3.0, 14.0, 60.0, 240.0)],
    "covisit": [{"window_hours": w, "exclude_seen": e} for w in (24, 720) for e in (False, True)],
    "als": [{"factors": f, "alpha": a} for f in (32, 128) for a in (5.0, 40.0)],
    "bpr": [{"factors": f, "learning_rate": lr} for f in (32, 128) for lr in (0.01, 0.05)],
    "decayrec": [{}],
}


def load(name: str):
    if name == "simulated":
        from decayrec.simulate import SimConfig, simulate

        return simulate(SimConfig(n_users=5000, seed=7)).events
    store, _ = open_events(DATA / name / "events.csv.gz")
    return store.scan()


def tune(name: str, split, k: int) -> tuple[dict, float]:
    grid = GRIDS[name]
    if len(grid) == 1:
        return grid[0], float("nan")
    val = validation_split(split)
    models = {f"{name}#{i}": make_model(name, **params) for i, params in enumerate(grid)}
    results = evaluate(models, split=val, k=k, bootstrap=0)
    scores = [m["ndcg"] for m in results.to_dict()["models"]]
    best = max(range(len(grid)), key=lambda i: scores[i])
    return grid[best], scores[best]


def run_dataset(name: str, models: list[str], k: int) -> dict:
    events = load(name)
    split = time_split(events, None, DATASETS[name])
    tuned = {}
    for model in models:
        params, val_ndcg = tune(model, split, k)
        tuned[model] = {"params": params, "validation_ndcg": val_ndcg}
    built = {m: make_model(m, **tuned[m]["params"]) for m in models}
    results = evaluate(built, split=split, k=k).to_dict()
    for entry in results["models"]:
        entry["tuned"] = tuned[entry["name"]]
    results["dataset"] = name
    return results


def timing(models: list[str], users: int = 10_000) -> dict:
    from datetime import timedelta

    from decayrec.simulate import SimConfig, simulate

    events = simulate(SimConfig(n_users=users, seed=11)).events
    now = events["timestamp"][-1].as_py() + timedelta(seconds=1)
    ids = [f"u{i:05d}" for i in range(users)]
    out = {}
    for name in models:
        model = make_model(name)
        started = time.perf_counter()
        model.fit(events, now)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        model.recommend(ids, 20, now)
        out[name] = {"fit_seconds": round(fit, 2), "recommend_10k_seconds": round(time.perf_counter() - started, 2)}
    return {"events": events.num_rows, "users": users, "models": out}


def markdown(all_results: list[dict]) -> str:
    lines = ["| dataset | users | " + " | ".join(m["name"] for m in all_results[0]["models"]) + " | decayrec vs best peer |",
             "|---|---|" + "---|" * (len(all_results[0]["models"]) + 1)]
    for r in all_results:
        cells = {m["name"]: m for m in r["models"]}
        peers = [m for n, m in cells.items() if n != "decayrec"]
        best = max(peers, key=lambda m: m["ndcg"])
        main = cells.get("decayrec")
        gain = f"{(main['ndcg'] / best['ndcg'] - 1):+.0%} vs {best['name']}" if main and best["ndcg"] > 0 else "n/a"
        row = [f"{cells[n]['ndcg']:.4f}" for n in cells]
        lines.append(f"| {r['dataset']} | {r['protocol']['users_evaluated']:,} | " + " | ".join(row) + f" | {gain} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default="decayrec,repeat,covisit,decayed_popularity,popularity,als,bpr")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--out", default="bench/results/recommend.json")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    models = args.models.split(",")
    all_results = []
    for name in args.datasets.split(","):
        started = time.perf_counter()
        all_results.append(run_dataset(name, models, args.k))
        print(f"{name}: {time.perf_counter() - started:.0f}s", flush=True)
    doc = {"k": args.k, "datasets": all_results}
    if not args.skip_timing:
        doc["timing"] = timing(models)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    table = markdown(all_results)
    Path(args.out).with_suffix(".md").write_text(table + "\n")
    print(table)
    if "timing" in doc:
        print(json.dumps(doc["timing"], indent=2))


if __name__ == "__main__":
    main()
