"""Decay core benchmark: batch build, online updates, state size, per-event states.

A synthetic shop (default 5M events, 200k users, 5k items in 500 categories, 5 event
types, 180 days; users favour a few categories, activity and popularity are skewed)
measured on one thread:

(a) the multi-scale (5 half-lives) user x category batch build: ``decayed_sums`` over
    (user, category) pair codes, and the pair encoding that precedes it;
(b) online ``DecayState.update`` latency (median over scalar calls) and
    ``update_many`` throughput;
(c) bytes per (user, key) state;
(d) ``states_before_events`` throughput (the Hawkes-likelihood input).

    python bench/bench_decay.py --out bench/results/decay.json
"""

from __future__ import annotations

import os

# One thread everywhere: the goal is per core. Set before numpy/pyarrow load.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from decayrec.decay import DecayState, decayed_sums, event_weights, pair_codes, states_before_events  # noqa: E402

HALF_LIVES = np.array([1 / 24, 1.0, 7.0, 30.0, 120.0])  # 1 hour .. 120 days
TYPE_P = np.array([0.6, 0.2, 0.1, 0.05, 0.05])  # view, click, cart, fav, purchase
TYPE_W = np.array([1.0, 2.0, 4.0, 3.0, 8.0])


def make_events(n: int, n_users: int, n_items: int, n_cats: int, days: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Time-ordered synthetic events with skewed users and items and per-user favourite categories."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    users = rng.choice(n_users, n, p=activity / activity.sum()).astype(np.int32)
    favourites = rng.integers(0, n_cats, (n_users, 3))
    cat_pop = 1.0 / np.arange(1, n_cats + 1) ** 0.8
    random_cat = rng.choice(n_cats, n, p=cat_pop / cat_pop.sum())
    own = rng.random(n) < 0.8
    cats = np.where(own, favourites[users, rng.integers(0, 3, n)], random_cat).astype(np.int32)
    per_cat = n_items // n_cats
    items = (cats * per_cat + rng.integers(0, per_cat, n)).astype(np.int32)
    types = rng.choice(5, n, p=TYPE_P).astype(np.int8)
    times = np.sort(rng.uniform(0.0, days, n))
    return {"user": users, "item": items, "category": cats, "type": types, "time": times}


def timed(fn, repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs (the least disturbed by other load), and the result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_batch(ev: dict, n_cats: int, repeat: int) -> dict:
    n = ev["time"].size
    weights = event_weights(ev["type"], TYPE_W)
    at = float(ev["time"].max())
    t_pairs, (codes, pairs) = timed(lambda: pair_codes(ev["user"], ev["category"], n_cats), repeat)
    t_sums, _sums = timed(lambda: decayed_sums(codes, ev["time"], weights, HALF_LIVES, at, n_keys=len(pairs)), repeat)
    t_users, _ = timed(lambda: decayed_sums(ev["user"], ev["time"], weights, HALF_LIVES, at), repeat)
    return {
        "events": n,
        "pairs": len(pairs),
        "scales": HALF_LIVES.size,
        "pair_encoding_s": t_pairs,
        "decayed_sums_s": t_sums,
        "decayed_sums_events_per_s": n / t_sums,
        "end_to_end_s": t_pairs + t_sums,
        "end_to_end_events_per_s": n / (t_pairs + t_sums),
        "per_user_decayed_sums_events_per_s": n / t_users,
        "_codes": codes,
        "_pairs": pairs,
        "_weights": weights,
    }


def bench_online(ev: dict, codes: np.ndarray, n_pairs: int, weights: np.ndarray, calls: int) -> dict:
    state = DecayState(HALF_LIVES, n_keys=n_pairs)
    keys = codes[:calls].tolist()
    times = ev["time"][:calls].tolist()
    ws = weights[:calls].tolist()
    update = state.update
    clock = time.perf_counter_ns
    lat = []
    for k, t, w in zip(keys, times, ws):
        start = clock()
        update(k, t, w)
        lat.append(clock() - start)
    # A tight loop without the per-call clock, for the mean.
    state2 = DecayState(HALF_LIVES, n_keys=n_pairs)
    update2 = state2.update
    start = time.perf_counter()
    for k, t, w in zip(keys, times, ws):
        update2(k, t, w)
    mean = (time.perf_counter() - start) / calls
    empty = []
    for _ in range(calls // 4):  # the clock's own cost, to read the latencies against
        start = clock()
        empty.append(clock() - start)

    n = codes.size
    out = {
        "update_calls": calls,
        "update_median_us": statistics.median(lat) / 1e3,
        "update_p99_us": float(np.percentile(lat, 99)) / 1e3,
        "update_mean_us_tight_loop": mean * 1e6,
        "clock_overhead_median_us": statistics.median(empty) / 1e3,
    }
    for batch in (1_000, 100_000, n):
        state3 = DecayState(HALF_LIVES, n_keys=n_pairs)

        def feed(state3=state3, batch=batch):
            for i in range(0, n, batch):
                state3.update_many(codes[i : i + batch], ev["time"][i : i + batch], weights[i : i + batch])

        if batch == 1_000:  # 5000 calls: time a slice, not all
            m = min(n, 200_000)
            state3b = DecayState(HALF_LIVES, n_keys=n_pairs)
            start = time.perf_counter()
            for i in range(0, m, batch):
                state3b.update_many(codes[i : i + batch], ev["time"][i : i + batch], weights[i : i + batch])
            out[f"update_many_batch_{batch}_events_per_s"] = m / (time.perf_counter() - start)
        else:
            start = time.perf_counter()
            feed()
            out[f"update_many_batch_{'all' if batch == n else batch}_events_per_s"] = n / (time.perf_counter() - start)
    return out


def bench_states(ev: dict, codes: np.ndarray, weights: np.ndarray, repeat: int) -> dict:
    n = codes.size
    out = {}
    order = np.lexsort((ev["time"], codes))
    k_sorted, t_sorted, w_sorted = codes[order], ev["time"][order], weights[order]
    for label, h in (("7d", 7.0), ("1h", 1 / 24)):
        t_unsorted, _ = timed(lambda h=h: states_before_events(codes, ev["time"], weights, h), repeat)
        t_sorted_, _ = timed(lambda h=h: states_before_events(k_sorted, t_sorted, w_sorted, h), repeat)
        out[f"pair_keys_{label}_time_ordered_input_events_per_s"] = n / t_unsorted
        out[f"pair_keys_{label}_presorted_events_per_s"] = n / t_sorted_
    # Per-user sequences are much longer: more doubling passes in the scan.
    t_user, _ = timed(lambda: states_before_events(ev["user"], ev["time"], weights, 7.0), repeat)
    out["user_keys_7d_time_ordered_input_events_per_s"] = n / t_user
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--categories", type=int, default=500)
    parser.add_argument("--days", type=float, default=180.0)
    parser.add_argument("--update-calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/decay.json"))
    args = parser.parse_args(argv)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)

    ev = make_events(args.events, args.users, args.items, args.categories, args.days)
    batch = bench_batch(ev, args.categories, args.repeat)
    codes, pairs, weights = batch.pop("_codes"), batch.pop("_pairs"), batch.pop("_weights")
    online = bench_online(ev, codes, len(pairs), weights, min(args.update_calls, codes.size))
    state_bytes = (HALF_LIVES.size + 1) * 8
    map_bytes = 16  # PairMap: int64 combined key + int32 user + int32 key
    size = {
        "bytes_per_pair_state": state_bytes,
        "bytes_per_pair_map": map_bytes,
        "bytes_per_pair_total": state_bytes + map_bytes,
        "state_mb": len(pairs) * state_bytes / 2**20,
        "pairs_per_user": len(pairs) / args.users,
    }
    states = bench_states(ev, codes, weights, args.repeat)
    result = {
        "benchmark": "decay",
        "config": vars(args) | {"out": str(args.out), "half_lives_days": HALF_LIVES.tolist()},
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        },
        "batch": batch,
        "online": online,
        "size": size,
        "states_before_events": states,
        "goals": {
            "batch_events_per_s_per_core": 5e6,
            "batch_met_kernel": batch["decayed_sums_events_per_s"] >= 5e6,
            "batch_met_end_to_end": batch["end_to_end_events_per_s"] >= 5e6,
            "online_update_us": 20.0,
            "online_met": online["update_median_us"] < 20.0,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"decay: batch {batch['decayed_sums_events_per_s'] / 1e6:.1f}M ev/s kernel "
        f"({batch['end_to_end_events_per_s'] / 1e6:.1f}M ev/s with pair encoding, {len(pairs)} pairs); "
        f"update median {online['update_median_us']:.2f} us; "
        f"update_many {online['update_many_batch_all_events_per_s'] / 1e6:.1f}M ev/s; "
        f"{size['bytes_per_pair_total']} B/pair; "
        f"states_before {states['pair_keys_7d_time_ordered_input_events_per_s'] / 1e6:.1f}M ev/s -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
