"""Recommendation benchmark: decayrec at its defaults against tuned peers, on every real log and every simulator preset.

    python bench/bench_recommend.py --out bench/results/recommend.json             # everything (make bench-recommend)
    python bench/bench_recommend.py --datasets amazon-beauty,sim:grocery --skip-scale --out /tmp/r.json

The protocol is that of ``../shared/bench`` (its README), so the two benches can be read
side by side: one global cutoff leaving the last 10% of the events after it, the test
window running to the last event; evaluated users have history before the cutoff and an
event in the window; their truth is the set of items they touched there (any event
type), split into repeat (touched in training) and new halves. Peers are tuned on a
validation split made the same way inside the training events and refitted at the cutoff;
their grids are at least as wide as ``../shared/bench``'s, with its event weights. When
(almost) no (user, item) pair repeats in training, the peers' lists leave out each user's
own items; decayrec is not told.

decayrec runs exactly as ``decayrec recommend`` does with its defaults: no setting from
here, the same model for every dataset; it chooses its own on validation windows inside
the training period and writes a model card, summarised in the results. Its own single
sources, with the settings it found for them, are scored on the test window too: the
floor it promises is checked there, with a paired bootstrap interval.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec.errors import InputError
from decayrec.evaluate import bootstrap_ci, evaluate, quantile_split, time_split
from decayrec.evaluate.metrics import summarise
from decayrec.evaluate.runner import result_entry
from decayrec.events import open_events
from decayrec.io.outputs import json_safe
from decayrec.recommend.registry import make_model
from decayrec.recommend.topk import rank_in_group
from decayrec.simulate import PRESETS, simulate_preset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = ("amazon-beauty", "amazon-grocery", "taobao-fav", "yoochoose-clicks-100k")
SIMULATED = tuple(f"sim:{name}" for name in PRESETS)
K = 20
# ../shared/bench's fixed event weights for every peer.
PEER_WEIGHTS = {"view": 1.0, "click": 1.0, "fav": 2.0, "cart": 3.0, "purchase": 4.0}
FOREVER = 1e6  # days: a half-life or window that never cuts
ROLLING_CUTOFFS = 8
# Peers and their grids: each at least as wide as ../shared/bench's for the same method.
PEERS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "pop-window": ("popularity", [{"window_days": d} for d in (1.0, 7.0, 30.0, 90.0, 365.0, None)]),
    "pop-decay": ("decayed_popularity", [{"half_life_days": h} for h in (1.0, 3.0, 7.0, 30.0, 90.0, 365.0)]),
    "repeat": ("repeat", [{"half_life_days": h} for h in (3.0, 14.0, 60.0, 180.0, 720.0, FOREVER)]),
    # In place of ../shared/bench's SAR (the recommenders library is not a dependency here).
    "covisit": ("covisit", [{"window_hours": w} for w in (1.0, 24.0, 720.0, 24.0 * FOREVER)]),
    "implicit-als": (
        "als",
        [
            {"factors": f, "alpha": a, "regularization": 0.05, "iterations": 15}
            for f in (32, 128, 256)
            for a in (0.5, 1.0, 4.0, 16.0)
        ],
    ),
    "implicit-bpr": (
        "bpr",
        [
            {"factors": f, "learning_rate": lr, "regularization": 0.01, "iterations": 100}
            for f in (64, 256)
            for lr in (0.01, 0.03, 0.1)
        ],
    ),
    "implicit-itemknn": (
        "itemknn",
        [{"kind": "cosine", "K": k} for k in (20, 200)] + [{"kind": "bm25", "K": k} for k in (10, 50, 200, 1000)],
    ),
}
OURS = ("decayrec", "decayrec+seq", "sequence")
EXCLUDABLE = ("covisit", "als", "bpr", "itemknn", "sequence")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(name: str) -> tuple[pa.Table, dict[str, Any]]:
    if name.startswith("sim:"):
        sim = simulate_preset(name[4:])
        return sim.events, {"preset": name[4:], "config": sim.config.model_dump(mode="json")}
    store, _ = open_events(DATA / name / "events.csv.gz")
    return store.scan(), {"file": str(DATA / name / "events.csv.gz")}


class WithoutSeen:
    """A peer whose lists leave out the user's training items (../shared/bench's rule for logs without repeats)."""

    def __init__(self, model):
        self.model, self.name = model, model.name

    def fit(self, events, now):
        self.model.fit(events, now)
        pairs = events.select(["user_id", "item_id"]).group_by(["user_id", "item_id"]).aggregate([])
        self.seen = pairs
        self.most = int(pc.max(pairs.group_by("user_id").aggregate([("item_id", "count")])["item_id_count"]).as_py() or 0)
        return self

    def recommend(self, users, k, now):
        recs = self.model.recommend(users, k + self.most, now)
        flag = self.seen.append_column("seen", pa.array(np.ones(self.seen.num_rows, bool)))
        marked = recs.join(flag, ["user_id", "item_id"], join_type="left outer")
        recs = marked.filter(pc.invert(pc.fill_null(marked["seen"], False))).drop_columns(["seen"])
        recs = recs.sort_by([("user_id", "ascending"), ("rank", "ascending")])
        rank = rank_in_group(recs["user_id"].to_numpy(zero_copy_only=False)) + 1
        recs = recs.set_column(recs.schema.get_field_index("rank"), "rank", pa.array(rank, pa.int32()))
        return recs.filter(pa.array(rank <= k))


def no_repeats(train: pa.Table) -> bool:
    pairs = train.select(["user_id", "item_id"]).group_by(["user_id", "item_id"]).aggregate([("user_id", "count")])
    counts = pairs["user_id_count"].to_numpy()
    return bool(np.mean(counts > 1) < 0.001)


def peer(base: str, params: dict[str, Any], exclude: bool, weights: bool = True):
    params = dict(params) | ({"event_weights": PEER_WEIGHTS} if weights else {})
    if exclude and base in EXCLUDABLE:
        return make_model(base, **params, exclude_seen=True)
    model = make_model(base, **params)
    return WithoutSeen(model) if exclude else model


def session_log(events: pa.Table) -> bool:
    """Whether (almost) nobody is active on two days: user ids are sessions."""
    day = events["timestamp"].cast(pa.timestamp("us")).cast(pa.int64()).to_numpy() // 86_400_000_000
    pairs = pa.table({"u": events["user_id"], "d": pa.array(day)}).group_by(["u", "d"]).aggregate([])
    days = pairs.group_by("u").aggregate([("d", "count")])["d_count"].to_numpy()
    return bool(np.mean(days > 1) < 0.05)


def rolling(events: pa.Table, n: int = ROLLING_CUTOFFS) -> list:
    """``n`` cutoffs at the event-time quantiles 90%, 91%, ... with a one-day window each: for session logs,
    where one cutoff leaves a handful of sessions spanning it."""
    ts = np.sort(events["timestamp"].cast(pa.timestamp("us")).cast(pa.int64()).to_numpy())
    out = []
    for q in 0.90 + 0.01 * np.arange(n):
        cut = datetime(1970, 1, 1) + timedelta(microseconds=int(ts[int(np.ceil(ts.size * q)) - 1]))
        try:
            out.append(time_split(events, cut, 1.0))
        except InputError:  # no session spans this cutoff
            continue
    return out


def splits_for(events: pa.Table) -> tuple[str, list, list]:
    """The protocol's test splits and validation splits (the same rule applied inside the first test split's training)."""
    if session_log(events):
        tests = rolling(events)
        return "rolling", tests, rolling(tests[0].train)
    test = quantile_split(events)
    return "global", [test], [quantile_split(test.train)]


class Pooled:
    """Scores of models over one or several test splits, pooled over (cutoff, user) units, kept per unit for pairing."""

    def __init__(self, splits: list, bootstrap: int):
        self.splits, self.bootstrap = splits, bootstrap
        self.tables: dict[str, dict[str, list[pa.Table]]] = {}
        self.extra: dict[str, dict[str, float]] = {}

    def add(self, factories: dict[str, Any], keep=None) -> None:
        """Fit and score ``factories`` (name -> ``make(split_index)``, a model or None to skip that split) on every split."""
        for s, split in enumerate(self.splits):
            built = {name: model for name, make in factories.items() if (model := make(s)) is not None}
            if not built:
                continue
            res = evaluate(built, split=split, k=K, bootstrap=0)
            for m in res.models:
                for variant, table in m.scores.per_user.items():
                    unit = pc.binary_join_element_wise(f"{s}|", table["user_id"].cast(pa.string()), "")
                    self.tables.setdefault(m.name, {}).setdefault(variant, []).append(table.set_column(0, "user_id", unit))
                e = self.extra.setdefault(m.name, {"coverage": 0.0, "items": 0, "fit": 0.0, "rec": 0.0, "with": 0})
                e["coverage"] += m.scores.coverage / len(self.splits)
                e["items"] = max(e["items"], m.scores.coverage_items)
                e["fit"] += m.fit_seconds
                e["rec"] += m.recommend_seconds
                e["with"] += m.scores.users_with_recs
            if keep is not None:
                keep(built, split)

    def row(self, name: str) -> dict[str, Any]:
        summary = {v: summarise(pa.concat_tables(t), self.bootstrap) for v, t in self.tables[name].items()}
        e = self.extra[name]
        return result_entry(name, summary, e["coverage"], e["fit"], e["rec"], e["with"], e["items"])

    def per_unit(self, name: str) -> np.ndarray:
        return pa.concat_tables(self.tables[name]["all"])["ndcg"].to_numpy()

    def ndcg(self, name: str) -> float:
        return float(self.per_unit(name).mean())


def tune_peers(vals: list, exclude: bool) -> dict[str, dict[str, Any]]:
    out = {}
    pop_h = None
    for name, (base, grid) in PEERS.items():
        started = time.perf_counter()
        scores = []
        for params in grid:
            if name == "repeat":
                params = params | {"fill_half_life_days": pop_h}
            try:
                pooled = Pooled(vals, 0)
                pooled.add({name: lambda s, p=params, b=base: peer(b, p, exclude)})
                scores.append(pooled.ndcg(name))
            except Exception as exc:  # noqa: BLE001 - a setting a peer cannot fit scores nothing  # a peer that cannot run is reported, not hidden
                log(f"  {name} {params}: {type(exc).__name__}: {exc}")
                scores.append(float("nan"))
        best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
        params = grid[best] | ({"fill_half_life_days": pop_h} if name == "repeat" else {})
        if name == "pop-decay":
            pop_h = params["half_life_days"]
        out[name] = {
            "base": base,
            "params": params,
            "validation_ndcg": scores[best],
            "grid": grid,
            "grid_ndcg": scores,
            "tune_seconds": round(time.perf_counter() - started, 1),
        }
        log(f"  tuned {name}: {params} (validation NDCG {scores[best]:.4f}) in {out[name]['tune_seconds']:.0f}s")
    return out


def paired(a: np.ndarray, b: np.ndarray, n_boot: int = 1000) -> dict[str, float]:
    """Mean of a - b per unit with a 95% bootstrap interval (the same units, resampled together)."""
    diff = a - b
    lo, hi = bootstrap_ci(diff, n_boot, seed=0)
    return {"mean": float(diff.mean()), "low": float(lo), "high": float(hi)}


def run_dataset(name: str, bootstrap: int, with_sequence: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    events, source = load(name)
    kind, tests, vals = splits_for(events)
    exclude = no_repeats(tests[0].train)
    log(
        f"{name}: {events.num_rows:,} events; {kind} protocol, {len(tests)} test cutoff(s) from {tests[0].cutoff:%Y-%m-%d %H:%M}, "
        f"{tests[0].horizon_days:g}-day window, {sum(t.n_users for t in tests):,} units; validation "
        f"{sum(v.n_users for v in vals):,} units; peers exclude seen items: {exclude}"
    )
    tuned = tune_peers(vals, exclude)
    cards: list[dict[str, Any]] = []
    pooled = Pooled(tests, bootstrap)
    factories = {"decayrec": lambda s: make_model("decayrec", log=lambda line: log("  " + line))}
    if with_sequence:
        # The main model offered the sequence source, and the sequence model alone at its defaults (told, as the
        # peers are, to leave out seen items on logs without repeats).
        factories["decayrec+seq"] = lambda s: make_model("decayrec", use_sequence=True)
        factories["sequence"] = lambda s: peer("sequence", {}, exclude, weights=False)
    factories |= {n: (lambda s, t=t: peer(t["base"], t["params"], exclude)) for n, t in tuned.items()}
    seq_cards: list[dict[str, Any]] = []

    def keep_cards(built, split) -> None:
        cards.append(built["decayrec"].card())
        if "decayrec+seq" in built:
            seq_cards.append(built["decayrec+seq"].card())

    pooled.add(factories, keep=keep_cards)
    # decayrec's own single sources, with the settings its search found for them at each cutoff, on the same windows.
    singles = [(c.get("floor") or {}).get("singles", {}) for c in cards]
    own_names = sorted(set().union(*singles))

    def own(src: str):
        return lambda s: make_model(src, **singles[s][src]["settings"]) if src in singles[s] else None

    pooled.add({f"own:{src}": own(src) for src in own_names})
    rows = [pooled.row(n) for n in factories]
    for row in rows:
        if row["name"] in tuned:
            row["tuned"] = {k: v for k, v in tuned[row["name"]].items() if k != "grid"}
    own_rows = [pooled.row(f"own:{src}") for src in own_names if pooled.tables.get(f"own:{src}")]
    peers = [r for r in rows if r["name"] not in OURS]
    best_peer = max(peers, key=lambda r: r["ndcg"] or 0.0)
    main = pooled.per_unit("decayrec")
    truth = pa.concat_tables([t.truth for t in tests])
    doc: dict[str, Any] = {
        "dataset": name,
        "source": source,
        "protocol": {
            "kind": kind,
            "cutoffs": [t.cutoff.isoformat() for t in tests],
            "cutoff": tests[0].cutoff.isoformat(),
            "horizon_days": tests[0].horizon_days,
            "users_evaluated": int(main.size),
            "users_repeat": sum(len(t) for t in pooled.tables["decayrec"].get("repeat", [])),
            "users_new": sum(len(t) for t in pooled.tables["decayrec"].get("new", [])),
            "repeat_share": float(pc.mean(truth["repeat"].cast(pa.float64())).as_py() or 0.0),
            "validation_cutoff": vals[0].cutoff.isoformat(),
            "validation_users": sum(v.n_users for v in vals),
            "peers_exclude_seen": exclude,
        },
        "models": rows,
        "card": cards[-1],
        "cards_served": [c["served"] for c in cards],
        "best_peer": best_peer["name"],
        "ratio_to_best_peer": (rows[0]["ndcg"] / best_peer["ndcg"]) if best_peer["ndcg"] else None,
        "vs_best_peer": paired(main, pooled.per_unit(best_peer["name"])),
    }
    if own_rows:
        best_own = max(own_rows, key=lambda r: r["ndcg"] or 0.0)
        doc["own_sources"] = own_rows
        doc["best_own_source"] = best_own["name"]
        mine = pooled.per_unit(best_own["name"])
        if mine.size == main.size:
            doc["vs_best_own_source"] = paired(main, mine)
    if with_sequence:
        by = {r["name"]: r for r in rows}
        units = max(int(main.size), 1)
        doc["sequence"] = {
            "sequence_vs_als": paired(pooled.per_unit("sequence"), pooled.per_unit("implicit-als")),
            "with_vs_without": paired(pooled.per_unit("decayrec+seq"), main),
            "kept_by_search": ["sequence" in c["ranker_settings"]["sources"] and c["served"] == "ranker" for c in seq_cards],
            "networks": [c["sequence_networks"] for c in seq_cards],
            "per_1000_users_seconds": {
                n: round(1000 * by[n]["recommend_seconds"] / units, 3)
                for n in ("sequence", "implicit-als", "decayrec", "decayrec+seq")
            },
        }
    doc["seconds"] = round(time.perf_counter() - started, 1)
    log(
        f"{name}: decayrec {rows[0]['ndcg']:.4f} vs {best_peer['name']} {best_peer['ndcg']:.4f} "
        f"(x{doc['ratio_to_best_peer'] or float('nan'):.3f}); served {doc['cards_served']}; {doc['seconds']:.0f}s"
    )
    return doc


def scale(users: int) -> dict[str, Any]:
    """decayrec's fit at its defaults (search included) and ALS's on a simulated shop of ``users`` users."""
    from decayrec.simulate import SimConfig, simulate

    events = simulate(SimConfig(n_users=users, n_items=5000, n_categories=50, days=60.0, seed=5)).events
    now = events["timestamp"][-1].as_py() + timedelta(seconds=1)
    ids = pc.unique(events["user_id"]).to_pylist()[:10_000]
    out: dict[str, Any] = {"users": users, "events": events.num_rows}
    for name, model in (
        ("decayrec", make_model("decayrec", log=lambda line: log("  " + line))),
        ("implicit-als", make_model("als", factors=128, alpha=4.0, regularization=0.05)),
    ):
        started = time.perf_counter()
        model.fit(events, now)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        model.recommend(ids, K, now)
        out[name] = {"fit_seconds": round(fit, 1), "recommend_10k_seconds": round(time.perf_counter() - started, 1)}
        if name == "decayrec":
            out[name]["served"] = model.served_
        log(f"scale {name}: {out[name]}")
    return out


# -- report -------------------------------------------------------------------------------------
def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def _ci(d: dict[str, float]) -> str:
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def chose(card: dict[str, Any]) -> str:
    s = card["ranker_settings"]
    if card["served"] != "ranker":
        return f"serves {card['served']} (floor; horizon {card['horizon_days']:.3g} d)"
    return (
        f"ranker: horizon {card['horizon_days']:.3g} d, {s['train_windows']} x {s['label_days']:.3g} d windows, "
        f"{'+'.join(x for x in s['sources'] if x != 'popular')}, budget {s['budget']}, {s['num_leaves']} leaves"
        + (", own items left out" if s["exclude_seen"] else "")
    )


def markdown(doc: dict[str, Any]) -> str:
    out = [
        f"# Recommendation benchmark (k = {K})",
        "",
        f"Command: `{doc['command']}`  ",
        f"Total {doc['seconds']:.0f} s on {doc['machine']}.",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
    ]
    out += [
        "## decayrec at its defaults against the best tuned peer",
        "",
        "NDCG@20 on the test window; differences are paired over users with 95% bootstrap intervals.",
        "",
        "| dataset | users | decayrec | best tuned peer | ratio | decayrec - best peer | best own source (test) | decayrec - own source | what decayrec chose | decayrec fit s | ALS fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["datasets"]:
        rows = {m["name"]: m for m in r["models"]}
        main, best = rows["decayrec"], rows[r["best_peer"]]
        own = next((m for m in r.get("own_sources", []) if m["name"] == r.get("best_own_source")), None)
        out.append(
            f"| {r['dataset']} | {r['protocol']['users_evaluated']:,} | {_f(main['ndcg'])} | {r['best_peer']} {_f(best['ndcg'])} "
            f"| {_f(r['ratio_to_best_peer'], 3)} | {_ci(r['vs_best_peer'])} "
            f"| {(own['name'][4:] + ' ' + _f(own['ndcg'])) if own else '-'} | {_ci(r['vs_best_own_source']) if own else '-'} "
            f"| {chose(r['card'])} | {main['fit_seconds']:.0f} | {rows['implicit-als']['fit_seconds']:.1f} |"
        )
    seq = [r for r in doc["datasets"] if "sequence" in r]
    if seq:
        out += [
            "",
            "## The sequence model",
            "",
            (
                "`sequence`: the time-aware SASRec alone at its defaults; `decayrec+seq`: the main model offered the sequence "
                "source (`use_sequence=True`), everything else self-configured as usual; `decayrec`: its defaults, without it. "
                "NDCG@20, paired differences with 95% bootstrap intervals; recommendation seconds per 1,000 users."
            ),
            "",
            (
                "| dataset | sequence | implicit-als | sequence - ALS | repeat / new NDCG: sequence | repeat / new: ALS "
                "| decayrec+seq | decayrec | with - without | search kept it | fit s: sequence / ALS | per 1,000 users s: sequence / ALS |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in seq:
            rows = {m["name"]: m for m in r["models"]}
            q, a_, m_, w = rows["sequence"], rows["implicit-als"], rows["decayrec+seq"], rows["decayrec"]
            sq = r["sequence"]
            half = lambda m: f"{_f((m.get('repeat') or {}).get('ndcg'))} / {_f((m.get('new') or {}).get('ndcg'))}"  # noqa: E731
            kept = sq["kept_by_search"]
            per = sq["per_1000_users_seconds"]
            out.append(
                f"| {r['dataset']} | {_f(q['ndcg'])} | {_f(a_['ndcg'])} | {_ci(sq['sequence_vs_als'])} | {half(q)} | {half(a_)} "
                f"| {_f(m_['ndcg'])} | {_f(w['ndcg'])} | {_ci(sq['with_vs_without'])} | {sum(kept)} of {len(kept)} "
                f"| {q['fit_seconds']:.0f} / {a_['fit_seconds']:.1f} | {per['sequence']:.2f} / {per['implicit-als']:.3f} |"
            )
    for r in doc["datasets"]:
        p = r["protocol"]
        where = (
            f"Cutoff {p['cutoff'][:19]}, test window {p['horizon_days']:g} days"
            if p["kind"] == "global"
            else f"A session log: {len(p['cutoffs'])} cutoffs at the event-time quantiles 90%, 91%, ... ({p['cutoffs'][0][:16]} .. "
            f"{p['cutoffs'][-1][:16]}), every model refitted at each and scored on the next day; units are (cutoff, session) pairs"
        )
        out += [
            "",
            f"## {r['dataset']}",
            "",
            (
                f"{where}, {p['users_evaluated']:,} units evaluated "
                f"({p['users_repeat']:,} with repeat items, {p['users_new']:,} with new ones; repeat share of truth "
                f"{p['repeat_share']:.1%}); validation cutoff {p['validation_cutoff'][:19]} ({p['validation_users']:,} users); "
                f"peers leave out seen items: {p['peers_exclude_seen']}."
            ),
            "",
            f"| model | NDCG@{K} [95% CI] | Recall@{K} | HitRate@{K} | MRR@{K} | coverage | repeat NDCG (users) | new NDCG (users) | fit s | rec s | tuned |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in sorted(r["models"] + r.get("own_sources", []), key=lambda m: -(m["ndcg"] or 0)):
            lo, hi = m["ci"].get("ndcg", [None, None])
            halves = [f"{_f(m[v]['ndcg'])} ({m[v]['users']:,})" if m.get(v) and m[v]["users"] else "-" for v in ("repeat", "new")]
            tuned = m.get("tuned", {}).get("params")
            params = (
                "defaults (self-configured)"
                if m["name"] in OURS
                else (", ".join(f"{a}={b}" for a, b in tuned.items()) if tuned else "decayrec's settings")
            )
            out.append(
                f"| {m['name']} | {_f(m['ndcg'])} [{_f(lo)}, {_f(hi)}] | {_f(m['recall'])} | {_f(m['hit_rate'])} "
                f"| {_f(m['mrr'])} | {_f(m['coverage'], 3)} | {halves[0]} | {halves[1]} | {m['fit_seconds']:.1f} "
                f"| {m['recommend_seconds']:.1f} | {params} |"
            )
        card = r["card"]
        floor = card.get("floor") or {}
        out += [
            "",
            (
                f"decayrec's card: use horizon {card['horizon_days']:.4g} days ({card['horizon_note']}); "
                f"validation on {card['validation'].get('users', 0):,} users after {len(card['validation'].get('cutoffs', []))} "
                f"cutoff(s); {len(card['tried'])} settings tried in {card['search_seconds']:.0f}s; ranker "
                f"{floor.get('ranker_score')} vs best single source {floor.get('best_single')} {floor.get('single_score')} "
                f"on validation; {chose(card)}."
            ),
        ]
    if "scale" in doc:
        s = doc["scale"]
        out += [
            "",
            f"## Scale: a simulated shop of {s['users']:,} users and {s['events']:,} events",
            "",
            "| model | fit s (decayrec: search included) | recommend s for 10,000 users |",
            "|---|---|---|",
        ]
        for name in ("decayrec", "implicit-als"):
            out.append(f"| {name} | {s[name]['fit_seconds']:.0f} | {s[name]['recommend_10k_seconds']:.1f} |")
    return "\n".join(out) + "\n"


def merge(paths: list[Path], out: Path) -> None:
    """One report from the datasets of several runs (each keeps the command and machine it ran with)."""
    docs = [json.loads(p.read_text()) for p in paths]
    doc: dict[str, Any] = {
        "k": K,
        "command": " ; ".join(d["command"] for d in docs),
        "datasets": [r for d in docs for r in d["datasets"]],
        "seconds": sum(d.get("seconds") or sum(r["seconds"] for r in d["datasets"]) for d in docs),
        "machine": " / ".join(sorted({d.get("machine", f"{os.cpu_count()} cores") for d in docs})),
        "merged_from": [str(p) for p in paths],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(REAL + SIMULATED), help="comma-separated: real logs and sim:PRESET")
    parser.add_argument("--out", default="bench/results/recommend.json")
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--scale-users", type=int, default=100_000)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--merge", default="", help="comma-separated result JSONs of earlier runs: write them as one report")
    args = parser.parse_args()
    if args.merge:
        merge([Path(p) for p in args.merge.split(",") if p], Path(args.out))
        return
    names = [d for d in args.datasets.split(",") if d]
    unknown = [d for d in names if d not in REAL + SIMULATED]
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose among {', '.join(REAL + SIMULATED)}")
    started = time.perf_counter()
    doc: dict[str, Any] = {"k": K, "command": "python " + " ".join(sys.argv), "datasets": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        doc["datasets"].append(run_dataset(name, args.bootstrap))
        out.write_text(json.dumps(json_safe(doc), indent=1, default=str) + "\n")  # partial results survive a crash
    if not args.skip_scale:
        doc["scale"] = scale(args.scale_users)
    doc["seconds"] = time.perf_counter() - started
    doc["machine"] = f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    doc = json_safe(doc)
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    text = markdown(doc)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
