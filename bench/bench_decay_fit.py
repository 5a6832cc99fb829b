"""Learned half-lives against fixed ones, on real logs: next-window held-out log-likelihood.

For each canonical dataset under ``../shared/data`` (see its README and SOURCE.md files):

1. load ``events.csv.gz`` with :func:`decayrec.events.open_events` and ``store.scan()``;
2. split by time only: ``cutoff = last event - window`` (the window is per dataset, about the
   last 10-25% of the events, see ``WINDOWS``);
3. fit :func:`decayrec.decay.fit.fit_decay` on the events up to the cutoff (timed);
4. score the engagement points in ``(cutoff, cutoff + window]`` with
   :func:`decayrec.decay.heldout.heldout_loglik` for: learned per-category half-lives, the learned
   global half-life, fixed 7 and 30 days (all four with the same learned event weights), and
   fixed 7 days with unit weights;
5. a bootstrap over users of the per-point differences learned - 7d and learned - 30d.

The bootstrap uses :func:`decayrec.decay.heldout.heldout_terms` (the held-out log-likelihood per
(user, category) sequence, whose sum is ``heldout_loglik``) summed per user. Users are resampled
with replacement (B times) with the fitted baselines and excitations held fixed, so the
interval is the test-sample uncertainty of the comparison, not the refitting noise.

    python bench/bench_decay_fit.py                     # all four datasets (~30 min on 2 cores)
    python bench/bench_decay_fit.py --quick             # a small smoke run (~1 min)
    python bench/bench_decay_fit.py --datasets taobao-fav --window-days taobao-fav=1

Writes ``--out`` (JSON) and the same path with ``.md`` (the markdown tables, also printed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.decay import heldout as F
from decayrec.decay.config import FitConfig
from decayrec.decay.fit import fit_decay
from decayrec.events import open_events

DATASETS = ("amazon-beauty", "amazon-grocery", "taobao-fav", "yoochoose-clicks-100k")

# Test window per dataset (days) and why: about the last 10-25% of the events go to the test
# window, the rest (and all earlier time) to training.
WINDOWS: dict[str, tuple[float, str]] = {
    "amazon-beauty": (180.0, "12 years, day resolution; last 180 days hold ~20% of the events"),
    "amazon-grocery": (180.0, "14 years, day resolution; last 180 days hold ~10% of the events"),
    "taobao-fav": (2.0, "9 days, seconds; last 2 days hold ~23% of the events"),
    "yoochoose-clicks-100k": (1.0, "7 days, ms; last day holds ~16% of the events"),
}

# Half-life grid per dataset: FitConfig's default (1 hour .. 365 days) widened to the data's
# time scale. Taobao favourites come in bursts of minutes and YOOCHOOSE sessions last minutes,
# so their grids start at 1 minute; Amazon spans 12-14 years, so its grid ends at 10 years.
# The grid keeps FitConfig's default log step (so more points on a wider range). With the plain
# default grid the fit crashes on taobao-fav and amazon-grocery (see --default-grid).
GRIDS: dict[str, tuple[float, float]] = {
    "amazon-beauty": (1.0 / 24.0, 3650.0),
    "amazon-grocery": (1.0 / 24.0, 3650.0),
    "taobao-fav": (1.0 / 1440.0, 365.0),
    "yoochoose-clicks-100k": (1.0 / 1440.0, 365.0),
}

# the fitting modules as imported (they may be edited while the bench runs)
FIT_PY_SHA256 = hashlib.sha256(
    b"".join((Path(F.__file__).parent / f).read_bytes() for f in ("fit.py", "likelihood.py", "heldout.py"))
).hexdigest()

FIXED = (7.0, 30.0)  # the usual defaults of well-known libraries


# -- helpers ---------------------------------------------------------------------------
def parse_windows(text: str | None, names: list[str]) -> dict[str, float]:
    """``None`` -> the defaults; ``"3"`` -> 3 days for all; ``"taobao-fav=1,amazon-beauty=90"`` -> those."""
    out = {n: WINDOWS[n][0] if n in WINDOWS else 7.0 for n in names}
    if not text:
        return out
    if "=" not in text:
        return {n: float(text) for n in names}
    for part in text.split(","):
        name, _, days = part.partition("=")
        out[name.strip()] = float(days)
    return out


def grid_config(name: str, default_grid: bool, grid_points: int | None, quick: bool, options: dict | None = None) -> FitConfig:
    base = FitConfig()
    lo, hi = (
        (base.grid_min_days, base.grid_max_days) if default_grid else GRIDS.get(name, (base.grid_min_days, base.grid_max_days))
    )
    if grid_points is None:
        step = math.log(base.grid_max_days / base.grid_min_days) / (base.grid_points - 1)
        grid_points = max(round(math.log(hi / lo) / step) + 1, 5)
    kw: dict = {"grid_min_days": lo, "grid_max_days": hi, "grid_points": grid_points, "fit_by_event": True, "per_user": True}
    if quick:
        kw.update(grid_points=min(grid_points, 9), em_iterations=20)
    kw.update(options or {})
    return FitConfig(**kw)


def parse_options(items: list[str]) -> dict:
    """``["objective=next_window", "validation_days=60"]`` -> FitConfig fields (values read as JSON when they parse)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def subsample_users(events: pa.Table, n_users: int, seed: int) -> pa.Table:
    users = pc.unique(events[schema.USER])
    if len(users) <= n_users:
        return events
    rng = np.random.default_rng(seed)
    keep = users.take(pa.array(np.sort(rng.choice(len(users), n_users, replace=False))))
    return events.filter(pc.is_in(events[schema.USER], value_set=keep))


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def half_life_dict(hl) -> dict:
    return {"days": hl.days, "low": hl.low, "high": hl.high, "mle": hl.mle, "events": hl.events, "points": hl.points}


