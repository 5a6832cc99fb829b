"""Recommendation benchmark: every model on every dataset, leak-free time splits, tuned peers.

    python bench/bench_recommend.py --out bench/results/recommend.json          # full (make bench-recommend)
    python bench/bench_recommend.py --quick --datasets taobao-fav --out /tmp/r.json

Protocols (PROTOCOLS below; written into the results with each dataset):

- ``global``: one cutoff at ``last event - horizon``; models are fitted on the events at or
  before it and asked at it; evaluated users have history before the cutoff and a relevant
  event in ``(cutoff, cutoff + horizon]``; their truth is the set of items of those events.
- ``rolling`` (session logs, where a user id is a session): many cutoffs a step apart, one
  fresh fit per cutoff on the events at or before it; evaluated units are the sessions
  that span a cutoff (events on both sides); metrics pool the ``(cutoff, session)`` units.

Tuning: every model has at most four settings (its grid below, the same budget for all,
decayrec included); each is scored on validation splits made the same way *inside the
training period* (cutoffs shifted back by the horizon, or the rolling cutoffs just before
the first test cutoff, reading only events up to it), the best by NDCG@k is refitted at
the test cutoff(s). The test window is never used to choose anything.

Also: recommend time for 10,000 users after fit and fit times (decayrec next to ALS) on a
simulated shop, and for decayrec on each dataset the candidate recall (share of the test
truth that its candidate generation proposes: the ceiling of any re-ranking).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from decayrec.errors import InputError
from decayrec.evaluate import evaluate, evaluate_splits, time_split, validation_split
from decayrec.evaluate.runner import json_safe
from decayrec.events import open_events
from decayrec.recommend.registry import make_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HOUR = 1.0 / 24.0
MINUTES_10 = HOUR / 6

PROTOCOLS: dict[str, dict[str, Any]] = {
    # Reviews 2000..2014 at day resolution: a half-year test window; nobody re-reviews an item.
    "amazon-beauty": {"kind": "global", "horizon_days": 180.0},
    "amazon-grocery": {"kind": "global", "horizon_days": 180.0},
    # Nine days of favourites, to the second: the last day is the test window.
    "taobao-fav": {"kind": "global", "horizon_days": 1.0},
    # Sessions (a user id is a session; none returns): hourly cutoffs over the last three
    # days, each scoring the sessions active across it on their next hour of clicks.
    "yoochoose-clicks-100k": {"kind": "rolling", "horizon_days": HOUR, "splits": 72, "step_days": HOUR, "validation_splits": 12},
    # The simulated shop of decayrec.simulate (5,000 users, 180 days): the last week.
    "simulated": {"kind": "global", "horizon_days": 7.0},
}
MODELS = ("decayrec", "repeat", "covisit", "decayed_popularity", "popularity", "als", "bpr")
PROTOCOL_TEXT = (
    "Every model is fitted on the events at or before a cutoff and asked at that cutoff for the evaluated users; "
    "nothing after the cutoff reaches the fit or a user's history (decayrec's own label windows lie inside the "
    "training period too). **Global** (Amazon, Taobao, simulated): one cutoff at last event minus the test window; "
    "users with history and a relevant event in the window are scored on the set of items of those events. "
    "**Rolling** (YOOCHOOSE, where a user id is a session and no session returns, so one cutoff leaves about one "
    "session to score): 72 cutoffs an hour apart over the last three days (those no session spans are skipped), one fresh fit per cutoff on the events "
    "before it; the sessions active across a cutoff (clicks on both sides) are scored on their next hour of clicks, "
    "their own clicks before the cutoff being their history; units are (cutoff, session) pairs, pooled for the means "
    "and the bootstrap. **Tuning**: at most four settings per model (decayrec included), each scored on validation "
    "splits made the same way inside the training period (the cutoff moved back by the test window, or the 12 "
    "hourly cutoffs before the first test cutoff, reading only events up to it); the best by NDCG@20 is refitted "
    "for the test. The test windows choose nothing. Candidate recall: the share of test truth pairs that "
    "decayrec's candidate generation proposes at all, the ceiling of its re-ranking."
)
PEERS_NOTE = "peers: implicit ALS/BPR and the baselines (every model but decayrec)"


def grids(protocol: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """At most four settings per model, scaled to the dataset's horizon where time matters."""
    h = protocol["horizon_days"]
    session = protocol["kind"] == "rolling"
    scales = (h / 4, h, 4 * h, 16 * h) if not session else (HOUR, 1.0, 7.0, 30.0)
    return {
        "popularity": [{}],
        "decayed_popularity": [{"half_life_days": x} for x in scales],
        "repeat": [{"half_life_days": x} for x in scales],
        "covisit": (
            [{"window_hours": w, "recency_half_life_days": r} for w in (1, 24) for r in (7.0, MINUTES_10)]
            if session
            else [{"window_hours": w, "exclude_seen": e} for w in (24, 24 * max(30, h)) for e in (False, True)]
        ),
        "als": [{"factors": f, "alpha": a} for f in (32, 128) for a in (5.0, 40.0)],
        "bpr": [{"factors": f, "learning_rate": lr} for f in (32, 128) for lr in (0.01, 0.05)],
        "decayrec": _ranker_grid(protocol),
    }


