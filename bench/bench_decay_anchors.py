"""Half-lives chosen by multi-anchor forecasting against the default likelihood fit, on real logs.

The held-out protocol of ``bench/bench_decay_fit.py`` (same loading, windows, grids, scoring and
user bootstrap, imported from it): ``cutoff = last event - window``; fit on the events up to the
cutoff with

* ``default``: ``FitConfig``'s default objective (the likelihood of the whole history), and
* ``anchors``: ``objective="anchors"`` (half-lives chosen by the summed likelihood of several
  forecast windows, all before the cutoff; window length and count from ``FitConfig`` unless set),

then score the engagement points in ``(cutoff, cutoff + window]`` with
:func:`decayrec.decay.heldout.heldout_terms` for both learned per-category half-lives, both learned
pooled ones, and fixed 7 and 30 days (all with the default fit's event weights). Differences
come with a 95% bootstrap interval over users (fitted parameters held fixed). Both fits skip the
per-event-type half-lives (``fit_by_event=False``): they are not scored here.

    nice python bench/bench_decay_anchors.py --datasets amazon-grocery,amazon-beauty --out /tmp/anchors.json
    nice python bench/bench_decay_anchors.py --quick --datasets amazon-grocery --out /tmp/anchors-quick.json

Writes ``--out`` (JSON) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_decay_fit as B  # the shared held-out protocol
from decayrec.decay.config import FitConfig
from decayrec.decay.fit import fit_decay
from decayrec.events import open_events

PAIRS = (
    ("default", "7d"),
    ("default", "30d"),
    ("anchors", "7d"),
    ("anchors", "30d"),
    ("anchors", "default"),
    ("anchors-global", "default-global"),
)


def run_dataset(name: str, path: Path, window_days: float, args) -> dict:
    base = B.grid_config(name, False, None, args.quick, {"fit_by_event": False, **B.parse_options(args.fit_option)})
    anchor_opts = {"objective": "anchors", "anchors": args.anchors}
    if args.anchor_window_days is not None:
        anchor_opts["anchor_window_days"] = args.anchor_window_days
    configs = {"default": base, "anchors": FitConfig(**{**base.model_dump(), **anchor_opts})}  # validated

    store, _ = open_events(path)
    last = store.last_time()
    events = store.scan()
    if args.quick:
        events = B.subsample_users(events, args.quick_users, args.seed)
    last = last.replace(tzinfo=UTC) if last.tzinfo is None else last.astimezone(UTC)
    cutoff = last - timedelta(days=window_days)
    out: dict = {
        "dataset": name,
        "window_days": window_days,
        "cutoff": cutoff.isoformat(),
        "events": events.num_rows,
        "configs": {k: v.model_dump() for k, v in configs.items()},
        "fits": {},
    }

    learned = {}
    for key, config in configs.items():
        t0 = time.perf_counter()
        model = fit_decay(events, cutoff, config)
        seconds = time.perf_counter() - t0
        per_cat = {k: v.days for k, v in model.by_category.items()} | {"__global__": model.global_half_life.days}
        learned[key] = (per_cat, model)
        cats = sorted(v.days for v in model.by_category.values())
        out["fits"][key] = {
            "seconds": round(seconds, 1),
            "global_half_life": B.half_life_dict(model.global_half_life),
            "per_category_median": B.pct(cats, 50),
            "per_category_p10": B.pct(cats, 10),
            "per_category_p90": B.pct(cats, 90),
            "weights": model.weights,
        }
        print(f"  {name} {key}: fit {seconds:.0f} s, global {model.global_half_life.days:.2f} d", file=sys.stderr, flush=True)

    weights = learned["default"][1].weights
    variants = [
        ("default", learned["default"][0], weights),
        ("anchors", learned["anchors"][0], weights),
        ("default-global", learned["default"][1].global_half_life.days, weights),
        ("anchors-global", learned["anchors"][1].global_half_life.days, weights),
        ("7d", B.FIXED[0], weights),
        ("30d", B.FIXED[1], weights),
    ]
    out["scoring"] = {}
    for mode in args.score_modes:
        score_config = base.model_copy(update={"window_end": mode})
        parts, scores = {}, {}
        for vname, hl, w in variants:
            parts[vname] = B.heldout_by_user(events, cutoff, window_days, hl, w, score_config)
            scores[vname] = parts[vname]["total"] / max(parts[vname]["points"], 1)
        out["scoring"][mode] = {
            "per_point": scores,
            "test_points": parts["7d"]["points"],
            "users": parts["7d"]["users"],
            "diff": {f"{a}-{b}": B.bootstrap_diff(parts[a], parts[b], args.boot, args.seed) for a, b in PAIRS},
        }
    return out


def markdown(results: list[dict], modes: list[str]) -> str:
    lines = []
    for mode in modes:
        lines += [
            f"**scored with window_end={mode}** (nats per test point; differences with 95% user-bootstrap CI)",
            "",
            "| dataset | test points | default | anchors | 7d | 30d | anchors - default | default - best fixed | anchors - best fixed |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results:
            if "error" in r:
                lines.append(f"| {r['dataset']} | error: {r['error'][:80]} | | | | | | | |")
                continue
            s = r["scoring"][mode]
            pp, d = s["per_point"], s["diff"]
            best = max(("7d", "30d"), key=lambda k: pp[k])

            def ci(key: str, d: dict = d) -> str:
                x = d[key]
                return f"{x['per_point']:+.4f} [{x['ci95'][0]:+.4f}, {x['ci95'][1]:+.4f}]"

            lines.append(
                f"| {r['dataset']} | {s['test_points']:,} | {pp['default']:.4f} | {pp['anchors']:.4f} | {pp['7d']:.4f} | "
                f"{pp['30d']:.4f} | {ci('anchors-default')} | {ci('default-' + best)} vs {best} | {ci('anchors-' + best)} vs {best} |"
            )
        lines.append("")
    lines += ["| dataset | fit | seconds | global half-life [95%] | per-category p10 / median / p90 |", "|---|---|---|---|---|"]
    for r in results:
        for key, f in r.get("fits", {}).items():
            g = f["global_half_life"]
            lines.append(
                f"| {r['dataset']} | {key} | {f['seconds']:.0f} | {B.fmt_days(g['days'])} [{B.fmt_days(g['low'])}, "
                f"{B.fmt_days(g['high'])}] | {B.fmt_days(f['per_category_p10'])} / {B.fmt_days(f['per_category_median'])} / "
                f"{B.fmt_days(f['per_category_p90'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--datasets", default="amazon-grocery,amazon-beauty")
    parser.add_argument("--window-days", default=None, help="as in bench_decay_fit.py (default: its per-dataset windows)")
    parser.add_argument("--anchors", type=int, default=4)
    parser.add_argument("--anchor-window-days", type=float, default=None, help="default: FitConfig's (a tenth of the span)")
    parser.add_argument(
        "--fit-option", action="append", default=[], metavar="FIELD=VALUE", help="other FitConfig fields, both fits"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--quick-users", type=int, default=3000)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-window-end", default="user_last_event,now")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.score_modes = [m.strip() for m in args.score_window_end.split(",") if m.strip()]
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    windows = B.parse_windows(args.window_days, names)
    started = time.perf_counter()
    results = []
    for name in names:
        print(f"[{time.perf_counter() - started:6.0f} s] {name}: window {windows[name]:g} d", file=sys.stderr, flush=True)
        try:
            results.append(run_dataset(name, args.data / name / "events.csv.gz", windows[name], args))
        except Exception as exc:  # noqa: BLE001  (report and go on with the next dataset)
            results.append({"dataset": name, "error": f"{type(exc).__name__}: {exc}"})
    meta = {
        "argv": sys.argv[1:],
        "fit_py_sha256": B.FIT_PY_SHA256,
        "boot": args.boot,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str) + "\n")
    md = markdown(results, args.score_modes)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
