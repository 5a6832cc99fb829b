"""Trends: known-truth momentum on Poisson streams, as-of cuts, evidence rules, the forecast and its backtest, plots."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from decayrec.errors import InputError, MissingExtraError
from decayrec.simulate import SimConfig, simulate
from decayrec.trends import TRENDS_SCHEMA, TrendConfig, forecast_backtest, plot_trends, trend_series, trends
from decayrec.trends.glm import fit_poisson

NOW = datetime(2024, 6, 1, tzinfo=UTC)
LN2 = math.log(2.0)
_US = 86_400_000_000


def table(days: np.ndarray, keys: list[str] | np.ndarray, *, events=None, users=None, items=None) -> pa.Table:
    """Canonical events at ``days`` relative to NOW (negative = before), category ``keys``."""
    days = np.asarray(days, dtype=np.float64)
    n = days.size
    keys = np.asarray(keys, dtype=object)
    users = users if users is not None else [f"u{i % 97}" for i in range(n)]
    items = items if items is not None else [f"{k}-i{i % 5}" for i, k in enumerate(keys)]
    ts = np.datetime64(NOW.replace(tzinfo=None), "us") + np.rint(days * _US).astype("timedelta64[us]")
    return pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "item_id": pa.array(items, pa.string()),
            "event": pa.array(events if events is not None else ["view"] * n, pa.string()),
            "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "category_id": pa.array(list(keys), pa.string()),
        }
    )


def poisson_stream(rng: np.random.Generator, pieces: dict[str, list[tuple[float, float, float]]]) -> pa.Table:
    """Events of piecewise-constant Poisson rates: per key, ``(age_hi, age_lo, rate per day)`` pieces."""
    days, keys = [], []
    for key, spans in pieces.items():
        for hi, lo, rate in spans:
            t = -rng.uniform(lo, hi, rng.poisson(rate * (hi - lo)))
            days.append(t)
            keys += [key] * t.size
    days = np.concatenate(days)
    order = np.argsort(days, kind="stable")
    return table(days[order], np.asarray(keys, dtype=object)[order])


def expected_rate(spans: list[tuple[float, float, float]], h: float, observed: float) -> float:
    """``E[r_h]`` of a piecewise-constant Poisson stream, in closed form (the trends unit)."""
    integral = sum(rate * h / LN2 * (2 ** (-lo / h) - 2 ** (-hi / h)) for hi, lo, rate in spans)
    return LN2 / (h * (1 - 2 ** (-observed / h))) * integral


def row(result: pa.Table, key: str) -> dict:
    rows = result.filter(pc.equal(result["key"], key)).to_pylist()
    assert len(rows) == 1
    return rows[0]


# -- momentum and labels: known truth -------------------------------------------------------
RATE, SPAN = 200.0, 200.0
PIECES = {
    "A": [(SPAN, 7.0, RATE), (7.0, 0.0, 2 * RATE)],  # doubles in the last week
    "B": [(SPAN, 7.0, RATE), (7.0, 0.0, RATE / 2)],  # halves
    "C": [(SPAN, 0.0, RATE)],  # steady
}


@pytest.fixture(scope="module")
def streams() -> pa.Table:
    return poisson_stream(np.random.default_rng(7), PIECES)


def test_momentum_matches_the_analytic_value(streams):
    cfg = TrendConfig()
    result = trends(streams, NOW, config=cfg)
    assert result.schema.names[:5] == ["key", "level", "interest", "momentum", "trend"]
    assert result.schema.equals(TRENDS_SCHEMA)
    for key, spans in PIECES.items():
        short = expected_rate(spans, cfg.short_half_life_days, SPAN)
        long_ = expected_rate(spans, cfg.long_half_life_days, SPAN)
        got = row(result, key)
        # sd of the short rate is sqrt(rate * ln2 / (2 h)) / rate: under 2% here; 3 sd allowed
        assert got["interest_short"] == pytest.approx(short, rel=0.06)
        assert got["interest_long"] == pytest.approx(long_, rel=0.03)
        assert got["momentum"] == pytest.approx(short / long_, rel=0.06)
        assert got["interest"] == got["interest_short"]
    assert row(result, "A")["momentum"] == pytest.approx(1.555, abs=0.08)  # (2 - 2**(-7/3)) / (2 - 2**(-1/4))
    assert {k: row(result, k)["trend"] for k in PIECES} == {"A": "rising", "B": "fading", "C": "steady"}
    assert row(result, "A")["z"] > 5 and row(result, "B")["z"] < -5
    assert row(result, "C")["interest"] == pytest.approx(RATE, rel=0.07)  # an unbiased rate per day
    assert result["key"].to_pylist() == ["A", "C", "B"]  # by interest


def test_a_short_log_of_a_steady_stream_is_not_rising():
    """The exposure correction: without it, a 10-day-old shop would show momentum ~4."""
    events = poisson_stream(np.random.default_rng(3), {"C": [(10.0, 0.0, 300.0)]})
    got = row(trends(events, NOW), "C")
    assert got["momentum"] == pytest.approx(1.0, abs=0.1)
    assert got["interest_long"] == pytest.approx(300.0, rel=0.05)
    assert got["trend"] == "steady"


def test_relative_to_shop_removes_a_shop_wide_surge():
    surge = {k: [(SPAN, 7.0, RATE * f), (7.0, 0.0, 2 * RATE * f)] for k, f in (("A", 1.0), ("B", 0.5), ("C", 0.25))}
    events = poisson_stream(np.random.default_rng(9), surge)
    absolute = trends(events, NOW)
    assert set(absolute["trend"].to_pylist()) == {"rising"}  # the whole shop doubled
    relative = trends(events, NOW, config=TrendConfig(relative_to_shop=True))
    assert set(relative["trend"].to_pylist()) == {"steady"}  # no key outgrew the shop
    assert relative["momentum_vs_shop"].to_numpy() == pytest.approx(1.0, abs=0.06)
    assert relative["momentum"].equals(absolute["momentum"])  # the column itself stays absolute
    assert np.all(np.abs(relative["z"].to_numpy()) < 3)
    meta = json.loads(relative.schema.metadata[b"decayrec"])
    assert meta["shop_momentum"] == pytest.approx(1.555, abs=0.05)


def test_hand_computed_interest_z_and_window_columns():
    cfg = TrendConfig(short_half_life_days=2.0, long_half_life_days=8.0, window_days=1.5, min_events=1)
    # X: a purchase (w 5) 1 day ago and a view (w 1) 4 days ago; Y: a view 10 days ago (the log's start).
    events = table([-10.0, -4.0, -1.0], ["Y", "X", "X"], events=["view", "view", "purchase"], users=["a", "b", "b"])
    result = trends(events, NOW, config=cfg)
    c = {h: LN2 / (h * (1 - 2 ** (-10 / h))) for h in (2.0, 8.0)}
    ages, w = np.array([4.0, 1.0]), np.array([1.0, 5.0])
    short, long_ = c[2.0] * (w * 2 ** (-ages / 2)).sum(), c[8.0] * (w * 2 ** (-ages / 8)).sum()
    terms = w * (c[2.0] * 2 ** (-ages / 2) - c[8.0] * 2 ** (-ages / 8))
    x = row(result, "X")
    assert x["interest"] == pytest.approx(short, rel=1e-12)
    assert x["interest_long"] == pytest.approx(long_, rel=1e-12)
    assert x["momentum"] == pytest.approx(short / long_, rel=1e-12)
    assert x["z"] == pytest.approx(terms.sum() / math.sqrt((terms**2).sum()), rel=1e-9)
    assert (x["events_window"], x["users_window"], x["events_total"]) == (1, 1, 2)
    assert x["last_event"] == NOW - timedelta(days=1)
    assert (row(result, "Y")["events_window"], row(result, "Y")["users_window"]) == (0, 0)
    assert result["level"].to_pylist() == ["category", "category"]


def test_one_event_is_steady_with_the_reason_given():
    events = poisson_stream(np.random.default_rng(5), {"C": [(60.0, 0.0, 20.0)]})
    late = table([-0.01], ["NEW"])
    result = trends(pa.concat_tables([events, late]), NOW)
    new = row(result, "NEW")
    assert new["momentum"] > 5  # all of its weight is recent...
    assert (new["trend"], new["evidence"]) == ("steady", "too few events")  # ...but one event is no trend
    many = trends(pa.concat_tables([events, late]), NOW, config=TrendConfig(min_events=1))
    assert (row(many, "NEW")["trend"], row(many, "NEW")["evidence"]) == ("steady", "within noise")  # z = 1


def test_events_after_now_change_nothing(streams):
    later = poisson_stream(np.random.default_rng(11), {"A": [(0.0, -5.0, 500.0)], "D": [(0.0, -3.0, 50.0)]})
    both = pa.concat_tables([streams, later])
    for level in ("category", "item"):
        assert trends(both, NOW, level=level).equals(trends(streams, NOW, level=level), check_metadata=True)
    assert forecast_backtest(both, NOW) == forecast_backtest(streams, NOW)
    curves = [trend_series(log, NOW, ["A", "D"]).interest.tolist() for log in (both, streams)]
    assert curves[0] == curves[1]


def test_item_level():
    events = table(
        [-9.0, -8.0, -3.0, -2.0, -1.0, -0.5],
        ["c1", "c1", "c1", "c2", "c2", None],
        items=["i1", "i2", "i1", "i3", "i3", "i4"],
    )
    result = trends(events, NOW, level="item")
    assert sorted(result["key"].to_pylist()) == ["i1", "i2", "i3", "i4"]  # no category needed at item level
    assert set(result["level"].to_pylist()) == {"item"}
    assert sum(result["events_total"].to_pylist()) == 6
    assert row(result, "i1")["events_total"] == 2
    interest = result["interest"].to_numpy()
    assert np.all(np.diff(interest) <= 0)
    # at category level the uncategorised event is left out
    assert sum(trends(events, NOW)["events_total"].to_pylist()) == 5


def test_weights_choose_the_events_that_count():
    events = table([-3.0, -2.0, -1.0], ["c", "c", "c"], events=["view", "purchase", "view"])
    only = trends(events, NOW, config=TrendConfig(event_weights={"purchase": 1.0}))
    assert row(only, "c")["events_total"] == 1
    with pytest.raises(ValidationError, match="unknown event types"):
        TrendConfig(event_weights={"puchase": 1.0})


def test_config_is_strict():
    with pytest.raises(ValidationError):
        TrendConfig(short_half_lifes=3)
    with pytest.raises(ValidationError, match="below long_half_life_days"):
        TrendConfig(short_half_life_days=30, long_half_life_days=28)
    with pytest.raises(ValidationError):
        TrendConfig(rising_momentum=0.9)


def test_missing_category_says_use_item_level():
    events = table([-1.0, -2.0], ["a", "b"])
    with pytest.raises(InputError, match="--level item"):
        trends(events.drop_columns(["category_id"]), NOW)
    nulls = events.set_column(4, "category_id", pa.nulls(2, pa.string()))
    with pytest.raises(InputError, match="category_id"):
        trends(nulls, NOW, level="category")
    with pytest.raises(InputError, match="level"):
        trends(events, NOW, level="brand")
    assert trends(events.drop_columns(["category_id"]), NOW, level="item").num_rows == 2


def test_before_every_event_gives_an_empty_table(streams):
    empty = trends(streams, NOW - timedelta(days=365))
    assert empty.num_rows == 0 and empty.schema.equals(TRENDS_SCHEMA)


# -- the forecast -----------------------------------------------------------------------------
def test_poisson_glm_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60_000, 2))
    groups = np.repeat([0, 1, 2], 20_000)
    levels = np.array([0.5, 1.5, -0.5])  # a volume per group, as per anchor
    y = rng.poisson(np.exp(levels[groups] + 1.0 * x[:, 0] - 0.5 * x[:, 1]))
    model = fit_poisson(x, y, ridge=0.0, groups=groups)
    assert model.coef / model.scale == pytest.approx([1.0, -0.5], abs=0.02)  # on the raw feature scale
    assert model.intercepts - (model.center / model.scale) @ model.coef == pytest.approx(levels, abs=0.02)
    assert model.deviance_explained > 0.3
    one = fit_poisson(x[:20_000], y[:20_000], ridge=0.0)
    assert one.intercepts.size == 1 and one.coef / one.scale == pytest.approx([1.0, -0.5], abs=0.03)


def stationary(seed: int, n_keys: int, days: float = 120.0) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng(seed)
    rates = np.exp(rng.uniform(np.log(0.5), np.log(30.0), n_keys))
    return poisson_stream(rng, {f"k{i:03d}": [(days, 0.0, r)] for i, r in enumerate(rates)}), rates


@pytest.mark.parametrize("volume", ["last_window", "fitted"])
def test_forecast_of_a_stationary_stream_is_rate_times_window(volume):
    events, rates = stationary(1, 20)
    result = trends(events, NOW, config=TrendConfig(forecast_volume=volume))
    got = np.array([row(result, f"k{i:03d}")["forecast"] for i in range(rates.size)])
    expected = rates * 7.0
    assert np.median(got / expected) == pytest.approx(1.0, abs=0.05)
    # 120 days of a rate >= 0.5 per day: the rate is known to ~13% at worst (1 sd); allow 3 sd
    assert np.all(np.abs(got / expected - 1) < 0.35)
    assert json.loads(result.schema.metadata[b"decayrec"])["forecast"]["volume"] == volume


def test_backtest_beats_the_naive_last_window_on_stationary_streams():
    """Naive error is Poisson minus Poisson (variance 2 rW), the model's about Poisson alone (rW)."""
    events, _ = stationary(2, 300)
    report = forecast_backtest(events, NOW, n_boot=500)
    m = report["metrics"]
    assert report["scored"]["keys"] == 300
    assert m["model"]["wape"] < 0.85 * m["naive_last_window"]["wape"]  # theory: about 1 / sqrt(2)
    assert m["model"]["mae"] < m["naive_last_window"]["mae"]
    assert m["model"]["poisson_deviance"] < m["naive_last_window"]["poisson_deviance"]
    gap = report["wape_diff_vs_naive"]
    assert gap["ci95"][0] <= gap["estimate"] <= gap["ci95"][1] < 0
    # and it does not lose to the long-run mean, the right answer for a stationary stream
    assert m["model"]["wape"] < 1.05 * m["long_run_mean"]["wape"]
    assert report["model"]["kind"] == "poisson_glm"