# -- held-out scoring, per user -------------------------------------------------------
def heldout_by_user(
    events: pa.Table,
    cutoff: datetime,
    window_days: float,
    half_lives,
    weights: dict[str, float],
    config: FitConfig,
    user_scale: dict[str, float] | None = None,
) -> dict:
    """:func:`decayrec.decay.heldout.heldout_terms` summed per user (users with a sequence seen before the cutoff)."""
    t = F.heldout_terms(events, cutoff, window_days, half_lives, weights, config, user_scale)
    n_users = int(t.seq_user.max()) + 1
    users = t.seq_user[t.seen]
    user_ll = np.bincount(users, t.loglik[t.seen], minlength=n_users)
    user_pts = np.bincount(users, t.points[t.seen], minlength=n_users)
    user_seen = np.bincount(users, minlength=n_users) > 0
    ids = t.users.take(pa.array(np.flatnonzero(user_seen))).to_numpy(zero_copy_only=False).astype(str)
    return {
        "user_ids": ids,
        "user_ll": user_ll[user_seen],
        "user_pts": user_pts[user_seen],
        "total": float(t.loglik.sum()),
        "points": int(t.points.sum()),
        "expected_points": float(t.expected.sum()),
        "sequences": int(t.seen.sum()),
        "users": int(user_seen.sum()),
    }


def bootstrap_diff(a: dict, b: dict, n_boot: int, seed: int) -> dict:
    """Per-point difference a - b with a percentile 95% interval over users resampled with replacement."""
    if not np.array_equal(a["user_pts"], b["user_pts"]):
        raise RuntimeError("the two variants scored different points")
    d = a["user_ll"] - b["user_ll"]
    pts = a["user_pts"].astype(float)
    n = d.size
    est = float(d.sum() / max(pts.sum(), 1.0))
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_boot, 50):
        k = min(50, n_boot - start)
        counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(k)]).astype(float)
        num, den = counts @ d, counts @ pts
        stats.append(np.where(den > 0, num / np.maximum(den, 1.0), np.nan))
    stats = np.concatenate(stats)
    stats = stats[np.isfinite(stats)]
    lo, hi = np.percentile(stats, [2.5, 97.5]) if stats.size else (np.nan, np.nan)
    return {"per_point": est, "ci95": [float(lo), float(hi)], "total": float(d.sum()), "users": int(n), "boot": int(stats.size)}


