"""Baselines: exact lists and reasons on hand-made logs, cold start, no peeking, the contract, helpers."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from decayrec.errors import DecayrecError, InputError
from decayrec.recommend.base import REC_SCHEMA
from decayrec.recommend.baselines import CoVisitation, DecayedPopularity, Popularity, RepeatHistory, UserKNN
from decayrec.recommend.reasons import ago
from decayrec.recommend.registry import BASELINES as MODELS
from decayrec.recommend.registry import make_model
from decayrec.recommend.topk import topk_rows, topk_sparse_rows
from decayrec.simulate import SimConfig, simulate

NOW = datetime(2024, 3, 1, tzinfo=UTC)
BASELINES = ("popularity", "decayed_popularity", "repeat", "covisit")


def log(rows: list[tuple[str, str, str, float]], now: datetime = NOW) -> pa.Table:
    """Events as (user, item, event, days relative to ``now``)."""
    u, i, e, d = zip(*rows)
    ts = [now + timedelta(days=x) for x in d]
    return pa.table(
        {
            "user_id": list(u),
            "item_id": list(i),
            "event": list(e),
            "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        }
    )


def lists(recs: pa.Table) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in recs.to_pylist():
        out.setdefault(row["user_id"], []).append(row["item_id"])
    return out


def rows_of(recs: pa.Table, user: str) -> list[dict]:
    return [r for r in recs.to_pylist() if r["user_id"] == user]


def check_contract(recs: pa.Table, users: list[str], k: int) -> None:
    """Every requested user, in request order, with exactly ``k`` distinct items ranked 1..k, best first."""
    assert recs.schema == REC_SCHEMA
    assert recs["user_id"].unique().to_pylist() == list(dict.fromkeys(users))
    for user in dict.fromkeys(users):
        got = rows_of(recs, user)
        assert [r["rank"] for r in got] == list(range(1, k + 1))
        assert len({r["item_id"] for r in got}) == k
        assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(got))
        assert all(len(r["reason"]) > 5 for r in got)


@pytest.fixture(scope="module")
def shop() -> pa.Table:
    return simulate(SimConfig(n_users=200, n_items=150, n_categories=8, days=60, seed=4)).events


@pytest.fixture(scope="module")
def shop_now(shop) -> datetime:
    return SimConfig().start + timedelta(days=50)


# -- popularity ---------------------------------------------------------------------------
def test_popularity_counts_weighted_events_in_order():
    events = log(
        [
            ("u1", "A", "view", -3),
            ("u2", "A", "view", -2),
            ("u3", "A", "view", -1),
            ("u1", "B", "purchase", -5),
            ("u2", "C", "view", -1),
        ]
    )
    recs = Popularity().fit(events, NOW).recommend(["u1"], 3, NOW)
    assert recs.schema == REC_SCHEMA
    assert recs.to_pylist() == [
        {"user_id": "u1", "item_id": "B", "rank": 1, "score": 5.0, "reason": "popular overall (1 shopper)"},
        {"user_id": "u1", "item_id": "A", "rank": 2, "score": 3.0, "reason": "popular overall (3 shoppers)"},
        {"user_id": "u1", "item_id": "C", "rank": 3, "score": 1.0, "reason": "popular overall (1 shopper)"},
    ]
    # Types left out of event_weights count 0: purchases alone, or views alone.
    only_views = Popularity(event_weights={"view": 1.0}).fit(events, NOW).recommend(["u1"], 3, NOW)
    assert lists(only_views) == {"u1": ["A", "C"]}


def test_popularity_ties_break_by_item_id():
    events = log([("u1", "b", "view", -1), ("u2", "a", "view", -1), ("u3", "c", "view", -1)])
    assert lists(Popularity().fit(events, NOW).recommend(["u1"], 3, NOW)) == {"u1": ["a", "b", "c"]}


def test_decayed_popularity_prefers_recent_items():
    events = log([(f"u{j}", "old", "view", -60) for j in range(4)] + [("u9", "new", "view", -1), ("u8", "new", "view", -1)])
    assert lists(Popularity().fit(events, NOW).recommend(["u1"], 2, NOW)) == {"u1": ["old", "new"]}
    recs = DecayedPopularity(half_life_days=7.0).fit(events, NOW).recommend(["u1"], 2, NOW)
    assert recs.to_pylist() == [
        {
            "user_id": "u1",
            "item_id": "new",
            "rank": 1,
            "score": pytest.approx(2 * 2 ** (-1 / 7)),
            "reason": "popular lately (2 shoppers in the last 7 days)",
        },
        {
            "user_id": "u1",
            "item_id": "old",
            "rank": 2,
            "score": pytest.approx(4 * 2 ** (-60 / 7)),
            "reason": "popular earlier (4 shoppers, none in the last 7 days)",
        },
    ]


def test_decayed_scores_move_on_with_now_but_not_before_the_fit():
    events = log([("u1", "A", "view", -1)])
    model = DecayedPopularity(half_life_days=7.0).fit(events, NOW)
    later = model.recommend(["u1"], 1, NOW + timedelta(days=7))
    assert later["score"][0].as_py() == pytest.approx(2 ** (-8 / 7))
    with pytest.raises(InputError, match="fitted as of"):
        model.recommend(["u1"], 1, NOW - timedelta(hours=1))


# -- repeat history -----------------------------------------------------------------------
def test_repeat_ranks_the_users_own_items_then_fills_with_popularity():
    events = log(
        [
            ("u1", "A", "purchase", -30),
            ("u1", "A", "purchase", -20),
            ("u1", "A", "purchase", -10),
            ("u1", "B", "view", -1),
            *[("u1", "C", "view", -40) for _ in range(5)],
            ("u2", "D", "view", -2),
            ("u3", "D", "view", -2),
            ("u2", "E", "view", -3),
        ]
    )
    recs = RepeatHistory(half_life_days=30.0).fit(events, NOW).recommend(["u1"], 5, NOW)
    got = rows_of(recs, "u1")
    assert [r["item_id"] for r in got] == ["A", "C", "B", "D", "E"]
    assert [r["rank"] for r in got] == [1, 2, 3, 4, 5]
    assert got[0]["score"] == pytest.approx(5 * (2**-1 + 2 ** (-2 / 3) + 2 ** (-1 / 3)))
    assert got[1]["score"] == pytest.approx(5 * 2 ** (-40 / 30))
    assert got[2]["score"] == pytest.approx(2 ** (-1 / 30))
    assert [r["reason"] for r in got] == [
        "you bought this 3 times; last 10 days ago",
        "you viewed this 5 times; last 40 days ago",
        "you viewed this 1 day ago",
        "popular lately (2 shoppers in the last 7 days)",
        "popular lately (1 shopper in the last 7 days)",
    ]
    assert [r["score"] for r in got[3:]] == [0.0, 0.0]  # fill rows never outscore the user's own


def test_repeat_recent_beats_frequent_when_the_frequent_faded():
    events = log([*[("u1", "old", "view", -100) for _ in range(4)], ("u1", "new", "view", -0.5)])
    recs = RepeatHistory(half_life_days=10.0).fit(events, NOW).recommend(["u1"], 2, NOW)
    assert lists(recs) == {"u1": ["new", "old"]}
    assert rows_of(recs, "u1")[0]["reason"] == "you viewed this 12 hours ago"


def test_repeat_without_fill_leaves_lists_short_but_answers_cold_users():
    events = log([("u1", "A", "view", -1), ("u2", "B", "view", -1), ("u3", "B", "view", -1)])
    recs = RepeatHistory(fill="none").fit(events, NOW).recommend(["u1", "new"], 3, NOW)
    assert lists(recs) == {"u1": ["A"], "new": ["B", "A"]}


# -- co-visitation -------------------------------------------------------------------------
def covisit_log() -> pa.Table:
    return log(
        [
            # X then Y within an hour, three times; X then Z three days apart (outside the window).
            *[(u, "X", "view", -10) for u in ("u2", "u3", "u4")],
            *[(u, "Y", "view", -10 + 1 / 24) for u in ("u2", "u3", "u4")],
            ("u5", "X", "view", -9),
            ("u5", "Z", "view", -6),
            ("u6", "Z", "purchase", -1),
            ("u7", "Z", "purchase", -1),
            ("u1", "X", "view", -2),
        ]
    )


def test_covisit_recommends_what_was_viewed_with_the_users_recent_item():
    recs = CoVisitation(window_hours=24).fit(covisit_log(), NOW).recommend(["u1"], 3, NOW)
    got = rows_of(recs, "u1")
    assert [r["item_id"] for r in got] == ["Y", "Z", "X"]
    assert got[0]["reason"] == "often viewed with X (which you viewed 2 days ago)"
    assert got[0]["score"] > 0
    assert got[1]["reason"].startswith("popular lately") and got[1]["score"] == 0.0


def test_userknn_lists_own_items_then_what_similar_users_have():
    rows = [
        ("u1", "a", "purchase", -3.0),
        ("u1", "b", "purchase", -2.0),
        ("u2", "a", "purchase", -5.0),
        ("u2", "b", "purchase", -4.0),
        ("u2", "c", "purchase", -1.0),
        ("u3", "x", "purchase", -1.0),
        ("u3", "y", "purchase", -1.5),
        ("u4", "y", "purchase", -0.5),
    ]
    model = UserKNN(half_life_days=30.0, neighbours=1, alpha=0.7).fit(log(rows), NOW)
    got = rows_of(model.recommend(["u1", "u4"], 4, NOW), "u1")
    assert [r["item_id"] for r in got[:3]] == ["b", "a", "c"]  # own (b more recent), then the nearest user's c
    assert got[2]["reason"] == "shoppers who buy what you buy buy this"
    assert got[0]["reason"].startswith("you bought this")
    # One neighbour: u4's nearest user is u3 (the only one sharing y), so x comes next.
    u4 = rows_of(model.recommend(["u4"], 2, NOW), "u4")
    assert [r["item_id"] for r in u4] == ["y", "x"]
    pure = UserKNN(half_life_days=30.0, neighbours=1, alpha=1.0).fit(log(rows), NOW)
    assert rows_of(pure.recommend(["u1"], 3, NOW), "u1")[2]["reason"].startswith("popular")  # alpha 1: only one's own


def test_covisit_score_is_decayed_cosine():
    model = CoVisitation(window_hours=24, half_life_days=30.0, recency_half_life_days=7.0).fit(covisit_log(), NOW)
    h = 30.0
    pair = 3 * 2 ** ((-10 + 1 / 24) / h)  # three users, each pair once, aged by its later event
    pop_x = 3 * 2 ** (-10 / h) + 2 ** (-9 / h) + 2 ** (-2 / h)
    pop_y = 3 * 2 ** ((-10 + 1 / 24) / h)
    anchor = 2 ** (-2 / 7.0)
    score = rows_of(model.recommend(["u1"], 1, NOW), "u1")[0]["score"]
    assert score == pytest.approx(anchor * pair / math.sqrt(pop_x * pop_y))


def test_covisit_exclude_seen_and_pairs_are_counted_once_per_user():
    events = covisit_log()
    recs = CoVisitation(exclude_seen=True).fit(events, NOW).recommend(["u1"], 5, NOW)
    assert "X" not in lists(recs)["u1"]
    # u2 toggling between X and Y all session long counts as one co-visit, like any user.
    toggles = log([("u2", "X" if j % 2 else "Y", "view", -10 + j / 100) for j in range(10)])
    once = pa.concat_tables([events, toggles])
    a = CoVisitation().fit(events, NOW).recommend(["u1"], 1, NOW)
    b = CoVisitation().fit(once, NOW).recommend(["u1"], 1, NOW)
    assert lists(a) == lists(b) == {"u1": ["Y"]}


def test_covisit_window_and_normalization_options():
    events = covisit_log()
    wide = CoVisitation(window_hours=24 * 4, normalization="none").fit(events, NOW).recommend(["u1"], 2, NOW)
    got = rows_of(wide, "u1")
    assert [r["item_id"] for r in got] == ["Y", "Z"]  # Z is now a co-visit too, but only one user's
    assert got[1]["reason"] == "often viewed with X (which you viewed 2 days ago)"


# -- every baseline: the contract ----------------------------------------------------------
@pytest.mark.parametrize("name", BASELINES)
def test_cold_start_users_get_popularity_with_the_cold_start_reason(name):
    events = covisit_log()
    recs = MODELS[name]().fit(events, NOW).recommend(["stranger"], 2, NOW)
    got = rows_of(recs, "stranger")
    assert len(got) == 2
    assert all(r["reason"].startswith("new visitor: popular") for r in got)
    assert got[0]["item_id"] == "Z"  # two recent purchases: the most popular item lately or overall


@pytest.mark.parametrize("name", BASELINES)
def test_contract_on_a_simulated_shop(name, shop, shop_now):
    users = shop["user_id"].unique().to_pylist()[:50] + ["nobody", "u00003"]
    model = MODELS[name]()
    recs = model.fit(shop, shop_now).recommend(users, 7, shop_now)
    assert recs.schema == REC_SCHEMA
    check_contract(recs, users, 7)
    assert set(recs["item_id"].to_pylist()) <= set(shop["item_id"].to_pylist())


@pytest.mark.parametrize("name", BASELINES)
def test_no_peeking_events_after_now_change_nothing(name, shop, shop_now):
    users = shop["user_id"].unique().to_pylist()[:40] + ["nobody"]
    past = shop.filter(pc.less_equal(shop["timestamp"], pa.scalar(shop_now, pa.timestamp("us", tz="UTC"))))
    assert past.num_rows < shop.num_rows
    a = MODELS[name]().fit(shop, shop_now).recommend(users, 5, shop_now)
    b = MODELS[name]().fit(past, shop_now).recommend(users, 5, shop_now)
    assert a.equals(b)


@pytest.mark.parametrize("name", BASELINES)
def test_k_larger_than_the_catalogue_and_duplicate_requests(name):
    events = covisit_log()
    recs = MODELS[name]().fit(events, NOW).recommend(["u1", "u1", "nobody"], 50, NOW)
    assert recs["user_id"].to_pylist().count("u1") == 3  # the whole catalogue: X, Y, Z
    assert lists(recs).keys() == {"u1", "nobody"}
    for user in ("u1", "nobody"):
        assert [r["rank"] for r in rows_of(recs, user)] == list(range(1, len(rows_of(recs, user)) + 1))


def test_store_scans_naive_times_give_the_same_answer():
    events = covisit_log()
    naive = events.set_column(3, "timestamp", events["timestamp"].cast(pa.timestamp("us")))
    for name in BASELINES:
        a = MODELS[name]().fit(events, NOW).recommend(["u1", "x"], 3, NOW)
        b = MODELS[name]().fit(naive, NOW.replace(tzinfo=None)).recommend(["u1", "x"], 3, NOW.replace(tzinfo=None))
        assert a.equals(b), name


def test_empty_history_and_empty_requests():
    events = log([("u1", "A", "view", 5)])  # only a future event
    for name in BASELINES:
        model = MODELS[name]().fit(events, NOW)
        assert model.recommend(["u1"], 3, NOW).num_rows == 0
        assert model.recommend([], 3, NOW).schema == REC_SCHEMA


def test_errors_say_what_to_fix():
    with pytest.raises(DecayrecError, match="not fitted"):
        Popularity().recommend(["u1"], 3, NOW)
    model = Popularity().fit(covisit_log(), NOW)
    with pytest.raises(InputError, match="k must be"):
        model.recommend(["u1"], 0, NOW)
    with pytest.raises(InputError, match="null"):
        model.recommend(["u1", None], 3, NOW)
    with pytest.raises(InputError, match="not one string"):
        model.recommend("u1", 3, NOW)
    with pytest.raises(InputError, match="unknown event types"):
        Popularity(event_weights={"buy": 1.0}).fit(covisit_log(), NOW)
    with pytest.raises(InputError, match="half_life_days"):
        DecayedPopularity(half_life_days=0).fit(covisit_log(), NOW)
    with pytest.raises(InputError, match="fill"):
        RepeatHistory(fill="random").fit(covisit_log(), NOW)
    with pytest.raises(InputError, match="recent_items"):
        CoVisitation(recent_items=0).fit(covisit_log(), NOW)


# -- the registry ---------------------------------------------------------------------------
def test_registry_builds_models_by_name_with_defaults_stored_unchanged():
    assert set(MODELS) == {
        "popularity",
        "decayed_popularity",
        "repeat",
        "covisit",
        "userknn",
        "als",
        "bpr",
        "itemknn",
        "sequence",
    }
    model = make_model("decayed_popularity", half_life_days=3.0)
    assert model.name == "decayed_popularity" and model.half_life_days == 3.0
    assert repr(MODELS["repeat"]()) == (
        "RepeatHistory(half_life_days=30.0, event_weights=None, fill='decayed_popularity', fill_half_life_days=7.0)"
    )
    with pytest.raises(InputError, match="choose one of"):
        make_model("popular")
    with pytest.raises(InputError, match="bad parameters"):
        make_model("covisit", window=3)


# -- helpers ---------------------------------------------------------------------------------
def test_topk_rows_breaks_ties_by_column_and_skips_excluded():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [-np.inf, 5.0, -np.inf, -np.inf, -np.inf]])
    row, col, value = topk_rows(scores, 2)
    assert row.tolist() == [0, 0, 1] and col.tolist() == [1, 2, 1] and value.tolist() == [3.0, 3.0, 5.0]


def test_topk_sparse_rows_keeps_each_rows_best():
    import scipy.sparse as sp

    m = sp.csr_matrix(np.array([[0, 2.0, 1.0, 2.0], [3.0, 0, 0, 0]]))
    assert topk_sparse_rows(m, 2).toarray().tolist() == [[0, 2.0, 0, 2.0], [3.0, 0, 0, 0]]


def test_ago_words():
    days = np.array([0.0, 0.5 / 1440, 1 / 1440, 5 / 1440, 1 / 24, 3 / 24, 1.0, 1.99, 12.0])
    assert ago(days).to_pylist() == [
        "just now",
        "just now",
        "1 minute ago",
        "5 minutes ago",
        "1 hour ago",
        "3 hours ago",
        "1 day ago",
        "1 day ago",
        "12 days ago",
    ]
