"""The main recommender's self-configuration: the use horizon, the search, its card, the floor."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("lightgbm")
pytest.importorskip("implicit")

from decayrec.evaluate import time_split
from decayrec.recommend.autoconfig import choose_served, infer_horizon
from decayrec.recommend.baselines import RepeatHistory
from decayrec.recommend.interactions import interactions
from decayrec.recommend.ranker import DecayRanker
from decayrec.simulate import SimConfig, preset, simulate

pytestmark = pytest.mark.slow  # make test-fast leaves this module out

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def table(rows: list[tuple[str, str, str, float]], category: str = "c1") -> pa.Table:
    """Events as (user, item, event, days relative to NOW)."""
    u, i, e, d = zip(*rows)
    return pa.table(
        {
            "user_id": list(u),
            "item_id": list(i),
            "event": list(e),
            "timestamp": pa.array([NOW + timedelta(days=x) for x in d], pa.timestamp("us", tz="UTC")),
            "category_id": [category] * len(u),
        }
    )


def lists(recs: pa.Table) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for u, i in zip(recs["user_id"].to_pylist(), recs["item_id"].to_pylist()):
        out.setdefault(u, []).append(i)
    return out


# -- the use horizon -------------------------------------------------------------------------
def test_the_horizon_is_the_typical_gap_between_active_days():
    rows = [(f"u{u}", f"i{(u + d) % 9}", "view", -d - 0.3) for u in range(80) for d in range(0, 120, 5)]
    h, note = infer_horizon(interactions(table(rows), NOW, None))
    assert h == pytest.approx(5.0)
    assert "5 days" in note


def test_the_horizon_of_a_session_log_is_about_a_visit():
    # 400 visitors, each clicking three items over twelve minutes, none coming back.
    rows = [(f"s{s}", f"i{(s + j) % 30}", "click", -s / 50 - j * 6 / 1440) for s in range(400) for j in range(3)]
    h, note = infer_horizon(interactions(table(rows), NOW, None))
    assert h == pytest.approx(24 / 1440, rel=0.01)  # twice the median visit
    assert "session" in note


# -- the floor ---------------------------------------------------------------------------------
def test_the_floor_serves_the_ranker_only_when_it_beats_every_single_source():
    singles = {"repeat": ({"half_life_days": 7.0}, 0.30), "als": ({"factors": 64}, 0.25)}
    assert choose_served(0.31, singles)[0] == "ranker"
    served, single, floor = choose_served(0.30, singles)  # a tie goes to the simpler model
    assert served == "repeat" and single == ("repeat", {"half_life_days": 7.0})
    assert floor["best_single"] == "repeat" and "repeat" in floor["note"]
    assert choose_served(0.10, singles, serve="ranker")[0] == "ranker"
    assert choose_served(float("-inf"), {"als": ({}, float("nan"))})[0] == "ranker"  # nothing scored: no floor to keep


def test_a_large_shop_is_searched_on_a_seeded_sample_of_whole_users():
    from decayrec.recommend.autoconfig import search_sample

    rows = [(f"u{u}", f"i{(u * 7 + d) % 40}", "view", -d - 0.5) for u in range(300) for d in range(4)]
    events = table(rows)
    sample, kept, total = search_sample(events, NOW, 100, seed=0)
    assert (kept, total) == (100, 300)
    users = set(sample["user_id"].to_pylist())
    assert len(users) == 100 and sample.num_rows == 400  # every event of the users kept
    again, _, _ = search_sample(events, NOW, 100, seed=0)
    assert again.equals(sample)
    whole, kept, _ = search_sample(events, NOW, 1000, seed=0)
    assert whole is events and kept == 300


# -- the search ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shop():
    events = simulate(SimConfig(n_users=160, n_items=160, n_categories=8, days=70, seed=4)).events
    return events, time_split(events, horizon_days=7)


@pytest.fixture(scope="module")
def searched(shop):
    _, split = shop
    return DecayRanker().fit(split.train, split.cutoff)


def test_the_card_follows_the_contract_and_keeps_the_floor(searched, shop):
    _, split = shop
    card = json.loads(json.dumps(searched.card()))
    assert {"horizon_days", "chosen", "tried", "served", "fitted_at"} <= set(card)
    assert card["fitted_at"].startswith(split.cutoff.strftime("%Y-%m-%dT%H:%M"))
    assert card["tried"] and all({"step", "settings", "score"} <= set(t) for t in card["tried"])
    assert all(t["score"] is None or 0 <= t["score"] <= 1 for t in card["tried"])
    steps = {t["step"] for t in card["tried"]}
    assert {"decayed_popularity", "repeat", "windows", "sources", "leaves"} <= steps
    # Validation lies inside the training period.
    assert all(c < card["fitted_at"] for c in card["validation"]["cutoffs"])
    floor = card["floor"]
    if card["served"] == "ranker":
        assert floor["ranker_score"] > floor["single_score"]
    else:
        assert card["served"] == floor["best_single"]
    best_ranker = max(t["score"] or 0 for t in card["tried"] if t["step"] in ("windows", "label", "sources", "budget", "leaves"))
    assert floor["ranker_score"] == pytest.approx(best_ranker)


def test_the_search_is_deterministic_and_reads_nothing_after_now(searched, shop):
    events, split = shop
    again = DecayRanker().fit(events, split.cutoff)  # the whole log, future included
    strip = lambda card: [(t["step"], t["settings"], t["score"]) for t in card["tried"]]  # noqa: E731
    assert strip(again.card()) == strip(searched.card())
    users = split.users.to_pylist() + ["nobody"]
    assert again.recommend(users, 10, split.cutoff).equals(searched.recommend(users, 10, split.cutoff))


def test_given_settings_are_kept_and_not_searched(shop):
    _, split = shop
    model = DecayRanker(horizon_days=3.0, train_windows=1, num_leaves=15, n_per_source=20).fit(split.train, split.cutoff)
    card = model.card()
    assert card["horizon_days"] == 3.0 and card["horizon_note"] == "given"
    assert card["ranker_settings"]["train_windows"] == 1 and card["ranker_settings"]["num_leaves"] == 15
    assert not {"windows", "leaves", "budget"} & {t["step"] for t in card["tried"]}


def test_a_shop_where_repeating_is_unbeatable_gets_the_repeat_model():
    # Every user touches their own two items, one a day, and nothing else: the next items are
    # always those two, which the repeat model lists first; a ranker can at best tie it.
    rows = [(f"u{u}", f"i{u}-{d % 2}", "view", -d - 0.5) for u in range(150) for d in range(60)]
    events = table(rows)
    model = DecayRanker(horizon_days=2.0).fit(events, NOW)
    card = model.card()
    assert card["served"] == "repeat", card["floor"]
    assert card["floor"]["single_score"] == pytest.approx(1.0)
    settings = card["chosen"]["settings"]
    users = [f"u{u}" for u in range(150)] + ["nobody"]
    expected = RepeatHistory(**settings).fit(events, NOW).recommend(users, 5, NOW)
    assert model.recommend(users, 5, NOW).equals(expected)
    got = lists(expected)
    assert all(set(got[f"u{u}"][:2]) == {f"i{u}-0", f"i{u}-1"} for u in range(150))


def test_a_log_without_repeats_gets_lists_without_the_users_own_items():
    events = simulate(preset("reviews", n_users=1500, n_items=500, n_categories=10, days=400, seed=2)).events
    split = time_split(events, horizon_days=60)
    model = DecayRanker().fit(split.train, split.cutoff)
    card = model.card()
    assert card["validation"]["repeat_share"] == 0.0 and card["validation"]["exclude_seen"] is True
    recs = model.recommend(split.users.to_pylist(), 20, split.cutoff)
    seen = set(zip(split.train["user_id"].to_pylist(), split.train["item_id"].to_pylist()))
    assert recs.num_rows and not any(p in seen for p in zip(recs["user_id"].to_pylist(), recs["item_id"].to_pylist()))
    assert np.all(recs["score"].to_numpy() == recs["score"].to_numpy())  # no NaN scores