def pool_by_user(parts: list[dict]) -> dict:
    """Per-user held-out terms of several cutoffs summed per user id (the bootstrap's unit stays the user)."""
    ids = np.concatenate([p["user_ids"] for p in parts])
    uniq, inv = np.unique(ids, return_inverse=True)
    return {
        "user_ids": uniq,
        "user_ll": np.bincount(inv, np.concatenate([p["user_ll"] for p in parts]), minlength=uniq.size),
        "user_pts": np.bincount(inv, np.concatenate([p["user_pts"] for p in parts]), minlength=uniq.size),
    }


def score_variants(events, cutoff, window_days, variants, config: FitConfig, args) -> dict:
    """Held-out terms for every variant (heldout_loglik's own, summed per user) and the bootstrap differences."""
    scores, parts = {}, {}
    for vname, hl, w, *scale in variants:
        t0 = time.perf_counter()
        mine = heldout_by_user(events, cutoff, window_days, hl, w, config, scale[0] if scale else None)
        scores[vname] = {
            "loglik": mine["total"],
            "points": mine["points"],
            "per_point": mine["total"] / max(mine["points"], 1),
            "sequences": mine["sequences"],
            "users": mine["users"],
            "expected_points": mine["expected_points"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        parts[vname] = mine
    out = {
        "window_end": config.window_end,
        "heldout": scores,
        "test_points": scores["7d"]["points"],
        "scored_sequences": scores["7d"]["sequences"],
        "scored_users": scores["7d"]["users"],
        "parts": parts,
    }
    if "learned" in scores:
        cmp = {
            f"{a}-{b}": bootstrap_diff(parts[a], parts[b], args.boot, args.seed)
            for a in ("learned", "learned-user", "global", "learned-nw", "global-nw")
            if a in parts
            for b in ("7d", "30d")
        }
        best = max(("7d", "30d"), key=lambda k: scores[k]["per_point"])
        out["best_fixed"] = best
        out["comparisons"] = cmp
        out["learned_minus_best_fixed"] = cmp[f"learned-{best}"]
        out["learned_beats_both_fixed"] = bool(
            all(scores["learned"]["per_point"] > scores[k]["per_point"] for k in ("7d", "30d"))
        )
        out["learned_beats_both_fixed_ci"] = bool(all(cmp[f"learned-{k}"]["ci95"][0] > 0 for k in ("7d", "30d")))
        if "learned-user" in scores:
            out["learned_user_minus_best_fixed"] = cmp[f"learned-user-{best}"]
            out["learned_user_beats_both_fixed"] = bool(
                all(scores["learned-user"]["per_point"] > scores[k]["per_point"] for k in ("7d", "30d"))
            )
            out["learned_user_beats_both_fixed_ci"] = bool(all(cmp[f"learned-user-{k}"]["ci95"][0] > 0 for k in ("7d", "30d")))
        if "learned-nw" in scores:
            out["learned_nw_minus_best_fixed"] = cmp[f"learned-nw-{best}"]
            out["learned_nw_beats_both_fixed"] = bool(
                all(scores["learned-nw"]["per_point"] > scores[k]["per_point"] for k in ("7d", "30d"))
            )
    return out


# -- one dataset -----------------------------------------------------------------------
def run_dataset(name: str, path: Path, window_days: float, config: FitConfig, args) -> dict:
    out: dict = {
        "dataset": name,
        "path": str(path),
        "window_days": window_days,
        "window_reason": WINDOWS.get(name, (None, "given on the command line"))[1],
    }
    t0 = time.perf_counter()
    store, report = open_events(path)
    last = store.last_time()
    events = store.scan()
    out["load_seconds"] = round(time.perf_counter() - t0, 2)
    if report is not None:
        out["ingest"] = {k: getattr(report, k) for k in ("rows_read", "kept", "quarantined", "duplicates") if hasattr(report, k)}
    if args.quick:
        events = subsample_users(events, args.quick_users, args.seed)
        out["quick_users"] = args.quick_users
    last = last.replace(tzinfo=UTC) if last.tzinfo is None else last.astimezone(UTC)
    cutoff = last - timedelta(days=window_days)
    ts = events[schema.TIMESTAMP].cast(pa.timestamp("us"))
    cut_naive = pa.scalar(cutoff.replace(tzinfo=None), pa.timestamp("us"))
    n_train = int(pc.sum(pc.less_equal(ts, cut_naive)).as_py())
    types = pc.value_counts(events[schema.EVENT]).to_pylist()
    cats = events[schema.CATEGORY]
    out.update(
        {
            "events": events.num_rows,
            "users": len(pc.unique(events[schema.USER])),
            "items": len(pc.unique(events[schema.ITEM])),
            "categories": len(pc.unique(pc.drop_null(cats))),
            "event_types": {t["values"]: t["counts"] for t in types},
            "first_event": pc.min(ts).as_py().isoformat() + "Z",
            "last_event": last.isoformat(),
            "cutoff": cutoff.isoformat(),
            "train_events": n_train,
            "test_events": events.num_rows - n_train,
            "fit_config": config.model_dump(),
        }
    )

    # -- fit
    t0 = time.perf_counter()
    try:
        model = fit_decay(events, cutoff, config)
    except Exception as exc:  # noqa: BLE001 - report and go on: the fixed baselines are still scored
        model = None
        out["fit_error"] = f"{type(exc).__name__}: {exc}"
        out["fit_traceback"] = traceback.format_exc(limit=-4)
    out["fit_seconds"] = round(time.perf_counter() - t0, 2)
    if model is not None:
        cat_days = [v.days for v in model.by_category.values()]
        dense = [v.days for v in model.by_category.values() if v.points >= config.min_points]
        bounded = [
            v
            for v in model.by_category.values()
            if v.low > config.grid_min_days * 1.0001 and v.high < config.grid_max_days * 0.9999
        ]
        g = model.global_half_life
        out.update(
            {
                "train_points": model.diagnostics.get("points"),
                "train_sequences": model.diagnostics.get("sequences"),
                "global_half_life": half_life_dict(g),
                "global_outside_interval": not (g.low <= g.days <= g.high),
                "global_outside_grid": not (config.grid_min_days <= g.days <= config.grid_max_days),
                "by_event": {k: half_life_dict(v) for k, v in model.by_event.items()},
                "weights": model.weights,
                "prior_log_sd": model.prior_log_sd,
                "per_category_half_life": {
                    "n": len(cat_days),
                    "p10": pct(cat_days, 10),
                    "median": pct(cat_days, 50),
                    "p90": pct(cat_days, 90),
                    "with_min_points": {"n": len(dense), "p10": pct(dense, 10), "median": pct(dense, 50), "p90": pct(dense, 90)},
                    "bounded_intervals": len(bounded),
                },
            }
        )
        weights = model.weights
        learned = {k: v.days for k, v in model.by_category.items()}
        learned["__global__"] = g.days
        variants = [
            ("learned", learned, weights),
            ("learned-user", learned, weights, model.user_scale),
            ("global", g.days, weights),
        ]
        out["user_scale"] = {
            "users": len(model.user_scale),
            "log_sd": model.user_scale_log_sd,
            "quantiles": dict(
                zip(
                    ("p05", "p25", "p50", "p75", "p95"),
                    np.quantile(list(model.user_scale.values()) or [1.0], [0.05, 0.25, 0.5, 0.75, 0.95]).tolist(),
                )
            ),
        }
        # The same model with half-lives chosen for forecasting: the last window-long stretch of
        # the training period is predicted from what came before it (objective="next_window").
        t1 = time.perf_counter()
        nw = fit_decay(
            events,
            cutoff,
            config.model_copy(update={"objective": "next_window", "validation_days": window_days, "per_user": False}),
        )
        out["fit_seconds_next_window"] = round(time.perf_counter() - t1, 2)
        out["global_half_life_next_window"] = half_life_dict(nw.global_half_life)
        learned_nw = {k: v.days for k, v in nw.by_category.items()} | {"__global__": nw.global_half_life.days}
        variants += [("learned-nw", learned_nw, weights), ("global-nw", nw.global_half_life.days, weights)]
    else:
        weights = {}
        variants = []
    unit = dict.fromkeys(out["event_types"], 1.0)
    if not weights:
        weights = unit
    variants += [("7d", FIXED[0], weights), ("30d", FIXED[1], weights), ("7d-unit", FIXED[0], unit)]
    out["weights_for_fixed"] = "learned" if model is not None else "unit (fit failed)"
    out["unit_weights_equal_learned"] = bool(model is not None and {k: round(v, 12) for k, v in weights.items()} == unit)

    # -- held-out: scored twice, with the baselines fitted on windows that close at each user's
    # last event (heldout_loglik's default, as fit_decay) and on windows open until the cutoff
    # (the same exposure as the test window, where every seen sequence is at risk throughout).
    out["scoring"] = {}
    for mode in args.score_modes:
        score_config = config.model_copy(update={"window_end": mode})
        out["scoring"][mode] = score_variants(events, cutoff, window_days, variants, score_config, args)
    main_mode = args.score_modes[0]
    out.update({k: v for k, v in out["scoring"][main_mode].items() if k != "parts"})
    out["main_scoring"] = main_mode
    if model is not None and args.origins > 1:
        out["rolling"] = rolling_origins(events, last, window_days, config, args, out, out["scoring"][main_mode]["parts"])
    for mode in args.score_modes:
        out["scoring"][mode].pop("parts", None)
    return out


ROLLING_VARIANTS = ("learned", "learned-user", "global", "7d", "30d")


def rolling_origins(
    events: pa.Table, last: datetime, window_days: float, config: FitConfig, args, first: dict, first_parts: dict
) -> dict:
    """The same comparison at ``args.origins`` back-to-back test windows ending at the last event.

    Origin j (1 = the main table's) has its cutoff at ``last - j * window``: it is fitted on the
    events up to that cutoff and scored on the window after it, so every test window is unseen
    by its own fit. Per-user terms are summed over origins and bootstrapped over users.
    """
    score_config = config.model_copy(update={"window_end": args.score_modes[0]})
    fit_config = config.model_copy(update={"fit_by_event": False})  # per-type half-lives are not scored here
    origins = [
        {
            "origin": 1,
            "cutoff": first["cutoff"],
            "global_half_life_days": first["global_half_life"]["days"],
            "fit_seconds": first["fit_seconds"],
            "points": first["test_points"],
            "per_point": {v: first["heldout"][v]["per_point"] for v in ROLLING_VARIANTS},
        }
    ]
    parts = {v: [first_parts[v]] for v in ROLLING_VARIANTS}
    for j in range(2, args.origins + 1):
        cutoff = last - timedelta(days=window_days * j)
        row: dict = {"origin": j, "cutoff": cutoff.isoformat()}
        t0 = time.perf_counter()
        try:
            model = fit_decay(events, cutoff, fit_config)
        except Exception as exc:  # noqa: BLE001 - a bench reports a failure and goes on
            row["error"] = f"{type(exc).__name__}: {exc}"
            origins.append(row)
            break
        row["fit_seconds"] = round(time.perf_counter() - t0, 2)
        row["global_half_life_days"] = model.global_half_life.days
        learned = {k: v.days for k, v in model.by_category.items()} | {"__global__": model.global_half_life.days}
        hls = {
            "learned": learned,
            "learned-user": learned,
            "global": model.global_half_life.days,
            "7d": FIXED[0],
            "30d": FIXED[1],
        }
        row["per_point"] = {}
        for v in ROLLING_VARIANTS:
            p = heldout_by_user(
                events,
                cutoff,
                window_days,
                hls[v],
                model.weights,
                score_config,
                model.user_scale if v == "learned-user" else None,
            )
            parts[v].append(p)
            row["per_point"][v] = p["total"] / max(p["points"], 1)
            row["points"] = p["points"]
        origins.append(row)
        print(
            f"    origin {j} ({cutoff:%Y-%m-%d %H:%M}): h {model.global_half_life.days:.3g} d, "
            f"{row['points']} test points, learned {row['per_point']['learned']:.4f} 7d {row['per_point']['7d']:.4f} "
            f"30d {row['per_point']['30d']:.4f}",
            file=sys.stderr,
            flush=True,
        )
    pooled = {v: pool_by_user(parts[v]) for v in ROLLING_VARIANTS}
    points = int(pooled["7d"]["user_pts"].sum())
    out = {
        "origins": origins,
        "points": points,
        "users": int(pooled["7d"]["user_ids"].size),
        "per_point": {v: float(pooled[v]["user_ll"].sum()) / max(points, 1) for v in ROLLING_VARIANTS},
    }
    if points >= MIN_TEST_POINTS:
        cmp = {
            f"{a}-{b}": bootstrap_diff(pooled[a], pooled[b], args.boot, args.seed)
            for a in ("learned", "learned-user", "global")
            for b in ("7d", "30d")
        }
        best = max(("7d", "30d"), key=lambda k: out["per_point"][k])
        out.update(
            {
                "comparisons": cmp,
                "best_fixed": best,
                "learned_minus_best_fixed": cmp[f"learned-{best}"],
                "learned_beats_both_fixed": all(out["per_point"]["learned"] > out["per_point"][k] for k in ("7d", "30d")),
                "learned_beats_both_fixed_ci": all(cmp[f"learned-{k}"]["ci95"][0] > 0 for k in ("7d", "30d")),
                "learned_user_minus_best_fixed": cmp[f"learned-user-{best}"],
                "learned_user_beats_both_fixed": all(
                    out["per_point"]["learned-user"] > out["per_point"][k] for k in ("7d", "30d")
                ),
                "learned_user_beats_both_fixed_ci": all(cmp[f"learned-user-{k}"]["ci95"][0] > 0 for k in ("7d", "30d")),
            }
        )
    return out


# -- output ----------------------------------------------------------------------------
def fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if abs(x) >= 1e4:
        return f"{x:.3g}"
    return f"{x:.{digits}f}"


def fmt_days(d: float | None) -> str:
    if d is None:
        return "n/a"
    if d < 1 / 24:
        return f"{d * 1440:.1f} min"
    if d < 1:
        return f"{d * 24:.1f} h"
    return f"{d:.1f} d"


MIN_TEST_POINTS = 30  # below this, per-point held-out numbers are not shown in the table


def heldout_table(results: list[dict], mode: str, meta: dict) -> list[str]:
    lines = [
        "| dataset | window | test points (expected, 7d) | learned | learned, per user | global | learned, next-window | global, next-window | 7d | 30d | 7d-unit | learned - best fixed [95% CI] | learned per user - best fixed [95% CI] | learned beats both (per category / per user) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['dataset']} | | | error: {r['error'][:80]} | | | | | | | | | | |")
            continue
        sc = r["scoring"][mode]
        s = sc["heldout"]
        n = sc["test_points"]
        expected = f"{n:,} ({s['7d']['expected_points']:,.0f})"
        if n < MIN_TEST_POINTS:
            lines.append(
                f"| {r['dataset']} | {r['window_days']:g} d | {expected} | too few test points: "
                f"sequences do not recur after the cutoff | | | | | | | | | | n/a |"
            )
            continue
        pp = {
            k: fmt(s[k]["per_point"]) if k in s else "fit failed"
            for k in ("learned", "learned-user", "global", "learned-nw", "global-nw", "7d", "30d", "7d-unit")
        }
        d1, v1 = diff_and_verdict(sc, "learned")
        d2, v2 = diff_and_verdict(sc, "learned_user")
        lines.append(
            f"| {r['dataset']} | {r['window_days']:g} d | {expected} | {pp['learned']} | {pp['learned-user']} | {pp['global']} | "
            f"{pp['learned-nw']} | {pp['global-nw']} | {pp['7d']} | {pp['30d']} | {pp['7d-unit']} | {d1} | {d2} | {v1} / {v2} |"
        )
    return lines


def diff_and_verdict(sc: dict, key: str) -> tuple[str, str]:
    """'difference vs best fixed [CI]' and 'yes / yes (CI overlaps 0) / no' for key 'learned' or 'learned_user'."""
    if f"{key}_minus_best_fixed" not in sc:
        return "n/a", "n/a"
    d = sc[f"{key}_minus_best_fixed"]
    diff = f"{fmt(d['per_point'])} vs {sc['best_fixed']} [{fmt(d['ci95'][0])}, {fmt(d['ci95'][1])}]"
    verdict = ("yes" if sc[f"{key}_beats_both_fixed_ci"] else "yes (CI overlaps 0)") if sc[f"{key}_beats_both_fixed"] else "no"
    return diff, verdict


def rolling_table(results: list[dict], meta: dict) -> list[str]:
    lines = [
        (
            f"**Rolling origins, scored as the first table**: {meta['origins']} back-to-back test windows ending at the "
            "last event, each fitted only on the events before its own cutoff (origin 1 is the table above). Per-point "
            "log-likelihood pooled over the windows; the interval resamples users (each user's terms summed over the windows)."
        ),
        "",
        (
            "| dataset | windows | test points | learned | learned, per user | global | 7d | 30d | learned - best fixed, pooled [95% CI] | "
            "learned per user - best fixed, pooled [95% CI] | learned - best fixed, per window (oldest first) | "
            "learned per user - best fixed, per window | learned half-life per window | learned beats both (per category / per user) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ro = r.get("rolling")
        if not ro:
            continue
        done = [o for o in ro["origins"] if "per_point" in o]
        if "comparisons" not in ro:
            lines.append(
                f"| {r['dataset']} | {len(done)} x {r['window_days']:g} d | {ro['points']:,} | too few test points "
                "| | | | | | | | | | n/a |"
            )
            continue
        pp = ro["per_point"]
        best = ro["best_fixed"]
        d1, v1 = diff_and_verdict(ro, "learned")
        d2, v2 = diff_and_verdict(ro, "learned_user")
        per = ", ".join(fmt(o["per_point"]["learned"] - o["per_point"][best]) for o in reversed(done))
        per_user = ", ".join(fmt(o["per_point"]["learned-user"] - o["per_point"][best]) for o in reversed(done))
        hl = ", ".join(fmt_days(o["global_half_life_days"]) for o in reversed(done))
        lines.append(
            f"| {r['dataset']} | {len(done)} x {r['window_days']:g} d | {ro['points']:,} | {fmt(pp['learned'])} | "
            f"{fmt(pp['learned-user'])} | {fmt(pp['global'])} | {fmt(pp['7d'])} | {fmt(pp['30d'])} | {d1} | {d2} | "
            f"{per} | {per_user} | {hl} | {v1} / {v2} |"
        )
    return lines


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        (
            "Held-out log-likelihood per scored point (nats, higher is better) of the engagement points in the "
            "last window, for sequences (user x category) seen before the cutoff. learned: per-category half-lives; "
            "learned, per user: the same times each user's learned multiplier (FitConfig(per_user=True)); "
            "global: the learned pooled half-life; 7d / 30d: fixed half-lives, all four with the same learned "
            "event weights; 7d-unit: 7 days with unit weights (identical to 7d when the log has one event type). "
            f"Difference: learned - best of 7d/30d, 95% bootstrap interval over users (B={meta['boot']}, fitted "
            "parameters held fixed). Expected: the model's predicted number of test points (7d variant)."
        ),
        "",
    ]
    titles = {
        "user_last_event": "Scored as heldout_loglik's default: baselines fitted on windows that close at each user's last event "
        "(fit_decay's default), then run over the whole test window for every seen sequence.",
        "now": "Scored with window_end='now': baselines fitted on windows open until the cutoff, the same exposure "
        "as the test window.",
    }
    for mode in meta["score_modes"]:
        lines += [f"**{titles.get(mode, mode)}**", ""] + heldout_table(results, mode, meta) + [""]
    if any("rolling" in r for r in results):
        lines += rolling_table(results, meta) + [""]
    lines += [
        "",
        "| dataset | events | users | categories | train / test events | train points | fit s | global half-life [95%] | per-category half-life p10 / median / p90 | weights |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            continue
        if "global_half_life" in r:
            g = r["global_half_life"]
            ghl = f"{fmt_days(g['days'])} [{fmt_days(g['low'])}, {fmt_days(g['high'])}]"
            if r["global_outside_interval"] or r["global_outside_grid"]:
                ghl += " (estimate outside its interval / the grid)"
            c = r["per_category_half_life"]
            spread = (
                f"{fmt_days(c['p10'])} / {fmt_days(c['median'])} / {fmt_days(c['p90'])} ({c['n']} cat.)"
                if c["n"]
                else "no categories"
            )
            wts = ", ".join(f"{k} {v:.2f}" for k, v in r["weights"].items())
        else:
            ghl, spread, wts = f"fit failed: {r.get('fit_error', '')[:80]}", "", ""
        lines.append(
            f"| {r['dataset']} | {r['events']:,} | {r['users']:,} | {r['categories']:,} | "
            f"{r['train_events']:,} / {r['test_events']:,} | {r.get('train_points') or 0:,} | {r['fit_seconds']:.0f} | "
            f"{ghl} | {spread} | {wts} |"
        )
    lines += ["", "Windows and grids:", ""]
    for r in results:
        if "error" in r:
            continue
        fc = r["fit_config"]
        lines.append(
            f"- {r['dataset']}: cutoff {r['cutoff']} (window {r['window_days']:g} d: {r['window_reason']}); "
            f"half-life grid {fmt_days(fc['grid_min_days'])} .. {fmt_days(fc['grid_max_days'])}, {fc['grid_points']} points."
        )
        if r.get("user_scale", {}).get("users"):
            us = r["user_scale"]
            q = us["quantiles"]
            lines.append(
                f"  Per-user multipliers: {us['users']:,} users, prior sd of the log {us['log_sd']:.2f}, "
                f"p05 / p25 / p50 / p75 / p95 = {q['p05']:.2f} / {q['p25']:.2f} / {q['p50']:.2f} / {q['p75']:.2f} / {q['p95']:.2f}."
            )
    lines.append("")
    lines.append(
        f"Run: {meta['total_seconds']:.0f} s total on {meta['machine']}{' (--quick)' if meta['quick'] else ''}; "
        f"fit.py sha256 {meta['fit_py_sha256'][:12]}."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument(
        "--window-days",
        default=None,
        help="days for all datasets, or name=days,...; default per dataset: "
        + ", ".join(f"{k}={v[0]:g}" for k, v in WINDOWS.items()),
    )
    parser.add_argument("--out", type=Path, default=root / "bench" / "results" / "decay_fit.json")
    parser.add_argument(
        "--quick", action="store_true", help="a small smoke run: a user sample, a coarse grid, fewer EM iterations"
    )
    parser.add_argument("--quick-users", type=int, default=3000)
    parser.add_argument("--default-grid", action="store_true", help="FitConfig's default half-life grid for every dataset")
    parser.add_argument("--grid-points", type=int, default=None, help="override the grid's point count")
    parser.add_argument(
        "--fit-option",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any other FitConfig field, e.g. --fit-option em_iterations=120 (repeatable)",
    )
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples of users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--origins", type=int, default=4, help="back-to-back test windows for the rolling-origin table (1: the last window only)"
    )
    parser.add_argument(
        "--score-window-end",
        default="user_last_event,now",
        help="window_end settings to score with (comma list; the first is the main one)",
    )
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    args.score_modes = [m.strip() for m in args.score_window_end.split(",") if m.strip()]
    windows = parse_windows(args.window_days, names)
    started = time.perf_counter()
    results = []
    for name in names:
        path = args.data / name / "events.csv.gz"
        config = grid_config(name, args.default_grid, args.grid_points, args.quick, parse_options(args.fit_option))
        print(
            f"[{time.perf_counter() - started:6.0f} s] {name}: window {windows[name]:g} d, "
            f"grid {config.grid_min_days:.4g}..{config.grid_max_days:g} d x {config.grid_points}",
            file=sys.stderr,
            flush=True,
        )
        if not path.exists():
            results.append({"dataset": name, "error": f"{path} not found"})
            continue
        try:
            r = run_dataset(name, path, windows[name], config, args)
        except Exception as exc:  # noqa: BLE001 - a bench reports a failure and goes on
            r = {"dataset": name, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        results.append(r)
        msg = r.get("error") or r.get("fit_error") or f"fit {r['fit_seconds']:.0f} s"
        print(f"[{time.perf_counter() - started:6.0f} s] {name}: {msg}", file=sys.stderr, flush=True)

    meta = {
        "what": "learned vs fixed half-lives, next-window held-out log-likelihood (decayrec.decay.heldout.heldout_loglik)",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "boot": args.boot,
        "origins": args.origins,
        "score_modes": args.score_modes,
        "seed": args.seed,
        "default_grid": args.default_grid,
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
        "argv": sys.argv[1:],
        "fit_py_sha256": FIT_PY_SHA256,
        "bootstrap": "users resampled with replacement; per-user held-out terms with fitted baselines and "
        "excitations fixed (test-sample uncertainty of the comparison, not refitting noise)",
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    md = markdown(results, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str) + "\n")
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
