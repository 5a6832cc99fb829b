"""Time splits: boundaries, evaluated users, truth flags, rolling and validation splits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from decayrec.errors import InputError
from decayrec.evaluate import TimeSplit, rolling_splits, time_split, validation_split
from decayrec.schema import COLUMNS
from decayrec.simulate import SimConfig, simulate

UTC = UTC
CUT = datetime(2024, 1, 10, tzinfo=UTC)


def make_events(rows: list[tuple[str, str, str, str]], tz: str | None = None) -> pa.Table:
    """Canonical events from (user, item, event, ISO time) rows; optional columns empty."""
    users, items, kinds, times = (list(c) for c in zip(*rows))
    stamps = [datetime.fromisoformat(t) for t in times]
    cols = {
        "user_id": pa.array(users),
        "item_id": pa.array(items),
        "event": pa.array(kinds),
        "timestamp": pa.array(stamps, pa.timestamp("us", tz=tz)),
    }
    n = len(rows)
    for name in COLUMNS[4:]:
        cols[name] = pa.nulls(n, pa.float64() if name in ("price", "quantity") else pa.string())
    return pa.table([cols[c] for c in COLUMNS], names=list(COLUMNS))


ROWS = [
    ("a", "x", "view", "2024-01-01T00:00:00"),
    ("a", "y", "purchase", "2024-01-10T00:00:00"),  # exactly at the cutoff: train
    ("a", "y", "view", "2024-01-10T00:00:01"),  # window: repeat
    ("a", "z", "purchase", "2024-01-12T00:00:00"),  # window: new
    ("a", "w", "view", "2024-01-17T00:00:00"),  # exactly at the window end: in
    ("a", "v", "view", "2024-01-17T00:00:01"),  # after the window: never read
    ("b", "x", "view", "2024-01-05T00:00:00"),  # history, nothing in the window
    ("c", "x", "purchase", "2024-01-11T00:00:00"),  # cold: window only
    ("d", "x", "cart", "2024-01-02T00:00:00"),
    ("d", "x", "view", "2024-01-13T00:00:00"),  # history, window view only
    ("d", "q", "view", "2024-01-13T00:00:00"),
    ("d", "q", "view", "2024-01-14T00:00:00"),  # the same pair twice: one truth row
]


def truth_rows(split: TimeSplit) -> list[tuple[str, str, bool]]:
    return [(r["user_id"], r["item_id"], r["repeat"]) for r in split.truth.to_pylist()]


def test_boundaries_users_and_truth():
    split = time_split(make_events(ROWS), CUT, 7)
    assert split.cutoff == CUT and split.window_end == CUT + timedelta(days=7)
    assert split.train.num_rows == 4  # a x, a y, b x, d x
    assert pc.max(split.train["timestamp"]).as_py() == datetime(2024, 1, 10)
    assert split.test.num_rows == 7  # a: y z w, c: x, d: x q q
    assert split.users.to_pylist() == ["a", "d"]
    assert truth_rows(split) == [
        ("a", "w", False),
        ("a", "y", True),
        ("a", "z", False),
        ("d", "q", False),
        ("d", "x", True),
    ]
    summary = split.summary()
    assert summary["users_active_in_window"] == 3 and summary["users_cold_in_window"] == 1
    assert summary["truth_pairs"] == 5 and summary["repeat_share"] == pytest.approx(2 / 5)


def test_purchase_only_and_relevant_types():
    events = make_events(ROWS)
    split = time_split(events, CUT, 7, purchase_only=True)
    assert split.relevant == ("purchase",)
    assert split.users.to_pylist() == ["a"]  # c is cold, d only viewed
    assert truth_rows(split) == [("a", "z", False)]
    same = time_split(events, CUT, 7, relevant=["buy"])  # aliases are accepted
    assert truth_rows(same) == truth_rows(split)
    views = time_split(events, CUT, 7, relevant=["view", "cart"])
    assert views.relevant == ("view", "cart")
    assert truth_rows(views) == [("a", "w", False), ("a", "y", True), ("d", "q", False), ("d", "x", True)]


def test_default_cutoff_is_last_event_minus_horizon():
    split = time_split(make_events(ROWS), horizon_days=7)
    assert split.cutoff == datetime(2024, 1, 10, 0, 0, 1, tzinfo=UTC)
    assert split.train.num_rows == 5


def test_aware_and_naive_inputs_agree():
    naive, aware = make_events(ROWS), make_events(ROWS, tz="UTC")
    a = time_split(naive, datetime(2024, 1, 10), 7)  # naive cutoff = UTC
    b = time_split(aware, CUT.astimezone(timezone(timedelta(hours=2))), 7)
    assert a.cutoff == b.cutoff == CUT
    assert a.truth.equals(b.truth) and a.users.equals(b.users)
    assert a.train.num_rows == b.train.num_rows


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cutoff": datetime(2023, 1, 1, tzinfo=UTC)},  # no history
        {"cutoff": datetime(2025, 1, 1, tzinfo=UTC)},  # empty window
        {"horizon_days": 0},
        {"relevant": ["scroll"]},
        {"relevant": []},
        {"relevant": ["view"], "purchase_only": True},
    ],
)
def test_bad_splits_say_how_to_fix(kwargs):
    args = {"cutoff": CUT, "horizon_days": 7.0} | kwargs
    with pytest.raises(InputError):
        time_split(make_events(ROWS), **args)


def test_empty_events():
    with pytest.raises(InputError):
        time_split(make_events(ROWS).slice(0, 0))


@pytest.fixture(scope="module")
def shop() -> pa.Table:
    return simulate(SimConfig(n_users=300, n_items=200, n_categories=8, days=60, seed=3)).events


def test_simulated_split_is_consistent(shop):
    split = time_split(shop, horizon_days=7)
    cut = split.cutoff
    assert pc.max(split.train["timestamp"]).as_py() <= cut
    assert pc.min(split.test["timestamp"]).as_py() > cut
    assert pc.max(split.test["timestamp"]).as_py() <= split.window_end
    assert split.train.num_rows + split.test.num_rows <= shop.num_rows
    # Truth checked against plain Python sets (small data: a loop is fine in a test).
    seen = set(zip(split.train["user_id"].to_pylist(), split.train["item_id"].to_pylist()))
    known = {u for u, _ in seen}
    window = set(zip(split.test["user_id"].to_pylist(), split.test["item_id"].to_pylist()))
    expected = sorted((u, i, (u, i) in seen) for u, i in window if u in known)
    assert truth_rows(split) == expected
    assert split.users.to_pylist() == sorted({u for u, _, _ in expected})
    assert 0 < split.summary()["repeat_share"] < 1  # the shop has both regimes


def test_rolling_splits_step_back_oldest_first(shop):
    splits = rolling_splits(shop, n=3, horizon_days=7, step_days=5)
    newest = time_split(shop, horizon_days=7)
    assert [s.cutoff for s in splits] == [newest.cutoff - timedelta(days=d) for d in (10, 5, 0)]
    for s in splits:
        assert pc.max(s.train["timestamp"]).as_py() <= s.cutoff
        assert s.horizon_days == 7
    tiled = rolling_splits(shop, n=2, horizon_days=7)
    assert tiled[1].cutoff - tiled[0].cutoff == timedelta(days=7)
    with pytest.raises(InputError):
        rolling_splits(shop, n=0)


def test_validation_split_stays_inside_training(shop):
    split = time_split(shop, horizon_days=7, purchase_only=True)
    val = validation_split(split)
    assert val.cutoff == split.cutoff - timedelta(days=7)
    assert val.relevant == ("purchase",) and val.horizon_days == 7
    assert pc.max(val.test["timestamp"]).as_py() <= split.cutoff
    assert pc.max(val.train["timestamp"]).as_py() <= val.cutoff
    assert val.train.num_rows + val.test.num_rows == split.train.num_rows