def test_backtest_forecast_is_the_forecast_made_at_the_cutoff(streams):
    """Leak check: the backtest's model sees exactly what trends() sees as of the cutoff."""
    cfg = TrendConfig(window_days=5.0)
    report = forecast_backtest(streams, NOW, config=cfg)
    at_cutoff = trends(streams, NOW - timedelta(days=5), config=cfg)
    expected = pc.sum(at_cutoff["forecast"]).as_py()
    assert report["metrics"]["model"]["forecast_total"] == pytest.approx(expected, rel=1e-9)
    assert report["scored"]["actual_events"] == sum(trends(streams, NOW, config=cfg)["events_window"].to_pylist())


def test_backtest_without_history_says_how_to_fix():
    events = table([-1.0, -0.5], ["a", "b"])
    with pytest.raises(InputError, match="shorter window"):
        forecast_backtest(events, NOW)


# -- series and the picture ---------------------------------------------------------------------
def test_series_ends_at_the_table_and_is_exact(streams):
    cfg = TrendConfig()
    result = trends(streams, NOW, config=cfg)
    series = trend_series(streams, NOW, ["B", "A", "missing", "A"], config=cfg, points=7, days_back=30)
    assert series.interest.shape == (4, 7)
    assert series.times[-1] == np.datetime64(NOW.replace(tzinfo=None), "us")
    a, b = row(result, "A")["interest"], row(result, "B")["interest"]
    assert series.interest[:, -1] == pytest.approx([b, a, 0.0, a], rel=1e-9)
    # each grid point equals trends() as of that time
    mid = series.times[3].astype(datetime).replace(tzinfo=UTC)
    assert series.interest[1, 3] == pytest.approx(row(trends(streams, mid, config=cfg), "A")["interest"], rel=1e-9)
    long = series.to_table()
    assert long.num_rows == 28 and long.column_names == ["key", "time", "interest"]


