"""The synthetic shop: determinism, the canonical table, and that events follow the truth."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from decayrec.schema import EVENT_TYPES
from decayrec.simulate import SimConfig, Simulation, season_by_day, simulate
from decayrec.simulate.shop import COLUMNS

US_PER_DAY = 86_400_000_000
SMALL = SimConfig(n_users=150, n_categories=6, n_items=120, days=120.0, seed=3)
# Many users, few categories: enough events per category to pin down its half-life.
LARGE = SimConfig(n_users=500, n_categories=5, n_items=80, days=180.0, half_life_range_days=(1.0, 40.0), seed=11)


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(SMALL)


def _us(iso: str) -> int:
    return int(np.datetime64(iso.removesuffix("Z"), "us").astype(np.int64))


def _col(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.int64()).to_numpy()
    return column.to_numpy(zero_copy_only=False)


def _pair_keys(table: pa.Table) -> np.ndarray:
    users, items = _col(table, "user_id").astype(str), _col(table, "item_id").astype(str)
    return np.char.add(np.char.add(users, "|"), items)


# ----------------------------------------------------------------------------- config, determinism


def test_config_is_strict_and_frozen() -> None:
    with pytest.raises(ValidationError):
        SimConfig(n_user=10)
    with pytest.raises(ValidationError, match="n_items"):
        SimConfig(n_items=3, n_categories=5)
    with pytest.raises(ValidationError, match="event_weights"):
        SimConfig(event_weights={"view": 1.0})
    with pytest.raises(ValidationError):
        SimConfig().seed = 2  # type: ignore[misc]


def test_same_seed_gives_identical_events_other_seed_differs(sim: Simulation) -> None:
    again = simulate(SMALL)
    assert again.events.equals(sim.events)
    assert json.dumps(again.truth) == json.dumps(sim.truth)
    other = simulate(SMALL.model_copy(update={"seed": 4}))
    assert not other.events.equals(sim.events)


def test_default_config_volume() -> None:
    events = simulate().events
    assert 100_000 <= events.num_rows <= 300_000
    assert pc.count_distinct(events.column("user_id")).as_py() > 1_500


# ----------------------------------------------------------------------------- the table


def test_canonical_columns_types_and_order(sim: Simulation) -> None:
    events = sim.events
    assert events.column_names == list(COLUMNS)
    assert "event_id" not in COLUMNS and "rec_id" not in COLUMNS
    assert events.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    for name in ("user_id", "item_id", "event", "category_id", "session_id"):
        assert events.schema.field(name).type == pa.string()
    for name in ("price", "quantity"):
        assert events.schema.field(name).type == pa.float64()
    assert events.num_rows > 1_000 and sum(column.null_count for column in events.columns) == 0
    assert set(_col(events, "event")) == set(EVENT_TYPES)
    assert all(re.fullmatch(r"u\d{5}", u) for u in set(_col(events, "user_id")))
    assert all(re.fullmatch(r"i\d{4}", i) for i in set(_col(events, "item_id")))
    assert all(re.fullmatch(r"c\d{2}", c) for c in set(_col(events, "category_id")))
    keys = list(zip(_col(events, "timestamp").tolist(), _col(events, "user_id"), _col(events, "item_id")))
    assert keys == sorted(keys)
    assert (_col(events, "price") > 0).all()
    quantity = _col(events, "quantity")
    assert set(quantity.tolist()) <= {1.0, 2.0, 3.0}
    assert (quantity[_col(events, "event") != "purchase"] == 1.0).all()


def test_an_empty_shop_still_has_the_canonical_table(tmp_path) -> None:
    sim = simulate(SimConfig(n_users=1, n_categories=1, n_items=1, days=0.5, episodes_per_day=1e-9))
    assert sim.events.num_rows == 0 and sim.events.column_names == list(COLUMNS)
    assert sim.events.schema == simulate(SMALL).events.schema
    csv_path, _ = sim.write(tmp_path)
    assert csv_path.read_text(encoding="utf-8").splitlines() == [",".join(COLUMNS)]


def test_items_keep_their_category_and_price(sim: Simulation) -> None:
    items = sim.truth["items"]
    rows = zip(_col(sim.events, "item_id"), _col(sim.events, "category_id"), _col(sim.events, "price"))
    for item, category, price in rows:
        assert items[item]["category_id"] == category and items[item]["price"] == price


def test_sessions_split_at_thirty_minute_gaps(sim: Simulation) -> None:
    events = sim.events.sort_by([("user_id", "ascending"), ("timestamp", "ascending")])
    user, ts, session = _col(events, "user_id"), _col(events, "timestamp"), _col(events, "session_id")
    assert all(s.startswith(u + "-") for u, s in zip(user, session))
    same_user = user[1:] == user[:-1]
    new_session = session[1:] != session[:-1]
    long_gap = np.diff(ts) > 30 * 60 * 1_000_000
    assert (new_session[same_user] == long_gap[same_user]).all()
    first = np.r_[True, ~same_user]
    assert all(s.endswith("-0001") for s in session[first])


# ----------------------------------------------------------------------------- the truth holds


def test_no_events_before_signup_after_lapse_or_before_release(sim: Simulation) -> None:
    truth = sim.truth
    assert set(truth["users"]) == {f"u{i:05d}" for i in range(SMALL.n_users)}
    end = _us(truth["end"])
    ts = _col(sim.events, "timestamp")
    assert ts.min() >= _us(truth["start"]) and ts.max() < end
    signup = np.array([_us(truth["users"][u]["signup"]) for u in _col(sim.events, "user_id")])
    lapse = np.array([_us(truth["users"][u]["lapse"] or truth["end"]) for u in _col(sim.events, "user_id")])
    release = np.array([_us(truth["items"][i]["release"]) for i in _col(sim.events, "item_id")])
    assert (ts >= signup).all() and (ts <= lapse).all() and (ts >= release).all()
    lapsed = [u for u, v in truth["users"].items() if v["lapse"] is not None]
    late = [u for u, v in truth["users"].items() if v["signup"] != truth["start"]]
    assert 0 < len(lapsed) < SMALL.n_users and 0 < len(late) < SMALL.n_users
    assert any(_us(v["release"]) > _us(truth["start"]) for v in truth["items"].values())


def test_every_cart_fav_and_purchase_follows_a_view_or_click_of_the_item(sim: Simulation) -> None:
    """The rule: each cart, fav or purchase of (user, item) has a view or click of the same
    (user, item) at or before its time (re-buys follow the purchase that followed one)."""
    events = sim.events
    key, ts, kind = _pair_keys(events), _col(events, "timestamp"), _col(events, "event")
    first_look: dict[str, int] = {}
    for k, t in zip(key[np.isin(kind, ["view", "click"])], ts[np.isin(kind, ["view", "click"])]):
        first_look.setdefault(k, t)  # events are sorted by time
    later = ~np.isin(kind, ["view", "click"])
    assert later.sum() > 100
    assert all(k in first_look and first_look[k] <= t for k, t in zip(key[later], ts[later]))


def test_consumables_are_rebought_around_their_cycle_others_never() -> None:
    sim = simulate(SimConfig(n_users=300, n_categories=6, n_items=100, seed=5))
    purchases = sim.events.filter(pc.equal(sim.events.column("event"), "purchase"))
    key, ts, category = _pair_keys(purchases), _col(purchases, "timestamp"), _col(purchases, "category_id")
    order = np.lexsort((ts, key))
    key, ts, category = key[order], ts[order], category[order]
    again = key[1:] == key[:-1]
    gap_days = np.diff(ts) / US_PER_DAY
    cycles = sim.truth["consumable_cycles_days"]
    assert len(cycles) == 2  # round(0.3 * 6)
    for c in set(sim.truth["half_life_days"]["by_category"]):
        mine = category[1:] == c
        if c not in cycles:
            assert not (again & mine).any(), f"non-consumable {c} re-bought"
            continue
        repeated = len(set(key[1:][again & mine])) / len(set(key[category == c]))
        assert repeated > 0.4
        assert 0.6 * cycles[c] < np.median(gap_days[again & mine]) < 1.2 * cycles[c]


def test_season_has_mean_one_and_weekends_higher() -> None:
    season = season_by_day(SMALL)
    assert len(season) == 120 and math.isclose(season.mean(), 1.0, rel_tol=1e-5)
    # 2024-01-06 and -07 (days 5, 6) are a weekend; -08 (day 7) a Monday.
    assert season[5] > season[4] and season[6] > season[7]


def _hawkes_loglik(sim: Simulation, category: str, h: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Exact log-likelihood of the view/click points of every user in ``category`` under
    lambda(t) = season(t) mu + alpha S(t), S over all events; mu from the truth."""
    truth = sim.truth
    weights, season = truth["event_weights"], np.array(truth["season_by_day"])
    start, end = _us(truth["start"]), (_us(truth["end"]) - _us(truth["start"])) / US_PER_DAY
    events = sim.events.filter(pc.equal(sim.events.column("category_id"), category))
    user, kind = _col(events, "user_id"), _col(events, "event")
    t = (_col(events, "timestamp") - start) / US_PER_DAY
    w = np.array([weights[k] for k in kind])
    point = np.isin(kind, ["view", "click"])
    season_cum = np.r_[0.0, np.cumsum(season)]

    def season_integral(a: float, b: float) -> float:
        def upto(x: float) -> float:
            day = min(int(x), len(season) - 1)
            return season_cum[day] + (x - day) * season[day]

        return upto(b) - upto(a)

    loglik = np.zeros(np.broadcast(h, alpha).shape)
    for uid, baseline in truth["baseline_per_day"].items():
        if category not in baseline:
            continue
        mu, info = baseline[category], truth["users"][uid]
        t0 = (_us(info["signup"]) - start) / US_PER_DAY
        t1 = (_us(info["lapse"]) - start) / US_PER_DAY if info["lapse"] else end
        loglik -= mu * season_integral(t0, t1)
        mine = np.flatnonzero(user == uid)
        s, last = 0.0, t0
        for k in mine:
            s = s * np.exp2(-(t[k] - last) / h)
            last = t[k]
            if point[k]:
                loglik += np.log(season[int(t[k])] * mu + alpha * s)
            s = s + w[k]
        for k in mine:
            loglik -= alpha * w[k] * h / math.log(2) * (1 - np.exp2(-(t1 - t[k]) / h))
    return loglik


