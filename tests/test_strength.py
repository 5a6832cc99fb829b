"""Strength calibration: PAV against brute force, recovery of a known P(S), no peeking, time to fade."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from decayrec.decay.model import DecayModel, HalfLife
from decayrec.decay.strength import StrengthModel, _pav_stack, isotonic_fit, keyed_events, pav
from decayrec.errors import InputError
from decayrec.simulate import SimConfig, simulate

NOW = datetime(2024, 4, 20, tzinfo=UTC)


def make_decay(by_category: dict[str, float], global_days: float = 10.0, weights: dict | None = None) -> DecayModel:
    def hl(d: float) -> HalfLife:
        return HalfLife(d, d / 2, d * 2, d, 100, 100)

    return DecayModel(
        global_half_life=hl(global_days),
        by_category={c: hl(d) for c, d in by_category.items()},
        by_event={},
        weights=weights or {"view": 1.0, "click": 1.5, "cart": 3.0, "fav": 3.0, "purchase": 5.0},
        alpha_by_category={},
        alpha_global=0.0,
        point_events=("view", "click"),
        fitted_at=NOW,
    )


@pytest.fixture(scope="module")
def sim():
    s = simulate(SimConfig(n_users=400, n_items=300, n_categories=12, days=130, seed=3))
    decay = make_decay(s.truth["half_life_days"]["by_category"], weights=s.truth["event_weights"])
    return s, decay


# -- PAV -------------------------------------------------------------------------------------
def brute_isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The min-max formula: f_i = max_{j <= i} min_{k >= i} mean(y[j..k])."""
    cs, cw = np.r_[0.0, np.cumsum(y * w)], np.r_[0.0, np.cumsum(w)]
    n = y.size
    j, k = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(k >= j, (cs[k + 1] - cs[j]) / (cw[k + 1] - cw[j]), np.nan)
    return np.array([np.nanmax(np.nanmin(mean[: i + 1, i:], axis=1)) for i in range(n)])


def expand(start: np.ndarray, value: np.ndarray, n: int) -> np.ndarray:
    return np.repeat(value, np.diff(np.r_[start, n]))


def test_pav_textbook_example():
    y = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0])
    start, value = pav(y, np.ones(6))
    np.testing.assert_allclose(expand(start, value, 6), [1, 2.5, 2.5, 3.5, 3.5, 5])


def test_pav_matches_brute_force_on_random_weighted_inputs():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 40))
        y = rng.integers(0, 2, n).astype(float) if trial % 2 else rng.normal(size=n)
        w = rng.integers(1, 5, n).astype(float)
        start, value = pav(y * w, w)
        np.testing.assert_allclose(expand(start, value, n), brute_isotonic(y, w), rtol=1e-12, atol=1e-12)
        assert np.all(np.diff(value) > 0)


@pytest.mark.parametrize("kind", ["bernoulli", "staircase", "wiggle"])
def test_vectorised_passes_agree_with_the_classic_stack(kind):
    rng = np.random.default_rng(1)
    n = 50_000
    if kind == "bernoulli":
        x = np.sort(rng.exponential(size=n))
        y = (rng.random(n) < 1 - np.exp(-x)).astype(float)
    elif kind == "staircase":  # one huge early value: merges creep one block per pass
        y = np.r_[1e7, np.arange(n - 1.0)]
    else:
        y = np.sin(np.arange(n) / 300) + rng.normal(size=n)
    w = rng.integers(1, 3, n).astype(float)
    start, value = pav(y * w, w)
    first, s, ws = _pav_stack((y * w).tolist(), w.tolist())
    np.testing.assert_array_equal(start, first)
    np.testing.assert_allclose(value, s / ws, rtol=1e-9)


def test_isotonic_fit_gives_ties_one_value_and_is_monotone():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 50, 2000).astype(float)
    y = (rng.random(2000) < x / 60).astype(float)
    thresholds, values = isotonic_fit(x, y)
    assert np.all(np.diff(thresholds) > 0)
    assert np.all(np.diff(values) >= 0)
    fitted = np.interp(x, thresholds, values)
    for v in np.unique(x):  # the fit at a tie equals the pooled block mean, so it is one number
        assert np.ptp(fitted[x == v]) == 0
    # Block means are preserved: the fit sums to the labels.
    assert fitted.sum() == pytest.approx(y.sum(), rel=1e-9)


