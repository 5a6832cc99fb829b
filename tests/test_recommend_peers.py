"""implicit peers (ALS, BPR): the contract on a small simulated shop, seeds, cold start, the missing extra."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from decayrec.errors import InputError, MissingExtraError
from decayrec.recommend.base import REC_SCHEMA, Recommender
from decayrec.recommend.registry import BASELINES as MODELS
from decayrec.recommend.registry import make_model
from decayrec.simulate import SimConfig, simulate

FAST = {"als": {"factors": 8, "iterations": 5}, "bpr": {"factors": 8, "iterations": 20}}


@pytest.fixture(scope="module")
def sim():
    config = SimConfig(n_users=200, n_items=150, n_categories=8, days=60, seed=4)
    return simulate(config).events, config.start + timedelta(days=50)


def rows_of(recs: pa.Table, user: str) -> list[dict]:
    return [r for r in recs.to_pylist() if r["user_id"] == user]


def test_missing_implicit_names_the_extra(sim, monkeypatch):
    from decayrec.recommend.peers import ImplicitALS

    events, now = sim
    monkeypatch.setitem(sys.modules, "implicit", None)  # import implicit -> ImportError
    with pytest.raises(MissingExtraError, match=r"decayrec\[peers\]"):
        ImplicitALS().fit(events, now)


needs_implicit = pytest.mark.skipif(importlib.util.find_spec("implicit") is None, reason="needs the peers extra")


@needs_implicit
@pytest.mark.parametrize("name", ["als", "bpr"])
def test_contract_shapes_and_cold_start(name, sim):
    events, now = sim
    users = pc.unique(events["user_id"]).to_pylist()[:60] + ["nobody"]
    model = make_model(name, **FAST[name])
    assert isinstance(model, Recommender) and model.name == name
    recs = model.fit(events, now).recommend(users, 10, now)
    assert recs.schema == REC_SCHEMA
    assert recs.num_rows == 10 * len(users)
    assert recs["user_id"].unique().to_pylist() == users
    n_users, n_items = len(model.users_), len(model.items_)
    assert model.matrix_.shape == (n_users, n_items)
    assert model.model_.user_factors.shape[0] == n_users and model.model_.item_factors.shape[0] == n_items
    for user in users:
        got = rows_of(recs, user)
        assert [r["rank"] for r in got] == list(range(1, 11))
        assert len({r["item_id"] for r in got}) == 10
        assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(got))
    cold = rows_of(recs, "nobody")
    assert all(r["reason"].startswith("new visitor: popular") for r in cold)
    warm = [r["reason"] for r in rows_of(recs, users[0])]
    assert all("shoppers with similar taste" in r for r in warm)


@needs_implicit
@pytest.mark.parametrize("name", ["als", "bpr"])
def test_same_seed_same_lists_and_no_peeking(name, sim):
    events, now = sim
    users = pc.unique(events["user_id"]).to_pylist()[:30]
    past = events.filter(pc.less_equal(events["timestamp"], pa.scalar(now, pa.timestamp("us", tz="UTC"))))
    a = make_model(name, **FAST[name]).fit(events, now).recommend(users, 5, now)
    b = make_model(name, **FAST[name]).fit(past, now).recommend(users, 5, now)
    assert a.equals(b)
    c = make_model(name, random_state=1, **FAST[name]).fit(events, now).recommend(users, 5, now)
    assert not a.equals(c)


@needs_implicit
def test_als_does_not_depend_on_threads(sim):
    events, now = sim
    users = pc.unique(events["user_id"]).to_pylist()[:30]
    one = make_model("als", num_threads=1, **FAST["als"]).fit(events, now)
    two = make_model("als", num_threads=2, **FAST["als"]).fit(events, now)
    np.testing.assert_allclose(one.model_.user_factors, two.model_.user_factors, rtol=1e-5, atol=1e-6)
    assert one.recommend(users, 5, now)["item_id"].equals(two.recommend(users, 5, now)["item_id"])


@needs_implicit
def test_als_confidence_is_alpha_times_decayed_weighted_counts(sim):
    from decayrec.decay.kernels import to_days

    events, now = sim
    model = make_model("als", half_life_days=10.0, event_weights={"purchase": 2.0}, **FAST["als"]).fit(events, now)
    days = to_days(events["timestamp"], now)
    bought = np.asarray(pc.equal(events["event"], "purchase")) & (days <= 0)
    assert model.matrix_.sum() == pytest.approx(np.sum(2.0 * 2 ** (days[bought] / 10.0)), rel=1e-5)
    assert model.matrix_.dtype == np.float32 and model.model_.alpha == 40.0


@needs_implicit
@pytest.mark.parametrize("name", ["als", "bpr"])
def test_exclude_seen_filters_the_users_items(name, sim):
    events, now = sim
    users = pc.unique(events["user_id"]).to_pylist()[:20]
    model = make_model(name, exclude_seen=True, **FAST[name]).fit(events, now)
    recs = model.recommend(users, 10, now)
    for user in users:
        seen = set(
            pc.filter(
                events["item_id"], pc.and_(pc.equal(events["user_id"], user), pc.less_equal(events["timestamp"], pa.scalar(now)))
            ).to_pylist()
        )
        got = rows_of(recs, user)
        assert len(got) == 10 and not seen & {r["item_id"] for r in got}
        assert all(r["reason"] == "shoppers with similar taste like this" for r in got)


def test_bad_parameters_are_input_errors(sim):
    events, now = sim
    with pytest.raises(InputError, match="factors"):
        MODELS["als"](factors=0).fit(events, now)
    with pytest.raises(InputError, match="learning_rate"):
        MODELS["bpr"](learning_rate=-1.0).fit(events, now)


def test_item_neighbours_score_as_implicit_does_in_one_sparse_product():
    from decayrec.recommend.peers import ImplicitItemKNN

    sim = simulate(SimConfig(n_users=120, n_items=150, n_categories=6, days=40, seed=9))
    now = sim.events["timestamp"][-1].as_py()
    for exclude in (False, True):
        model = ImplicitItemKNN(K=20, exclude_seen=exclude).fit(sim.events, now)
        codes = np.arange(40)
        row, item, score = model.propose(codes, 10, exclude_seen=exclude)
        ids, ref = model.model_.recommend(codes, model.matrix_[codes], N=10, filter_already_liked_items=exclude)
        for r in range(40):
            mine = dict(zip(item[row == r].tolist(), score[row == r].tolist()))
            theirs = {int(i): float(v) for i, v in zip(ids[r], ref[r]) if i >= 0 and v > 0}
            # The same top scores; items tied at the cut may differ.
            assert sorted(mine.values(), reverse=True) == pytest.approx(sorted(theirs.values(), reverse=True), rel=1e-5)
            assert {i for i, v in mine.items() if v > min(mine.values(), default=0)} <= set(theirs)
