"""Simulator presets: each shop looks like the kind of log it stands for, and writes its truth."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from decayrec.errors import InputError
from decayrec.simulate import PRESETS, preset, simulate, simulate_preset

pytestmark = pytest.mark.slow  # make test-fast leaves this module out

US_PER_DAY = 86_400_000_000
SMALL = {"n_users": 400, "seed": 1}


def _micros(events: pa.Table) -> np.ndarray:
    return events["timestamp"].cast(pa.int64()).to_numpy()


def _pair_repeats(events: pa.Table) -> float:
    pairs = events.group_by(["user_id", "item_id"]).aggregate([("event", "count")])
    return float(np.mean(pairs["event_count"].to_numpy() > 1))


@pytest.fixture(scope="module")
def shops():
    return {name: simulate_preset(name, **SMALL) for name in PRESETS}


def test_every_preset_is_deterministic_and_writes_its_truth(shops, tmp_path):
    for name, sim in shops.items():
        assert sim.events.num_rows > 500, name
        again = simulate_preset(name, **SMALL)
        assert again.events.equals(sim.events), name
        csv_path, truth_path = sim.write(tmp_path / name)
        truth = json.loads(truth_path.read_text())
        assert truth["config"]["n_users"] == 400 and truth["half_life_days"]["by_category"], name
        assert csv_path.read_text().splitlines()[0].startswith("user_id,item_id,event,timestamp")


def test_grocery_is_purchases_in_baskets_that_repeat(shops):
    ev = shops["grocery"].events
    assert set(ev["event"].to_pylist()) == {"purchase"}
    per_trip = ev.group_by(["user_id", "timestamp"]).aggregate([("item_id", "count")])["item_id_count"].to_numpy()
    assert per_trip.mean() > 2.0  # several items a trip
    assert _pair_repeats(ev) > 0.4  # items are bought again


def test_fashion_is_discovery(shops):
    ev = shops["fashion"].events
    bought = ev.filter(pc.equal(ev["event"], "purchase"))
    assert _pair_repeats(bought) == 0.0  # nobody buys an item twice
    assert {"view", "cart", "purchase"} <= set(ev["event"].to_pylist())


def test_reviews_are_sparse_day_resolution_purchases_without_repeats(shops):
    ev = shops["reviews"].events
    assert set(ev["event"].to_pylist()) == {"purchase"}
    assert np.all(_micros(ev) % US_PER_DAY == 0)
    assert _pair_repeats(ev) == 0.0
    per_user = ev.group_by("user_id").aggregate([("item_id", "count")])["item_id_count"].to_numpy()
    assert np.median(per_user) <= 6


def test_sessions_never_come_back(shops):
    ev = shops["sessions"].events
    assert ev["user_id"].equals(ev["session_id"])
    t = _micros(ev)
    span = ev.append_column("t", pa.array(t)).group_by("user_id").aggregate([("t", "min"), ("t", "max")])
    assert np.all(span["t_max"].to_numpy() - span["t_min"].to_numpy() < US_PER_DAY)


def test_purchases_only_with_little_history(shops):
    sim = shops["purchases"]
    assert set(sim.events["event"].to_pylist()) == {"purchase"}
    assert sim.config.days == 273.0 and sim.config.time_resolution == "day"


def test_presets_take_changes_and_unknown_names_say_which_exist():
    assert preset("grocery", n_users=10).n_users == 10
    with pytest.raises(InputError, match="grocery"):
        preset("bakery")
    with pytest.raises(Exception):
        preset("grocery", not_a_field=1)


def test_observing_changes_what_is_written_not_what_happened():
    base = simulate(preset("default", n_users=150, seed=5))
    bought = simulate(preset("default", n_users=150, seed=5, observe="purchases"))
    purchases = base.events.filter(pc.equal(base.events["event"], "purchase"))
    assert bought.events.num_rows == purchases.num_rows
    assert bought.truth["half_life_days"] == base.truth["half_life_days"]
