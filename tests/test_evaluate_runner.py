"""The benchmark runner: exact values on a hand-made shop, a simulated shop, no peeking."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from math import log2

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from rich.console import Console

from decayrec.errors import InputError
from decayrec.evaluate import Results, evaluate, score, time_split
from decayrec.recommend.base import REC_SCHEMA, Recommender
from decayrec.schema import COLUMNS
from decayrec.simulate import SimConfig, simulate

UTC = UTC


def make_events(rows: list[tuple[str, str, str, str]]) -> pa.Table:
    """Canonical events (naive UTC times) from (user, item, event, ISO time) rows."""
    users, items, kinds, times = (list(c) for c in zip(*rows))
    cols = {
        "user_id": pa.array(users),
        "item_id": pa.array(items),
        "event": pa.array(kinds),
        "timestamp": pa.array([datetime.fromisoformat(t) for t in times], pa.timestamp("us")),
    }
    for name in COLUMNS[4:]:
        cols[name] = pa.nulls(len(rows), pa.float64() if name in ("price", "quantity") else pa.string())
    return pa.table([cols[c] for c in COLUMNS], names=list(COLUMNS))


def _recs(users: list[str], items: list[str], reason: str) -> pa.Table:
    ranks = [0] * len(users)
    for i in range(len(users)):
        ranks[i] = ranks[i - 1] + 1 if i and users[i] == users[i - 1] else 1
    n = len(users)
    return pa.table([users, items, ranks, [1.0 / r for r in ranks], [reason] * n], schema=REC_SCHEMA)


class LastItems:
    """The user's own distinct items, most recent first (nothing for unknown users)."""

    name = "last_items"

    def fit(self, events: pa.Table, now: datetime) -> LastItems:
        last = events.group_by(["user_id", "item_id"]).aggregate([("timestamp", "max")])
        self.last_ = last.sort_by([("user_id", "ascending"), ("timestamp_max", "descending"), ("item_id", "ascending")])
        return self

    def recommend(self, users: Sequence[str], k: int, now: datetime) -> pa.Table:
        rows = self.last_.filter(pc.is_in(self.last_["user_id"], value_set=pa.array(users)))
        out: dict[str, list[str]] = {}
        for u, i in zip(rows["user_id"].to_pylist(), rows["item_id"].to_pylist()):
            if len(out.setdefault(u, [])) < k:
                out[u].append(i)
        pairs = [(u, i) for u in users for i in out.get(u, [])]
        return _recs([u for u, _ in pairs], [i for _, i in pairs], "you looked at it lately")


class Popular:
    """The k items with the most events, the same list for everyone."""

    name = "popular"

    def fit(self, events: pa.Table, now: datetime) -> Popular:
        counts = events.group_by("item_id").aggregate([("item_id", "count")])
        self.top_ = counts.sort_by([("item_id_count", "descending"), ("item_id", "ascending")])["item_id"].to_pylist()
        return self

    def recommend(self, users: Sequence[str], k: int, now: datetime) -> pa.Table:
        top = self.top_[:k]
        return _recs([u for u in users for _ in top], [i for _ in users for i in top], "popular now")


class Peeker:
    """Recommends what each user does *after* ``now`` in the table it is given: a cheat."""

    name = "peeker"

    def fit(self, events: pa.Table, now: datetime) -> Peeker:
        self.seen_until_ = pc.max(events["timestamp"]).as_py()
        ts = events["timestamp"]
        later = pc.greater(ts, pa.scalar(now.replace(tzinfo=None) if ts.type.tz is None else now, ts.type))
        self.future_ = LastItems().fit(events.filter(later), now)
        return self

    def recommend(self, users: Sequence[str], k: int, now: datetime) -> pa.Table:
        return self.future_.recommend(users, k, now)


ROWS = [
    ("a", "x", "view", "2024-01-01T00:00:00"),
    ("a", "y", "view", "2024-01-02T00:00:00"),
    ("b", "x", "purchase", "2024-01-01T00:00:00"),
    ("c", "z", "view", "2024-01-03T00:00:00"),
    ("d", "x", "view", "2024-01-03T00:00:00"),  # history only: not evaluated
    ("a", "y", "view", "2024-01-11T00:00:00"),  # truth a: {y} repeat
    ("b", "z", "purchase", "2024-01-12T00:00:00"),  # truth b: {z} new
    ("c", "x", "view", "2024-01-12T00:00:00"),  # truth c: {x} new, {z} repeat
    ("c", "z", "view", "2024-01-13T00:00:00"),
    ("e", "x", "view", "2024-01-13T00:00:00"),  # cold: not evaluated
]
CUT = datetime(2024, 1, 10, tzinfo=UTC)
G = 1 / (1 + 1 / log2(3))  # NDCG of one hit at place 1 with two relevant items


@pytest.fixture(scope="module")
def hand() -> Results:
    split = time_split(make_events(ROWS), CUT, 7)
    return evaluate({"last": LastItems(), "pop": Popular()}, split=split, k=2, bootstrap=50)


