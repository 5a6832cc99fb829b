"""Learned half-lives: recovery of the simulator's truth, no peeking, DECAY.json, held-out likelihood."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from decayrec.decay.config import FitConfig
from decayrec.decay.fit import fit_decay
from decayrec.decay.heldout import heldout_loglik
from decayrec.decay.model import DecayModel
from decayrec.errors import InputError
from decayrec.simulate import SimConfig, simulate
from decayrec.timeparse import parse_time

pytestmark = pytest.mark.slow  # make test-fast leaves this module out


@pytest.fixture(scope="module")
def shop():
    sim = simulate(SimConfig(n_users=2000, seed=0))
    return sim, parse_time(sim.truth["end"])


@pytest.fixture(scope="module")
def fitted(shop):
    sim, end = shop
    return fit_decay(sim.events, end, FitConfig(fit_by_event=False))


def test_recovers_the_true_half_lives(shop, fitted):
    """Categories whose events follow the decay model (no scheduled re-buys) and have >= 1,000 points."""
    sim, _ = shop
    truth = sim.truth["half_life_days"]["by_category"]
    consumable = set(sim.truth["consumable_cycles_days"])
    errors = [
        abs(fitted.by_category[c].days - h) / h
        for c, h in truth.items()
        if c not in consumable and fitted.by_category[c].points >= 1000
    ]
    assert len(errors) >= 15
    assert np.median(errors) <= 0.10
    # short half-lives are pinned down tightly
    short = [c for c, h in truth.items() if h < 3 and c not in consumable]
    assert all(abs(fitted.by_category[c].days / truth[c] - 1) < 0.15 for c in short)
    # the 95% intervals cover the truth at about their rate (20 of 21 on this shop; 17 is 81%)
    plain = [c for c in truth if c not in consumable]
    inside = [fitted.by_category[c].low <= truth[c] <= fitted.by_category[c].high for c in plain]
    assert np.mean(inside) >= 0.85


def test_intervals_bracket_the_estimates(fitted):
    for hl in fitted.by_category.values():
        assert hl.low <= hl.days <= hl.high
    g = fitted.global_half_life
    assert g.low < g.days < g.high and g.high / g.low < 1.5  # 160k events pin the pooled value


def test_event_weights_follow_the_truth(shop, fitted):
    sim, _ = shop
    w, truth = fitted.weights, sim.truth["event_weights"]
    assert max(w.values()) == 1.0
    assert w["click"] / w["view"] == pytest.approx(truth["click"] / truth["view"], rel=0.2)
    # carts, favourites and purchases say more than views and clicks
    assert min(w["cart"], w["fav"], w["purchase"]) > 1.5 * w["click"]


def test_no_peeking_past_now(shop):
    sim, _end = shop
    small = sim.events.slice(0, 40_000)
    now = small["timestamp"][-1].as_py() - timedelta(days=3)
    config = FitConfig(fit_by_event=False, grid_points=9, em_iterations=15)
    base = fit_decay(small, now, config)
    later = small.filter(pa.compute.greater(small["timestamp"], pa.scalar(now, small["timestamp"].type)))
    assert later.num_rows > 0
    # rewrite everything after `now` (other users, events, times): the fit must not change
    scrambled = later.set_column(0, "user_id", pa.array(["intruder"] * later.num_rows))
    changed = pa.concat_tables(
        [small.filter(pa.compute.less_equal(small["timestamp"], pa.scalar(now, small["timestamp"].type))), scrambled]
    )
    again = fit_decay(changed, now, config)
    a, b = base.to_json_dict(), again.to_json_dict()
    a["diagnostics"].pop("seconds"), b["diagnostics"].pop("seconds")
    assert a == b


def test_decay_json_contract_and_round_trip(fitted, tmp_path):
    path = tmp_path / "DECAY.json"
    fitted.save(path)
    doc = json.loads(path.read_text())
    assert set(doc["half_life_days"]["by_category"]) == set(fitted.by_category)
    assert isinstance(doc["half_life_days"]["by_event"], dict)
    assert doc["fitted_at"].endswith("Z")
    assert all(v > 0 for v in doc["half_life_days"]["by_category"].values())
    assert DecayModel.load(path) == fitted


def test_bad_decay_json_is_a_clear_error(tmp_path):
    path = tmp_path / "DECAY.json"
    path.write_text('{"half_life_days": {}}')
    with pytest.raises(InputError, match="fit-decay"):
        DecayModel.load(path)


def test_by_event_half_lives_are_fitted(shop):
    sim, _end = shop
    small = sim.events.slice(0, 30_000)
    model = fit_decay(small, small["timestamp"][-1].as_py(), FitConfig(grid_points=9, em_iterations=15))
    assert set(model.by_event) == {"view", "click", "cart", "fav", "purchase"}
    assert all(0.04 <= hl.days <= 365 for hl in model.by_event.values())


def test_learned_half_lives_predict_the_next_window_better_than_fixed_ones(shop):
    sim, end = shop
    cutoff = end - timedelta(days=14)
    model = fit_decay(sim.events, cutoff, FitConfig(fit_by_event=False, grid_points=9, em_iterations=20))
    learned = {k: v.days for k, v in model.by_category.items()} | {"__global__": model.global_half_life.days}
    scores = {
        name: heldout_loglik(sim.events, cutoff, 14, h, model.weights, name=name).per_point
        for name, h in [("learned", learned), ("7d", 7.0), ("30d", 30.0)]
    }
    assert scores["learned"] > scores["7d"] and scores["learned"] > scores["30d"]


def test_too_little_history_is_an_input_error():
    table = pa.table(
        {
            "user_id": ["a", "b"],
            "item_id": ["i", "j"],
            "event": ["view", "view"],
            "timestamp": pa.array(np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[us]"), pa.timestamp("us")),
            "category_id": ["c", "c"],
        }
    )
    with pytest.raises(InputError, match="too few"):
        fit_decay(table, parse_time("2020-02-01"))


def test_next_window_objective_chooses_half_lives_by_forecasting(shop):
    sim, _end = shop
    small = sim.events.slice(0, 60_000)
    now = small["timestamp"][-1].as_py()
    model = fit_decay(
        small, now, FitConfig(objective="next_window", validation_days=10, fit_by_event=False, grid_points=9, em_iterations=15)
    )
    assert all(hl.low <= hl.days <= hl.high for hl in model.by_category.values())
    truth = sim.truth["half_life_days"]["by_category"]
    short = [c for c, h in truth.items() if h < 1.5 and c not in sim.truth["consumable_cycles_days"]]
    # fast-fading categories still read as fast-fading when chosen for forecasting
    assert all(model.by_category[c].days < 5 for c in short)
    with pytest.raises(InputError, match="validation_days"):
        fit_decay(small, now, FitConfig(objective="next_window", validation_days=1e-7, grid_points=5, em_iterations=5))


def _day_resolution_hawkes(
    seed: int, n_seq: int = 3000, days: float = 2000.0, half_life=20.0, branching: float = 0.5, immigrants: float = 2.0
):
    """A self-exciting log with one event type and timestamps floored to whole days (like review logs).

    Each sequence is one user; ``half_life`` is one value or one per user."""
    rng = np.random.default_rng(seed)
    h_seq = np.broadcast_to(np.asarray(half_life, dtype=float), (n_seq,))
    mu = rng.gamma(0.5, 1.0 / 0.5, n_seq) * immigrants / days  # about `immigrants` immigrant events per sequence
    n_imm = rng.poisson(mu * days)
    seq = np.repeat(np.arange(n_seq), n_imm)
    t = rng.uniform(0.0, days, seq.size)
    all_seq, all_t = [seq], [t]
    while seq.size:  # each event begets Poisson(branching) children at exponential delays
        kids = rng.poisson(branching, seq.size)
        seq = np.repeat(seq, kids)
        t = np.repeat(t, kids) + rng.exponential(h_seq[seq] / np.log(2.0), seq.size)
        keep = t < days
        seq, t = seq[keep], t[keep]
        all_seq.append(seq)
        all_t.append(t)
    seq, t = np.concatenate(all_seq), np.floor(np.concatenate(all_t))
    stamps = np.datetime64("2010-01-01", "us") + (t * 86_400e6).astype("timedelta64[us]")
    table = pa.table(
        {
            "user_id": pa.array(seq.astype(str)),
            "item_id": pa.array((seq % 97).astype(str)),
            "event": pa.array(["purchase"] * seq.size),
            "timestamp": pa.array(stamps, pa.timestamp("us")),
            "category_id": pa.array((seq % 3).astype(str)),
        }
    )
    return table, parse_time("2010-01-01") + timedelta(days=days)


def test_day_resolution_excitation_is_found_from_a_grid_that_starts_below_a_day():
    """On a day-resolution log a kernel of 1 hour explains nothing (same-day events do not excite
    each other), so EM drives the excitation to 0 there; warm starts from that grid point must not
    keep it at 0 for every longer half-life (the Amazon review logs learned weight 0 this way)."""
    events, now = _day_resolution_hawkes(seed=3)
    model = fit_decay(
        events, now, FitConfig(grid_min_days=1 / 24, grid_max_days=3650, grid_points=13, fit_by_event=False, em_iterations=30)
    )
    assert model.weights == {"purchase": 1.0}
    assert model.alpha_global > 1e-6  # without the fix: ~1e-166, and the interval spans the whole grid
    g = model.global_half_life
    assert g.low <= 20.0 <= g.high and abs(g.days / 20.0 - 1) < 0.25


def test_anchors_objective_forecasts_several_windows_before_now(shop):
    """objective="anchors" scores half-lives by forecasting several windows, each from the events
    before it and all closing by ``now``: fast and slow categories stay apart, and nothing after
    ``now`` is read."""
    from decayrec.decay.fit import _anchor_times
    from decayrec.decay.sequences import prepare

    sim, _ = shop
    small = sim.events.slice(0, 60_000)
    ts = small["timestamp"]
    now = ts[-1].as_py() - timedelta(days=2)
    config = FitConfig(objective="anchors", anchors=3, fit_by_event=False, grid_points=9, em_iterations=15)
    data = prepare(small, now)
    starts, window = _anchor_times(data, config)
    assert starts.size == 3 and window == pytest.approx(data.now / 10)
    assert np.all(starts > 0) and np.all(starts + window <= data.now + 1e-9) and np.all(np.diff(starts) > 0)

    model = fit_decay(small, now, config)
    assert all(hl.low <= hl.days <= hl.high for hl in model.by_category.values())
    truth = sim.truth["half_life_days"]["by_category"]
    plain = {c: h for c, h in truth.items() if c not in sim.truth["consumable_cycles_days"]}
    fast = [model.by_category[c].days for c, h in plain.items() if h < 1.5]
    slow = [model.by_category[c].days for c, h in plain.items() if h > 10]
    # a forecast objective scores fewer points than the whole history, so its curves are flatter and
    # shrink harder toward the pooled value: slow categories come out short of their truth on this
    # 60-day slice (about 6 d vs 10-60 d) but well apart from the fast ones (about 1.4 d vs 1-1.5 d)
    assert fast and slow and max(fast) < 2 and np.median(slow) > 3 * np.median(fast)

    # rewrite everything after `now`: the fit must not change
    later = small.filter(pa.compute.greater(ts, pa.scalar(now, ts.type)))
    assert later.num_rows > 0
    scrambled = later.set_column(0, "user_id", pa.array(["intruder"] * later.num_rows))
    changed = pa.concat_tables([small.filter(pa.compute.less_equal(ts, pa.scalar(now, ts.type))), scrambled])
    a, b = model.to_json_dict(), fit_decay(changed, now, config).to_json_dict()
    a["diagnostics"].pop("seconds"), b["diagnostics"].pop("seconds")
    assert a == b

    with pytest.raises(InputError, match="anchor_window_days"):
        fit_decay(small, now, config.model_copy(update={"anchor_window_days": 1e-7}))


def test_per_user_multipliers_separate_quick_and_slow_forgetters():
    """Half the users forget in 4 days, half in 32, every category mixes both: per-category
    half-lives cannot tell them apart, per-user multipliers do (and predict the next window better)."""
    n = 1200
    slow = np.arange(n) % 2 == 1
    events, end = _day_resolution_hawkes(
        seed=5, n_seq=n, days=1500.0, half_life=np.where(slow, 32.0, 4.0), branching=0.6, immigrants=8.0
    )
    cutoff = end - timedelta(days=150)
    config = FitConfig(grid_min_days=0.5, grid_max_days=500, grid_points=9, fit_by_event=False, em_iterations=20, per_user=True)
    model = fit_decay(events, cutoff, config)
    scale = np.array([model.scale_for(str(u)) for u in range(n)])
    ts = events["timestamp"].to_numpy()
    before = set(np.asarray(events["user_id"].to_pylist())[ts <= np.datetime64(cutoff.replace(tzinfo=None), "us")])
    assert set(model.user_scale) == before  # every user with history, no other
    assert model.user_scale_log_sd > 0.3
    n_events = np.bincount(np.array(events["user_id"].to_pylist(), dtype=int), minlength=n)
    rich = n_events >= 10  # users with enough history to tell
    fast_median, slow_median = np.median(scale[rich & ~slow]), np.median(scale[rich & slow])
    assert fast_median < 1.0 < slow_median
    assert slow_median / fast_median > 2.0  # the truth is 8; shrinkage toward 1 and the grid (1/4 .. 4) pull it in
    learned = {c: v.days for c, v in model.by_category.items()} | {"__global__": model.global_half_life.days}
    plain = heldout_loglik(events, cutoff, 150.0, learned, model.weights, config)
    personal = heldout_loglik(events, cutoff, 150.0, learned, model.weights, config, user_scale=model.user_scale)
    assert personal.points == plain.points > 100
    assert personal.per_point > plain.per_point


def test_per_user_multipliers_stay_near_one_when_everyone_forgets_alike():
    n = 800
    events, end = _day_resolution_hawkes(seed=6, n_seq=n, days=1500.0, half_life=10.0, branching=0.6, immigrants=8.0)
    model = fit_decay(
        events,
        end,
        FitConfig(grid_min_days=0.5, grid_max_days=500, grid_points=9, fit_by_event=False, em_iterations=20, per_user=True),
    )
    scale = np.array(list(model.user_scale.values()))
    assert np.quantile(scale, 0.05) > 0.75 and np.quantile(scale, 0.95) < 1.33


def test_user_prior_recovers_the_spread_and_shrinks_flat_curves():
    from decayrec.decay.fit import USER_RATIOS, user_prior

    rng = np.random.default_rng(0)
    x = np.log(USER_RATIOS)
    theta = rng.normal(0.0, 0.5, 4000)
    curves = -0.5 * 40.0 * (x[:, None] - theta[None, :]) ** 2  # sharp: each user's log ratio well determined
    sd, post = user_prior(curves, x)
    assert 0.4 < sd < 0.6
    inside = np.abs(theta) < 1.2  # away from the grid's ends
    assert np.corrcoef(post[inside], theta[inside])[0, 1] > 0.95
    flat = np.zeros((x.size, 50))
    _sd_flat, post_flat = user_prior(np.hstack([curves, flat]), x)
    assert np.allclose(post_flat[-50:], 0.0, atol=1e-9)  # no evidence: the prior's centre (multiplier 1)


def test_user_multipliers_round_trip_and_can_be_erased(fitted, tmp_path):
    from dataclasses import replace

    model = replace(fitted, user_scale={"u1": 0.5, "u2": 2.0}, user_scale_log_sd=0.7)
    path = tmp_path / "DECAY.json"
    model.save(path)
    doc = json.loads(path.read_text())
    assert doc["user_scale"] == {"log_sd": 0.7, "by_user": {"u1": 0.5, "u2": 2.0}}
    loaded = DecayModel.load(path)
    assert loaded == model and loaded.scale_for("u2") == 2.0 and loaded.scale_for("nobody") == 1.0
    erased = loaded.without_user("u2")
    assert erased.user_scale == {"u1": 0.5} and erased.scale_for("u2") == 1.0
    assert "user_scale" not in fitted.to_json_dict()  # no per-user fit, no per-user data in the file


def test_heldout_with_unit_user_multipliers_is_unchanged(shop):
    sim, _ = shop
    small = sim.events.slice(0, 40_000)
    cutoff = small["timestamp"][-1].as_py() - timedelta(days=7)
    config = FitConfig(em_iterations=10)
    users = {str(u): 1.0 for u in small["user_id"].unique().to_pylist()}
    a = heldout_loglik(small, cutoff, 7.0, 10.0, {"view": 1.0, "purchase": 1.0}, config)
    b = heldout_loglik(small, cutoff, 7.0, 10.0, {"view": 1.0, "purchase": 1.0}, config, user_scale=users)
    assert a.points == b.points and a.loglik == pytest.approx(b.loglik, rel=1e-12)