def _ranker_grid(protocol: dict[str, Any]) -> list[dict[str, Any]]:
    h = protocol["horizon_days"]
    if protocol["kind"] == "rolling":
        # One-hour label windows, twelve of them stacked: one window holds a dozen sessions.
        # A dozen sessions span one cutoff, so each fit learns from ~120 groups: the grid
        # asks whether small trees (7 leaves, 100 rounds) rank them better than the default.
        base = {"horizon_days": HOUR, "train_windows": 12, "repeat_half_life_days": HOUR, "new_item_days": 1.0}
        small = {"num_leaves": 7, "n_estimators": 100}
        return [
            base | {"covisit_window_hours": 1.0},
            base | small | {"covisit_window_hours": 1.0},
            base | small | {"covisit_window_hours": 24.0},
            base | small | {"covisit_window_hours": 1.0, "n_per_source": 60},
        ]
    # The label window is the test horizon; the grid asks whether the ALS source, wider
    # candidate lists with more stacked label windows, or both pay on this shop.
    base = {"horizon_days": h}
    wide = {"n_per_source": 60, "train_windows": 3}
    return [base, base | {"use_als": True}, base | wide, base | wide | {"use_als": True}]


def load(name: str):
    if name == "simulated":
        from decayrec.simulate import SimConfig, simulate

        return simulate(SimConfig(n_users=5000, seed=7)).events
    store, _ = open_events(DATA / name / "events.csv.gz")
    return store.scan()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- splits -------------------------------------------------------------------------------
def rolling(events, protocol: dict[str, Any], n: int, end=None) -> list:
    """Up to ``n`` hourly-style cutoffs stepping back from ``end`` (default: the last event);
    cutoffs where no session spans the cutoff are skipped (and counted)."""
    h, step = protocol["horizon_days"], protocol["step_days"]
    last = pc.max(events["timestamp"]).as_py().replace(tzinfo=None) if end is None else end
    first = last - timedelta(days=h)
    out = []
    for i in reversed(range(n)):
        try:
            out.append(time_split(events, first - timedelta(days=i * step), h))
        except InputError:
            continue
    return out


