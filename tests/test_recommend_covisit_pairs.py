"""Co-visitation pair building: the vectorised ``_pairs`` against a brute-force reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from decayrec.decay.kernels import LN2
from decayrec.recommend.baselines import CoVisitation, _pairs
from decayrec.recommend.interactions import interactions

NOW = datetime(2024, 3, 1, tzinfo=UTC)


def random_log(seed: int, n_events: int = 400, n_users: int = 12, n_items: int = 15, days: float = 6.0) -> pa.Table:
    """A small log with repeats, time ties (whole hours) and all event types."""
    rng = np.random.default_rng(seed)
    hours = rng.integers(0, int(days * 24), n_events)
    return pa.table(
        {
            "user_id": [f"u{x}" for x in rng.integers(0, n_users, n_events)],
            "item_id": [f"i{x}" for x in rng.integers(0, n_items, n_events)],
            "event": list(rng.choice(["view", "click", "cart", "fav", "purchase"], n_events)),
            "timestamp": pa.array([NOW - timedelta(hours=int(h)) for h in hours], pa.timestamp("us", tz="UTC")),
        }
    )


def brute_force(ix, window: float, max_lag: int, half_life: float) -> dict[tuple[int, int], float]:
    """Per user, every event with each of its next ``max_lag`` events within ``window``; max per pair; sum over users."""
    co: dict[tuple[int, int], float] = {}
    for u in range(ix.n_users):
        idx = np.flatnonzero(ix.user == u)
        idx = idx[np.argsort(ix.time[idx], kind="stable")]  # ties keep the input order, as lexsort does
        best: dict[tuple[int, int], float] = {}
        for p, e in enumerate(idx):
            for f in idx[p + 1 : p + 1 + max_lag]:
                if ix.time[f] - ix.time[e] > window or ix.item[e] == ix.item[f]:
                    continue
                key = (min(ix.item[e], ix.item[f]), max(ix.item[e], ix.item[f]))
                w = np.sqrt(ix.weight[e] * ix.weight[f]) * np.exp(LN2 * ix.time[f] / half_life)
                best[key] = max(best.get(key, 0.0), w)
        for key, w in best.items():
            co[key] = co.get(key, 0.0) + w
    return co


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("window", "max_lag"), [(0.25, 3), (1.0, 20), (30.0, 5)])
def test_pairs_match_the_brute_force_reference(seed, window, max_lag):
    ix = interactions(random_log(seed), NOW, None)
    a, b, w = _pairs(ix, window, max_lag, 7.0)
    assert np.all(a < b)
    got: dict[tuple[int, int], float] = {}
    for x, y, v in zip(a.tolist(), b.tolist(), w.tolist()):
        got[(x, y)] = got.get((x, y), 0.0) + v
    want = brute_force(ix, window, max_lag, 7.0)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12)


def test_pairs_are_one_per_user_and_pair_sorted_by_user_then_pair():
    ix = interactions(random_log(5), NOW, None)
    a, b, _ = _pairs(ix, 2.0, 10, 7.0)
    n_pairs = len({(x, y) for x, y in zip(a.tolist(), b.tolist())})
    assert a.size >= n_pairs  # one row per (user, pair): pairs repeat across users only


def test_pairs_of_an_empty_log_and_of_single_events():
    one = random_log(0, n_events=1)
    a, b, w = _pairs(interactions(one, NOW, None), 1.0, 5, 7.0)
    assert a.size == b.size == w.size == 0
    model = CoVisitation().fit(one, NOW)
    assert model.similar_.nnz == 0
