"""The first k rows of every model's lists never depend on k (generated logs, every model).

decayrec's own check, with its candidate sources and popularity fill, is
``test_recommend_ranker.test_lists_are_nested_in_k``; this one covers every other model by name.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from decayrec.recommend.registry import BASELINES as MODELS
from decayrec.simulate import SimConfig, simulate


@pytest.fixture(scope="module", params=[0, 1])
def shop(request):
    sim = simulate(SimConfig(n_users=200, n_items=300, n_categories=8, days=40.0, seed=request.param))
    events = sim.events
    now = events["timestamp"][-1].as_py() + timedelta(seconds=1)
    users = sorted(set(events["user_id"].to_pylist()))[:40] + ["nobody"]
    return events, now, users


def lists(recs, n: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for user, item, rank in zip(recs["user_id"].to_pylist(), recs["item_id"].to_pylist(), recs["rank"].to_pylist()):
        out.setdefault(user, []).append((rank, item))
    return {u: [i for _, i in sorted(v)][:n] for u, v in out.items()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_top_k_is_nested_in_k(shop, name):
    events, now, users = shop
    model = MODELS[name]().fit(events, now)
    one, five, fifty, many = (model.recommend(users, k, now) for k in (1, 5, 50, 200))
    assert lists(one, 1) == lists(many, 1)
    assert lists(five, 5) == lists(fifty, 5) == lists(many, 5)
    assert lists(fifty, 50) == lists(many, 50)
    assert set(lists(many, 200)) == set(users)  # every asked user has a list, the unknown one included