def test_exact_values_on_a_hand_made_shop(hand):
    last, pop = (m.to_dict() for m in hand.models)
    assert hand.split.users.to_pylist() == ["a", "b", "c"]
    # last: a [y, x] hits y at 1; b [x] misses z; c [z] hits z at 1 of {x, z}.
    assert last["ndcg"] == pytest.approx((1 + 0 + G) / 3)
    assert last["recall"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert (last["hit_rate"], last["mrr"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert last["coverage"] == 1.0  # x, y, z of x, y, z
    assert last["repeat"]["users"] == 2 and last["repeat"]["ndcg"] == 1.0
    assert last["new"]["users"] == 2 and last["new"]["ndcg"] == 0.0
    # pop: [x, y] for all. a hits y at 2; b misses; c hits x at 1 of {x, z}.
    assert pop["ndcg"] == pytest.approx((1 / log2(3) + 0 + G) / 3)
    assert pop["recall"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert pop["mrr"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert pop["coverage"] == pytest.approx(2 / 3)
    # new truth: b {z} missed, c {x} at place 1 (the ideal list is restricted too).
    assert pop["new"]["ndcg"] == pytest.approx((0 + 1) / 2)
    assert pop["repeat"]["ndcg"] == pytest.approx((1 / log2(3) + 0) / 2)  # a {y} at 2, c {z} missed


def test_results_json_follows_the_contract(hand, tmp_path):
    doc = json.loads(hand.to_json(tmp_path / "RESULTS.json"))
    assert doc == json.loads((tmp_path / "RESULTS.json").read_text())
    assert list(doc) == ["protocol", "models"]
    protocol = doc["protocol"]
    assert protocol["cutoff"] == "2024-01-10T00:00:00Z" and protocol["horizon_days"] == 7.0
    assert protocol["k"] == 2 and protocol["users_evaluated"] == 3
    assert protocol["users_cold_in_window"] == 1 and protocol["users_repeat"] == protocol["users_new"] == 2
    contract = ["name", "ndcg", "recall", "hit_rate", "mrr", "coverage", "fit_seconds", "recommend_seconds"]
    for model in doc["models"]:
        assert list(model)[: len(contract)] == contract
        assert model["fit_seconds"] >= 0 and model["recommend_seconds"] >= 0
        for metric, (lo, hi) in model["ci"].items():
            assert lo <= model[metric] <= hi
    assert [m["name"] for m in doc["models"]] == ["last", "pop"]


def test_rich_table_lists_every_model(hand):
    console = Console(width=200, record=True)
    console.print(hand.table())
    text = console.export_text()
    assert "last" in text and "pop" in text and "NDCG@2" in text


@pytest.fixture(scope="module")
def shop() -> pa.Table:
    return simulate(SimConfig(n_users=300, n_items=200, n_categories=8, days=60, seed=5)).events


def test_simulated_shop(shop):
    results = evaluate([LastItems(), Popular()], shop, k=10, bootstrap=100, horizon_days=7)
    last, pop = results.models
    assert (last.name, pop.name) == ("last_items", "popular")
    for m in results.models:
        d = m.to_dict()
        for metric in ("ndcg", "recall", "hit_rate", "mrr", "coverage"):
            assert 0 <= d[metric] <= 1
        assert d["recall"] >= d["recall_full"]
    # Own history can only hit repeat items; the repeat regime is where it wins.
    assert last.scores.summary["new"].mean["ndcg"] == 0.0
    assert last.scores.summary["repeat"].mean["ndcg"] > pop.scores.summary["repeat"].mean["ndcg"]
    assert pop.scores.coverage_items <= 10
    assert results.protocol()["users_evaluated"] == results.split.n_users > 0


def test_a_peeking_model_sees_nothing_after_the_cutoff(shop):
    split = time_split(shop, horizon_days=7)
    peeker = Peeker()
    results = evaluate({"peeker": peeker}, split=split, k=10, bootstrap=0)
    assert peeker.seen_until_ <= split.cutoff
    assert results.models[0].scores.summary["all"].mean["ndcg"] == 0.0
    # Handed the whole log, the same model would look excellent: the guard is what stops it.
    cheat = Peeker().fit(shop, split.cutoff).recommend(split.users.to_pylist(), 10, split.cutoff)
    leaked = score(cheat, split.truth, split.users, 10, catalogue=["x"], bootstrap=0)
    assert leaked.summary["all"].mean["hit_rate"] > 0.9


def test_a_split_that_leaks_is_refused():
    split = time_split(make_events(ROWS), CUT, 7)
    leaky = replace(split, train=make_events(ROWS))
    with pytest.raises(ValueError, match="after the cutoff"):
        evaluate([Popular()], split=leaky)


def test_bad_calls():
    events = make_events(ROWS)
    with pytest.raises(InputError):
        evaluate([Popular(), Popular()], events)  # two models named alike
    with pytest.raises(InputError):
        evaluate([], events)
    with pytest.raises(InputError):
        evaluate([Popular()])
    with pytest.raises(InputError):
        evaluate([Popular()], events, k=0)


def test_dummies_follow_the_contract():
    assert isinstance(LastItems(), Recommender) and isinstance(Popular(), Recommender)
