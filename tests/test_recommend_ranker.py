"""DecayRanker with its settings fixed: the contract, features as of a time, beating the baselines,
the re-engagement policy. The self-configuration is tested in test_recommend_autoconfig.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("lightgbm")

import itertools

from decayrec.evaluate import evaluate, time_split
from decayrec.recommend.base import REC_SCHEMA, Recommender
from decayrec.recommend.baselines import DecayedPopularity, RepeatHistory
from decayrec.recommend.features import FeatureState, label_grades
from decayrec.recommend.policy import ReengagePolicy, mmr_by_category
from decayrec.recommend.ranker import DecayRanker
from decayrec.simulate import SimConfig, simulate

pytestmark = pytest.mark.slow  # make test-fast leaves this module out

NOW = datetime(2024, 3, 1, tzinfo=UTC)
# Every choice fixed: no search, so these tests exercise the ranker itself.
FIXED = {
    "horizon_days": 7.0,
    "label_days": 7.0,
    "train_windows": 2,
    "sources": None,
    "n_per_source": 30,
    "exclude_seen": False,
    "num_leaves": 31,
    "source_params": {},
    "n_estimators": 40,
}
FIXED["sources"] = ("repeat", "covisit", "itemknn", "als", "trend", "new", "popular")


def fixed(**changes) -> DecayRanker:
    return DecayRanker(**(FIXED | changes))


def log(rows: list[tuple[str, str, str, float, str]], now: datetime = NOW) -> pa.Table:
    """Events as (user, item, event, days relative to ``now``, category)."""
    u, i, e, d, c = zip(*rows)
    return pa.table(
        {
            "user_id": list(u),
            "item_id": list(i),
            "event": list(e),
            "timestamp": pa.array([now + timedelta(days=x) for x in d], pa.timestamp("us", tz="UTC")),
            "category_id": list(c),
        }
    )


@pytest.fixture(scope="module")
def small():
    sim = simulate(SimConfig(n_users=300, n_items=300, n_categories=10, days=90, seed=1))
    split = time_split(sim.events, horizon_days=7)
    return sim.events, split


@pytest.fixture(scope="module")
def fitted(small):
    _, split = small
    return fixed().fit(split.train, split.cutoff)


# -- contract ---------------------------------------------------------------------------
def test_contract(small, fitted):
    _, split = small
    assert isinstance(fitted, Recommender) and fitted.name == "decayrec"
    users = split.users.to_pylist()[:50] + ["nobody"]
    k = 10
    recs = fitted.recommend(users, k, split.cutoff)
    assert recs.schema == REC_SCHEMA
    assert recs["user_id"].unique().to_pylist() == users
    by_user: dict[str, list[dict]] = {}
    for row in recs.to_pylist():
        by_user.setdefault(row["user_id"], []).append(row)
    for rows in by_user.values():
        assert [r["rank"] for r in rows] == list(range(1, k + 1))
        assert len({r["item_id"] for r in rows}) == k
        scores = [r["score"] for r in rows]
        assert all(a >= b for a, b in itertools.pairwise(scores))
        assert all(r["reason"] for r in rows)
    assert all(r["reason"].startswith("new visitor: ") for r in by_user["nobody"])
    assert not any(r["reason"].startswith("new visitor") for r in by_user[users[0]])


def test_no_peeking(small, fitted):
    events, split = small
    users = split.users.to_pylist()[:40] + ["nobody"]
    later = fixed().fit(events, split.cutoff)  # the whole log, future included
    assert later.recommend(users, 10, split.cutoff).equals(fitted.recommend(users, 10, split.cutoff))


def test_recommend_later_and_errors(small, fitted):
    _, split = small
    users = split.users.to_pylist()[:5]
    recs = fitted.recommend(users, 5, split.cutoff + timedelta(days=3))
    assert recs.num_rows == 25
    with pytest.raises(Exception, match="fitted as of"):
        fitted.recommend(users, 5, split.cutoff - timedelta(days=1))


def test_reasons_name_the_evidence(small, fitted):
    _, split = small
    recs = fitted.recommend(split.users.to_pylist(), 20, split.cutoff)
    reasons = recs["reason"].to_pylist()
    starts = (
        "you ",
        "often viewed with ",
        "often engaged with alongside your items",
        "shoppers with similar taste",
        "new in ",
        "trending in ",
        "popular now",
        "popular lately",
        "popular earlier",
    )
    assert all(r.startswith(starts) for r in reasons), sorted({r for r in reasons if not r.startswith(starts)})[:5]
    assert any(r.startswith("often viewed with ") for r in reasons)
    assert any(r.startswith("you bought this before; due again") for r in reasons)


# -- features as of a time ----------------------------------------------------------------
def test_features_by_hand():
    rows = [
        ("u1", "a", "view", -2.0, "c1"),
        ("u1", "a", "purchase", -1.0, "c1"),
        ("u1", "b", "view", -10.0, "c1"),
        ("u2", "a", "view", -3.0, "c1"),
        ("u2", "c", "cart", -0.5, "c2"),
        ("u1", "a", "purchase", 1.0, "c1"),  # the future: never read
        ("u1", "d", "view", 0.5, "c2"),
    ]
    state = FeatureState.build(log(rows), NOW, scales=(1.0, 7.0, 30.0))
    u1, a = state.ix.users.encode(["u1"]), state.ix.items.encode(["a"])
    f = dict(zip(state.names, state.features(u1, a)[0].astype(float)))
    assert f["ui_1d"] == pytest.approx(1 * 2**-2 + 5 * 2**-1, rel=1e-6)
    assert f["ui_7d"] == pytest.approx(2 ** (-2 / 7) + 5 * 2 ** (-1 / 7), rel=1e-6)
    assert f["n_purchase"] == 1 and f["n_view"] == 1
    assert f["ui_days_since"] == pytest.approx(1.0)
    assert f["uc_1d"] == pytest.approx(0.25 + 2.5 + 2**-10, rel=1e-6)
    assert f["uc_week_items"] == 1  # b was 10 days ago
    assert f["pop_1d"] == pytest.approx(0.25 + 2.5 + 2**-3, rel=1e-6)
    assert f["item_age"] == pytest.approx(3.0)
    assert f["u_events"] == 3 and f["u_days_since"] == pytest.approx(1.0)
    assert len(state.ix.items) == 3  # "d" is only in the future
    # Two days later every decayed sum has moved on by its factor, recency by two days.
    g = dict(zip(state.names, state.features(u1, a, elapsed=2.0)[0].astype(float)))
    assert g["ui_1d"] == pytest.approx(f["ui_1d"] / 4, rel=1e-6)
    assert g["ui_days_since"] == pytest.approx(3.0)
    # Unknown pairs read as "never": zero interest, far in the past.
    b = state.ix.items.encode(["c"])
    h = dict(zip(state.names, state.features(u1, b)[0].astype(float)))
    assert h["ui_1d"] == 0 and h["ui_days_since"] >= 1e3


def test_rebuy_cycles_are_shrunk_toward_the_items_and_habits_are_counted():
    rows = [
        ("u1", "a", "purchase", -30.0, "c1"),
        ("u1", "a", "purchase", -20.0, "c1"),
        ("u1", "a", "purchase", -10.0, "c1"),
        ("u1", "b", "view", -9.9, "c1"),
        ("u2", "a", "purchase", -40.0, "c1"),
        ("u2", "a", "purchase", -10.5, "c1"),
    ]
    state = FeatureState.build(log(rows), NOW)
    a = state.ix.items.encode(["a"])[0]
    item_cycle = (10 + 10 + 29.5) / 3
    assert state.item_cycle[a] == pytest.approx(item_cycle)
    f = {u: dict(zip(state.names, state.features(state.ix.users.encode([u]), [a])[0].astype(float))) for u in ("u1", "u2")}
    assert f["u1"]["ui_cycle"] == pytest.approx((20 + 2 * item_cycle) / 4, rel=1e-6)  # two own gaps, two pseudo-gaps
    assert f["u2"]["ui_cycle"] == pytest.approx((29.5 + 2 * item_cycle) / 3, rel=1e-6)
    assert f["u1"]["ui_due"] == pytest.approx(10 / f["u1"]["ui_cycle"], rel=1e-6)
    assert f["u1"]["u_basket"] == pytest.approx(4 / 3)  # a, a, a and b: four item-days on three days
    assert f["u1"]["u_repeat"] == pytest.approx(0.5)  # came back to a, not to b
    assert f["u2"]["u_repeat"] == pytest.approx(1.0)


def test_label_grades_take_the_max():
    rows = [
        ("u1", "a", "view", 1.0, "c1"),
        ("u1", "a", "purchase", 2.0, "c1"),
        ("u1", "b", "cart", 3.0, "c1"),
        ("u1", "b", "view", 9.0, "c1"),  # after the window
        ("u1", "a", "view", -1.0, "c1"),
        ("u1", "b", "view", -1.0, "c1"),
    ]
    state = FeatureState.build(log(rows), NOW)
    _user, item, grade = label_grades(log(rows), NOW, NOW + timedelta(days=7), state.ix.users, state.ix.items)
    assert state.ix.items.decode(item).to_pylist() == ["a", "b"] and grade.tolist() == [3, 2]


# -- quality ------------------------------------------------------------------------------
def test_beats_baselines_on_the_simulator():
    sim = simulate(SimConfig(n_users=1500, seed=3))
    split = time_split(sim.events, horizon_days=7)
    models = {"decayrec": fixed(n_estimators=200), "decayed_popularity": DecayedPopularity(), "repeat": RepeatHistory()}
    res = evaluate(models, split=split, k=20, bootstrap=0)
    ndcg = {m.name: m.scores.summary["all"].mean["ndcg"] for m in res.models}
    assert ndcg["decayrec"] > ndcg["repeat"] > ndcg["decayed_popularity"]


# -- policy -------------------------------------------------------------------------------
def test_mmr_by_category():
    group = np.array([0, 0, 0, 0, 1, 1])
    cat = np.array([0, 0, 0, 1, 2, 2])
    value = np.array([1.0, 0.9, 0.8, 0.5, 1.0, 0.1])
    pick, val = mmr_by_category(group, cat, value, 3, penalty=0.45)
    # Group 0: 1.0 (c0), then 0.9 - 0.45 = 0.45 < 0.5 (c1), then 0.45; group 1 has two rows.
    assert pick.tolist() == [0, 3, 1, 4, 5]
    assert val.tolist() == pytest.approx([1.0, 0.5, 0.45, 1.0, 0.1 - 0.45])


def test_policy_changes_only_faded_or_drifted_lists(small, fitted):
    _events, split = small
    users = split.train.column("user_id").unique().to_pylist()
    policy = ReengagePolicy(lapse_days=14.0)
    on = fixed(reengage=True, policy=policy).fit(split.train, split.cutoff)
    base = fitted.recommend(users, 10, split.cutoff)
    mixed = on.recommend(users, 10, split.cutoff)
    faded, drifted = on.policy_.flags(on.state_, on.users_.encode(users).astype(np.int64), 0.0)
    flagged = {u for u, f in zip(users, faded | drifted) if f}
    assert 0 < len(flagged) < len(users)

    def lists(recs):
        out: dict[str, list[str]] = {}
        for u, i in zip(recs["user_id"].to_pylist(), recs["item_id"].to_pylist()):
            out.setdefault(u, []).append(i)
        return out

    a, b = lists(base), lists(mixed)
    changed = {u for u in users if a[u] != b[u]}
    assert changed and changed <= flagged
    assert all(len(b[u]) == 10 for u in users)


# -- training windows and early stopping ----------------------------------------------------
def test_stacked_label_windows_add_groups_and_early_stopping_cuts_trees(small):
    _, split = small
    one = fixed(train_windows=1, n_estimators=30, early_stopping_rounds=None).fit(split.train, split.cutoff)
    three = fixed(n_estimators=300, train_windows=3, early_stopping_rounds=5).fit(split.train, split.cutoff)
    assert one.trees_ == 30
    assert three.train_groups_ > one.train_groups_
    assert 1 <= three.trees_ < 300 and three.model_.best_iteration_ == three.trees_
    recs = three.recommend(split.users.to_pylist()[:20], 10, split.cutoff)
    assert recs.num_rows == 200


@pytest.mark.parametrize(
    "bad",
    [
        {"train_windows": 0},
        {"early_stopping_rounds": 0},
        {"horizon_days": -1.0},
        {"sources": ["repeat", "telepathy"]},
        {"serve": "sometimes"},
        {"source_params": {"covisit": {"recency_half_life_days": -1.0}}},
        {"source_params": {"magic": {}}},
    ],
)
def test_bad_training_parameters_say_so(small, bad):
    _, split = small
    name = next(iter(bad))
    word = {"source_params": "recency_half_life_days|source_params"}.get(name, name)
    with pytest.raises(Exception, match=word):
        fixed(**bad).fit(split.train, split.cutoff)


# -- lists ----------------------------------------------------------------------------------
def test_lists_are_nested_in_k(small, fitted):
    """The first k rows of a list never depend on k (no candidate budget shrinks or grows with it)."""
    _, split = small
    users = split.users.to_pylist()[:60] + ["nobody"]
    short, long = fitted.recommend(users, 5, split.cutoff), fitted.recommend(users, 60, split.cutoff)

    def head(recs, n):
        out: dict[str, list[str]] = {}
        for u, i in zip(recs["user_id"].to_pylist(), recs["item_id"].to_pylist()):
            out.setdefault(u, []).append(i)
        return {u: items[:n] for u, items in out.items()}

    assert head(short, 5) == head(long, 5)
    assert all(len(v) == 60 for v in head(long, 60).values())  # short candidate lists are filled


def test_exclude_seen_leaves_out_the_users_own_items(small):
    _, split = small
    model = fixed(exclude_seen=True).fit(split.train, split.cutoff)
    users = split.users.to_pylist()[:80]
    recs = model.recommend(users, 20, split.cutoff)
    seen = set(zip(split.train["user_id"].to_pylist(), split.train["item_id"].to_pylist()))
    assert recs.num_rows == 20 * len(users)
    assert not any(pair in seen for pair in zip(recs["user_id"].to_pylist(), recs["item_id"].to_pylist()))


def test_fixed_settings_search_nothing_and_say_so(fitted):
    card = fitted.card()
    assert card["served"] == "ranker" and card["tried"] == []
    assert card["chosen"]["train_windows"] == 2 and card["horizon_days"] == 7.0
