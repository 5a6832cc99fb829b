"""The re-engagement plan: each rule picks the action it documents, on a hand-made shop."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from decayrec.lapse import PlanConfig, make_plan, risk_table
from decayrec.recommend.registry import make_model
from eventrows import T0, events

NOW = T0 + timedelta(days=90)


@pytest.fixture
def shop() -> pa.Table:
    rows = []
    rows += [("a", f"i{d % 2}", "view", float(d), "c1") for d in range(5)]  # strong c1 interest, long ago
    rows += [("a", "i9", "view", 85.0, "c2")]
    rows += [("b", "i5", "purchase", float(d), "c3") for d in range(80, 90, 2)]  # steady in c3
    rows += [("x", "i_new", "view", 86.0, "c3"), ("y", "i_new", "view", 87.0, "c3")]  # new in c3
    rows += [("c", "i0", "view", 0.0, "c1")]  # one visit, three months ago: low value
    rows += [("d", "i1", "view", 89.0, "c1")]  # not at risk
    rows += [("e", "i7", "purchase", float(d), "c4") for d in (50, 70, 80)]  # c4: no new items, not faded
    rows += [("z", "i1", "view", 88.0, "c1"), ("z", "i0", "view", 88.5, "c1"), ("z", "i1", "view", 89.0, "c1")]
    return events(rows)


def risk() -> pa.Table:
    users = ["a", "b", "c", "d", "e", "x", "y", "z"]
    p = np.array([0.1, 0.2, 0.45, 0.9, 0.3, 0.95, 0.95, 0.95])
    return risk_table(pa.array(users), p)


def test_each_rule_picks_its_action(shop):
    plan = make_plan(risk(), shop, NOW, recommender=make_model("repeat").fit(shop, NOW), config=PlanConfig(k=3))
    rows = {r["user_id"]: r for r in plan.to_pylist()}
    assert set(rows) == {"a", "b", "c", "e"}  # at risk: P(lapse) >= 0.5
    assert rows["a"]["action"] == "faded_reminder" and rows["a"]["category_id"] == "c1"
    # c1's popular items now (7-day decayed): z's recent views of i1 twice, i0 once.
    assert rows["a"]["items"].split("|")[:2] == ["i1", "i0"]
    assert "c1" in rows["a"]["reason"] and "peak" in rows["a"]["reason"]
    assert rows["b"]["action"] == "new_arrivals" and rows["b"]["category_id"] == "c3"
    assert rows["b"]["items"].split("|")[0] == "i_new"
    assert rows["c"]["action"] == "none" and "below" in rows["c"]["reason"]
    assert rows["e"]["action"] == "reengage_recs" and rows["e"]["items"].split("|")[0] == "i7"
    # Ordered by expected value, "none" last; priorities 1..n.
    assert plan.column("priority").to_pylist() == list(range(1, plan.num_rows + 1))
    ev = [r["expected_value"] for r in plan.to_pylist() if r["action"] != "none"]
    assert ev == sorted(ev, reverse=True)
    assert plan.to_pylist()[-1]["action"] == "none"


def test_expected_value_follows_the_documented_rule(shop):
    cfg = PlanConfig(assumed_uplift=0.1, uplift_half_life_days=30.0, min_value=0.0)
    plan = make_plan(risk(), shop, NOW, config=cfg)
    e = {r["user_id"]: r for r in plan.to_pylist()}["e"]
    # e: 3 active days over 40 days (= 40/7 weeks), last seen 10 days ago, P(lapse) 0.7.
    value = 3 / (40 / 7)
    assert e["expected_value"] == pytest.approx(0.7 * 0.1 * 2 ** (-10 / 30) * value)
    assert e["value_unit"] == "active days per week"
    # Without a recommender, e (nothing faded, no new items) gets no action.
    assert e["action"] == "none"


def test_future_events_are_not_read(shop):
    later = events([("a", "i1", "view", 95.0, "c1"), ("q", "i_late", "view", 95.0, "c3")])
    both = pa.concat_tables([shop, later.cast(shop.schema)])
    a = make_plan(risk(), shop, NOW)
    b = make_plan(risk(), both, NOW)
    assert a.equals(b)