def test_plot_writes_a_png(tmp_path, streams):
    pytest.importorskip("matplotlib")
    out = plot_trends(streams, NOW, tmp_path / "trends.png", top=3)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_plot_without_matplotlib_names_the_extra(tmp_path, streams, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match=r"decayrec\[plot\]"):
        plot_trends(streams, NOW, tmp_path / "x.png")


# -- the project's simulator -------------------------------------------------------------------
def test_simulated_shop_has_one_valid_row_per_category():
    sim = simulate(SimConfig(n_users=300, n_categories=12, n_items=240, days=60, seed=4))
    now = pc.max(sim.events["timestamp"]).as_py()
    result = trends(sim.events, now)
    assert sorted(result["key"].to_pylist()) == sorted(pc.unique(sim.events["category_id"]).to_pylist())
    assert set(result["trend"].to_pylist()) <= {"rising", "steady", "fading"}
    assert set(result["evidence"].to_pylist()) <= {"clear", "within noise", "too few events"}
    for name in ("interest", "interest_long", "forecast", "momentum"):
        values = result[name].to_numpy()
        assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert np.all(np.diff(result["interest"].to_numpy()) <= 0)
    report = forecast_backtest(sim.events, now, level="item", n_boot=200)
    assert report["scored"]["keys"] > 100 and report["wape_diff_vs_naive"]["estimate"] < 0