def test_and_validation(events, protocol: dict[str, Any], quick: bool):
    if protocol["kind"] == "global":
        split = time_split(events, None, protocol["horizon_days"])
        return [split], [validation_split(split)]
    n = protocol["splits"] // (3 if quick else 1)
    tests = rolling(events, protocol, n)
    first = tests[0].cutoff.replace(tzinfo=None)
    before = tests[0].train  # events at or before the first test cutoff: all tuning may read
    vals = rolling(before, protocol, protocol["validation_splits"] // (3 if quick else 1), end=first)
    return tests, vals


# -- tuning and scoring --------------------------------------------------------------------
def ndcg_of(models: dict[str, Any], splits: list, k: int, bootstrap: int, inspect=None) -> dict[str, Any]:
    """Results of factories ``models`` on ``splits`` (RESULTS.json's shape)."""
    if len(splits) == 1:
        built = {n: f() for n, f in models.items()}
        res = json_safe(evaluate(built, split=splits[0], k=k, bootstrap=bootstrap).to_dict())
        if inspect is not None:
            for name, model in built.items():
                inspect(name, model, splits[0])
        return res
    return evaluate_splits(models, splits, k=k, bootstrap=bootstrap, inspect=inspect)


def tune(name: str, grid: list[dict], vals: list, k: int) -> tuple[dict, float | None, list]:
    if len(grid) == 1:
        return grid[0], None, []
    factories = {f"{name}#{i}": (lambda p=p: make_model(name, **p)) for i, p in enumerate(grid)}
    res = ndcg_of(factories, vals, k, 0)
    scores = [m["ndcg"] for m in res["models"]]
    best = max(range(len(grid)), key=lambda i: scores[i])
    return grid[best], scores[best], scores


class CandidateRecall:
    """Pooled over splits: how much of the test truth decayrec's candidate generation proposes, by source."""

    def __init__(self):
        self.truth = self.known = self.found = self.candidates = self.users = self.groups = 0
        self.by_source: dict[str, int] = {}
        self.trees: list[int] = []

    def __call__(self, name: str, model, split) -> None:
        if name != "decayrec":
            return
        from decayrec.recommend.ranker import SOURCES

        users = model.users_.encode(split.users).astype(np.int64)
        cand = model.sources_.generate(users, 0.0, max(model.n_popular, 20))
        n = max(len(model.items_), 1)
        key = users[cand.row] * n + cand.item
        tu = model.users_.encode(split.truth["user_id"]).astype(np.int64)
        ti = model.items_.encode(split.truth["item_id"]).astype(np.int64)
        known = (ti >= 0) & (tu >= 0)
        tkey = np.where(known, tu * n + ti, -1)
        self.truth += tkey.size
        self.known += int(known.sum())
        self.found += int((known & np.isin(tkey, key)).sum())
        for s, src in enumerate(SOURCES):
            mine = cand.score[:, s] > 0
            self.by_source[src] = self.by_source.get(src, 0) + int((known & np.isin(tkey, key[mine])).sum())
        self.candidates += cand.row.size
        self.users += users.size
        self.groups += model.train_groups_
        self.trees.append(model.trees_)

    def summary(self, splits: int) -> dict[str, Any]:
        t = max(self.truth, 1)
        return {
            "truth_pairs": self.truth,
            "truth_items_in_catalogue": self.known / t,
            "candidate_recall": self.found / t,
            "candidate_recall_by_source": {s: v / t for s, v in self.by_source.items() if v},
            "candidates_per_user": self.candidates / max(self.users, 1),
            "train_groups_per_fit": self.groups / max(splits, 1),
            "trees": self.trees[0] if len(set(self.trees)) == 1 else f"{min(self.trees)}..{max(self.trees)}",
            "split": "pooled over the test splits" if splits > 1 else "the test split",
        }


def run_dataset(name: str, models: list[str], k: int, quick: bool, bootstrap: int) -> dict:
    protocol = PROTOCOLS[name]
    started = time.perf_counter()
    events = load(name)
    tests, vals = test_and_validation(events, protocol, quick)
    log(f"{name}: {len(tests)} test split(s), {len(vals)} validation split(s), {sum(s.n_users for s in tests)} units")
    all_grids = grids(protocol)
    tuned = {}
    for model in models:
        grid = all_grids[model][: 2 if quick else 4]
        t0 = time.perf_counter()
        params, val_ndcg, scores = tune(model, grid, vals, k)
        tuned[model] = {"params": params, "validation_ndcg": val_ndcg, "grid": grid, "grid_validation_ndcg": scores}
        log(f"  tuned {model}: {params} (validation NDCG {val_ndcg}) in {time.perf_counter() - t0:.0f}s")
    built = {m: (lambda m=m: make_model(m, **tuned[m]["params"])) for m in models}
    recall = CandidateRecall()
    results = ndcg_of(built, tests, k, bootstrap, inspect=recall)
    for entry in results["models"]:
        entry["tuned"] = tuned[entry["name"]]
    if "decayrec" in models:
        results["decayrec_diagnostics"] = recall.summary(len(tests))
    results["dataset"] = name
    results["protocol"] |= {"kind": protocol["kind"], "settings": protocol, "validation_splits": len(vals)}
    results["seconds"] = round(time.perf_counter() - started, 1)
    log(f"{name}: done in {results['seconds']:.0f}s")
    return results


def timing(models: list[str], users: int = 10_000) -> dict:
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
        log(f"timing {name}: {out[name]}")
    return {"events": events.num_rows, "users": users, "k": 20, "models": out}


# -- reporting -----------------------------------------------------------------------------
def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def comparison(result: dict) -> dict[str, Any] | None:
    cells = {m["name"]: m for m in result["models"]}
    main = cells.get("decayrec")
    peers = [m for n, m in cells.items() if n != "decayrec"]
    if main is None or not peers:
        return None
    best = max(peers, key=lambda m: m["ndcg"] or 0.0)
    rel = (main["ndcg"] / best["ndcg"] - 1) if best["ndcg"] else None
    lo, hi = main["ci"].get("ndcg", [None, None])
    blo, bhi = best["ci"].get("ndcg", [None, None])
    return {
        "best_peer": best["name"],
        "best_peer_ndcg": best["ndcg"],
        "decayrec_ndcg": main["ndcg"],
        "relative": rel,
        "target_met": rel is not None and rel >= 0.10,
        "intervals_overlap": None if lo is None or blo is None else not (lo > bhi or hi < blo),
    }


def markdown(doc: dict) -> str:
    k = doc["k"]
    out = [f"# Recommendation benchmark (k = {k})", "", f"Command: `{doc['command']}`  ", f"Total {doc['seconds']:.0f} s on {doc['machine']}.", ""]
    out += ["## Protocol", "", PROTOCOL_TEXT, ""]
    out += ["## decayrec against the best tuned peer", "", PEERS_NOTE + "; NDCG@20 on the test window(s), 95% bootstrap intervals in the per-dataset tables.", ""]
    out += ["| dataset | units evaluated | decayrec NDCG | best peer | peer NDCG | decayrec vs best | target (+10%) | candidate recall |", "|---|---|---|---|---|---|---|---|"]
    for r in doc["datasets"]:
        c = r["comparison"]
        diag = r.get("decayrec_diagnostics", {})
        if c is None:
            continue
        rel = "n/a" if c["relative"] is None else f"{c['relative']:+.1%}"
        out.append(
            f"| {r['dataset']} | {r['protocol']['users_evaluated']:,} | {_f(c['decayrec_ndcg'])} | {c['best_peer']} | {_f(c['best_peer_ndcg'])} "
            f"| {rel} | {'met' if c['target_met'] else 'missed'} | {_f(diag.get('candidate_recall'), 3)} |"
        )
    for r in doc["datasets"]:
        p = r["protocol"]
        out += ["", f"## {r['dataset']}", ""]
        if p["kind"] == "global":
            out.append(
                f"Global split: cutoff {p['cutoff']}, test window {p['horizon_days']:g} days; {p['users_evaluated']:,} users evaluated "
                f"({p.get('train_events', 0):,} training events); repeat share of truth {p.get('repeat_share', float('nan')):.1%}."
            )
        else:
            out.append(
                f"Rolling: {p['splits']} cutoffs {p['settings']['step_days'] * 24:g} h apart ({p['cutoff'][0]} .. {p['cutoff'][-1]}), "
                f"test window {p['horizon_days'] * 24:g} h after each, one fit per cutoff; {p['users_evaluated']:,} (cutoff, session) units; "
                f"repeat share of truth {p['repeat_share']:.1%}; {p['validation_splits']} earlier cutoffs for tuning."
            )
        out += ["", f"| model | NDCG@{k} [95% CI] | Recall@{k} | HitRate@{k} | MRR@{k} | coverage | repeat NDCG (users) | new NDCG (users) | fit s | rec s | tuned |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for m in sorted(r["models"], key=lambda m: -(m["ndcg"] or 0)):
            lo, hi = m["ci"].get("ndcg", [None, None])
            parts = []
            for v in ("repeat", "new"):
                part = m.get(v)
                parts.append(f"{_f(part['ndcg'])} ({part['users']:,})" if part else "-")
            params = ", ".join(f"{a}={b}" for a, b in m["tuned"]["params"].items()) or "defaults"
            out.append(
                f"| {m['name']} | {_f(m['ndcg'])} [{_f(lo)}, {_f(hi)}] | {_f(m['recall'])} | {_f(m['hit_rate'])} | {_f(m['mrr'])} "
                f"| {_f(m['coverage'], 3)} | {parts[0]} | {parts[1]} | {m['fit_seconds']:.1f} | {m['recommend_seconds']:.1f} | {params} |"
            )
        diag = r.get("decayrec_diagnostics")
        if diag:
            src = ", ".join(f"{s} {v:.3f}" for s, v in diag["candidate_recall_by_source"].items())
            out += ["", f"decayrec candidates ({diag['split']}): {diag['candidates_per_user']:.0f} per user; they hold "
                    f"{diag['candidate_recall']:.1%} of the truth pairs (by source: {src}); "
                    f"{diag['truth_items_in_catalogue']:.1%} of truth items were seen in training; "
                    f"ranker trained on {diag['train_groups_per_fit']:,.0f} groups per fit, {diag['trees']} trees."]
    if "timing" in doc:
        t = doc["timing"]
        out += ["", f"## Speed: {t['users']:,} users, k = {t['k']}, simulated shop of {t['events']:,} events", "",
                "| model | fit s | recommend s (10k users) |", "|---|---|---|"]
        for name, v in t["models"].items():
            out.append(f"| {name} | {v['fit_seconds']:.1f} | {v['recommend_10k_seconds']:.1f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(PROTOCOLS), help=f"comma-separated, among {', '.join(PROTOCOLS)}")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--out", default="bench/results/recommend.json")
    parser.add_argument("--quick", action="store_true", help="two settings per grid, a third of the rolling cutoffs, 50 bootstrap draws")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    models = args.models.split(",")
    unknown = [d for d in args.datasets.split(",") if d not in PROTOCOLS]
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose among {', '.join(PROTOCOLS)}")
    started = time.perf_counter()
    doc: dict[str, Any] = {"k": args.k, "command": "python " + " ".join(sys.argv), "quick": args.quick}
    doc["datasets"] = []
    for name in args.datasets.split(","):
        result = run_dataset(name, models, args.k, args.quick, 50 if args.quick else 200)
        result["comparison"] = comparison(result)
        doc["datasets"].append(result)
    if not args.skip_timing:
        doc["timing"] = timing(models)
    doc["seconds"] = time.perf_counter() - started
    import os

    doc["machine"] = f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end (other jobs share the machine)"
    doc = json_safe(doc)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    text = markdown(doc)
    Path(args.out).with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