def test_hawkes_likelihood_peaks_at_the_true_half_lives() -> None:
    """The events follow the stated process: the exact point-process likelihood, profiled
    over h on a fixed grid with mu and alpha at the truth, peaks within 25% of every
    category's true half-life; maximised over (h, alpha) jointly it shows no bias.
    (Across 20 seeds of this config, 2 of 100 categories missed the 25%: sd of log ratio 0.06.)"""
    sim = simulate(LARGE)
    half_lives, alphas = sim.truth["half_life_days"]["by_category"], sim.truth["alpha"]
    assert max(half_lives.values()) / min(half_lives.values()) > 5
    h_grid = np.geomspace(0.3, 150.0, 91)
    alpha_grid = np.geomspace(1e-4, 1.0, 41)
    joint_ratios = []
    for category, true_h in half_lives.items():
        profile = _hawkes_loglik(sim, category, h_grid, alphas[category])
        best = h_grid[np.argmax(profile)]
        assert abs(best / true_h - 1) < 0.25, (category, true_h, best)
        joint = _hawkes_loglik(sim, category, h_grid[:, None], alpha_grid[None, :])
        joint_ratios.append(h_grid[np.unravel_index(np.argmax(joint), joint.shape)[0]] / true_h)
    assert abs(np.log(joint_ratios).mean()) < 0.2, joint_ratios


# ----------------------------------------------------------------------------- files


def test_write_round_trip(sim: Simulation, tmp_path) -> None:
    csv_path, truth_path = sim.write(tmp_path / "out")
    assert (csv_path.name, truth_path.name) == ("events.csv", "truth.json")
    text = csv_path.read_text(encoding="utf-8")
    assert text.startswith(",".join(COLUMNS) + "\n") and '"' not in text
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == list(COLUMNS)
    assert len(rows) - 1 == sim.events.num_rows
    stamp = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")
    assert all(stamp.fullmatch(row[3]) for row in rows[1:])
    assert [_us(row[3]) for row in rows[1:]] == _col(sim.events, "timestamp").tolist()
    assert [row[0] for row in rows[1:]] == _col(sim.events, "user_id").tolist()
    assert [float(row[5]) for row in rows[1:]] == _col(sim.events, "price").tolist()
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    assert truth == json.loads(json.dumps(sim.truth))
    assert SimConfig(**truth["config"]) == SMALL