def test_isotonic_fit_rejects_bad_input():
    with pytest.raises(ValueError):
        isotonic_fit(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError):
        isotonic_fit(np.zeros(3), np.zeros(2))


# -- recovering a known P(S) -------------------------------------------------------------------
def test_recovers_a_known_probability_of_engagement():
    rng = np.random.default_rng(4)
    s = rng.lognormal(0.0, 1.5, 300_000)
    truth = lambda v: 1 - np.exp(-0.3 * v)  # noqa: E731
    labels = rng.random(s.size) < truth(s)
    model = StrengthModel().fit_pairs(s, labels)
    grid = np.quantile(s, np.linspace(0.02, 0.98, 25))
    np.testing.assert_allclose(model.predict(grid), truth(grid), atol=0.03)
    assert np.all(np.diff(model.predict(np.sort(rng.lognormal(0, 3, 5000)))) >= 0)
    # Observed frequencies in each reliability bin match the mean prediction (in-sample).
    table = model.reliability_table(s, labels, bins=10).to_pylist()
    for row in table:
        if row["count"] > 2000:
            assert row["observed_rate"] == pytest.approx(row["mean_predicted"], abs=0.02)
    assert sum(r["count"] for r in table) == s.size
    assert model.brier_score(s, labels) < np.mean((labels - labels.mean()) ** 2)


# -- time to fade ----------------------------------------------------------------------------------
def test_time_to_fade_lands_exactly_on_the_threshold():
    rng = np.random.default_rng(5)
    s = rng.lognormal(0.0, 1.5, 100_000)
    model = StrengthModel(faded_threshold=0.2).fit_pairs(s, rng.random(s.size) < 1 - np.exp(-0.3 * s))
    star = model.fade_level_
    assert model.predict(star) == pytest.approx(0.2, abs=1e-12)
    values = np.array([star * 1.001, star * 3, star * 40, 100.0])
    h = np.array([0.5, 7.0, 30.0, 90.0])
    tau = model.time_to_fade(values, h)
    assert np.all(tau > 0)
    np.testing.assert_allclose(model.predict(values * 2.0 ** (-tau / h)), 0.2, atol=1e-9)
    np.testing.assert_allclose(tau, h * np.log2(values / star), rtol=1e-12)
    # Already faded: zero; at exactly S*, zero too; faded() agrees with S < S*.
    below = np.array([0.0, star / 2, star * 0.999])
    assert np.all(model.time_to_fade(below, 7.0) == 0)
    assert np.all(model.faded(model.predict(below)))
    assert not model.faded(model.predict(star * 1.001))
    assert model.time_to_fade(values, 7.0).shape == (4,)  # broadcasts a scalar half-life


def test_time_to_fade_is_infinite_over_a_baseline_and_zero_when_nothing_is_live():
    s = np.r_[np.full(100, 0.1), np.full(100, 10.0)]
    base = StrengthModel(faded_threshold=0.05).fit_pairs(s, np.r_[np.arange(100) < 20, np.arange(100) < 80])
    assert base.fade_level_ == 0.0 and base.predict(0.0) == pytest.approx(0.2)
    assert np.all(np.isinf(base.time_to_fade(np.array([0.0, 1.0, 50.0]), 7.0)))
    dead = StrengthModel(faded_threshold=0.5).fit_pairs(s, np.r_[np.arange(100) < 1, np.arange(100) < 30])
    assert dead.fade_level_ == math.inf
    assert np.all(dead.time_to_fade(np.array([0.1, 1e6]), 7.0) == 0)


# -- fitting on events ---------------------------------------------------------------------------------
def test_fit_on_simulated_events_is_calibrated_out_of_sample(sim):
    s, decay = sim
    model = StrengthModel(horizon_days=7.0, n_anchors=5).fit(s.events, decay, NOW)
    assert np.all(np.diff(model.probabilities_) >= 0)
    assert model.n_pairs_ > 1000 and model.n_holdout_ > 200
    assert model.brier_ < model.brier_base_rate_  # S carries signal beyond the base rate
    for row in model.reliability_.to_pylist():
        if row["count"] >= 300:
            assert row["observed_rate"] == pytest.approx(row["mean_predicted"], abs=0.06)
    assert model.anchors_[0] == "2024-04-13T00:00:00Z" and len(model.anchors_) == 5


def test_training_pairs_respect_anchors_and_labels(sim):
    s, decay = sim
    model = StrengthModel(horizon_days=10.0, n_anchors=3)
    pairs = model.training_pairs(s.events, decay, NOW)
    anchors = pairs.column("anchor").to_pylist()
    assert max(anchors) == NOW - timedelta(days=10) and min(anchors) == NOW - timedelta(days=30)
    assert all(v > 0 for v in pairs.column("interest").to_pylist())
    # Spot-check labels against the raw log: an event of u in c in (anchor, anchor + 10 d].
    ev = s.events.to_pylist()
    by_pair: dict[tuple[str, str], list[datetime]] = {}
    for e in ev:
        by_pair.setdefault((e["user_id"], e["category_id"]), []).append(e["timestamp"])
    rows = pairs.to_pylist()
    for row in rows[:: max(1, len(rows) // 300)]:
        times = by_pair[(row["user_id"], row["category_id"])]
        a = row["anchor"]
        assert row["label"] == any(a < t <= a + timedelta(days=10) for t in times)
        assert any(t <= a for t in times)


def test_events_after_now_do_not_change_the_fit(sim):
    s, decay = sim
    base = StrengthModel().fit(s.events, decay, NOW).to_json_dict()
    ts = s.events.column("timestamp").cast(pa.int64()).to_numpy()
    now_us = int(NOW.timestamp() * 1_000_000)
    # Events after now are moved; every other row is untouched. Then more future rows are added.
    moved = np.where(ts > now_us, ts + 86_400_000_000 * 3, ts)
    changed = s.events.set_column(3, "timestamp", pa.array(moved, pa.timestamp("us", tz="UTC")))
    future = s.events.slice(0, 500).set_column(3, "timestamp", pa.array(np.full(500, now_us + 1), pa.timestamp("us", tz="UTC")))
    assert (ts > now_us).any()
    again = StrengthModel().fit(pa.concat_tables([changed, future]), decay, NOW).to_json_dict()
    assert again == base


def test_naive_timestamps_read_as_utc(sim):
    s, decay = sim
    naive = s.events.set_column(3, "timestamp", s.events.column("timestamp").cast(pa.timestamp("us")))
    a = StrengthModel(level="item").fit(s.events, decay, NOW)
    b = StrengthModel(level="item").fit(naive, decay, NOW.replace(tzinfo=None))
    np.testing.assert_array_equal(a.thresholds_, b.thresholds_)


def test_json_round_trip_predicts_the_same(sim):
    s, decay = sim
    model = StrengthModel(level="item", faded_threshold=0.1).fit(s.events, decay, NOW)
    doc = json.loads(json.dumps(model.to_json_dict(), allow_nan=False))
    back = StrengthModel.from_json_dict(doc)
    probe = np.geomspace(1e-6, 100, 200)
    np.testing.assert_array_equal(back.predict(probe), model.predict(probe))
    np.testing.assert_array_equal(back.time_to_fade(probe, 7.0), model.time_to_fade(probe, 7.0))
    assert back.level == "item" and back.brier_ == model.brier_
    assert back.reliability_.equals(model.reliability_)
    with pytest.raises(InputError):
        StrengthModel.from_json_dict({"format": "something else"})
    with pytest.raises(InputError, match="malformed"):
        StrengthModel.from_json_dict({**doc, "params": {**doc["params"], "horizon": 3}})


def test_item_level_uses_the_items_category_half_life():
    t = pa.array([datetime(2024, 4, 1, tzinfo=UTC)] * 3, pa.timestamp("us", tz="UTC"))
    events = pa.table(
        {
            "user_id": ["u", "u", "u"],
            "item_id": ["i1", "i1", "i2"],
            "event": ["view", "view", "view"],
            "timestamp": t,
            "category_id": [None, "A", None],
        }
    )
    ke = keyed_events(events, make_decay({"A": 3.0}, global_days=9.0), "item", NOW)
    np.testing.assert_array_equal(ke.key_half_life, [3.0, 9.0])  # i1 -> A, i2 unknown -> pooled


def test_bad_parameters_and_unfitted_use_say_how_to_fix(sim):
    s, decay = sim
    for params in ({"n_anchors": 1}, {"horizon_days": 0}, {"faded_threshold": 1.5}, {"level": "user"}):
        with pytest.raises(InputError):
            StrengthModel(**params).fit(s.events, decay, NOW)
    with pytest.raises(InputError, match="not fitted"):
        StrengthModel().predict([1.0])
    with pytest.raises(InputError, match="no category was engaged again"):
        StrengthModel().fit(s.events, decay, datetime(2024, 1, 2, tzinfo=UTC))
