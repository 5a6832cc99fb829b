"""The pieces of the half-life fit that are pure functions: the empirical-Bayes prior and the grid."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from decayrec import schema
from decayrec.decay.config import FitConfig
from decayrec.decay.fit import _prior
from decayrec.decay.likelihood import Curve, resolve_grid
from decayrec.decay.sequences import prepare

LOG_GRID = np.linspace(math.log(1 / 24), math.log(365), 17)


def _curves(true_log_h: np.ndarray, se: np.ndarray, rng: np.random.Generator) -> list[Curve]:
    """Quadratic profile curves on the grid: each category's estimate is its truth plus noise of its se."""
    est = true_log_h + rng.normal(0, se)
    return [Curve(list(LOG_GRID), list(-0.5 * ((LOG_GRID - m) / s) ** 2)) for m, s in zip(est, se)]


def test_the_prior_recovers_the_centre_and_spread_of_the_categories():
    rng = np.random.default_rng(0)
    centre, spread, n = math.log(8.0), 0.9, 400
    truth = rng.normal(centre, spread, n)
    se = rng.choice([0.1, 0.3, 1.0], n)  # well and poorly determined categories alike
    got_centre, got_spread = _prior(_curves(truth, se, rng), np.full(n, 10_000), FitConfig(), LOG_GRID)
    assert abs(got_centre - centre) < 0.15
    assert abs(got_spread - spread) < 0.15


def test_flat_curves_do_not_drag_the_centre_and_sparse_categories_are_left_out():
    rng = np.random.default_rng(1)
    n = 200
    truth = rng.normal(math.log(3.0), 0.5, n)
    curves = _curves(truth, np.full(n, 0.2), rng)
    # curves that only say "long": flat above 60 days, far below it
    flat = [Curve(list(LOG_GRID), list(np.minimum(0.0, -4.0 * (math.log(60) - LOG_GRID)))) for _ in range(20)]
    points = np.r_[np.full(n, 1000), np.full(20, 1000)]
    centre, spread = _prior(curves + flat, points, FitConfig(), LOG_GRID)
    centre_alone, _ = _prior(curves, points[:n], FitConfig(), LOG_GRID)
    assert centre > centre_alone  # they do say the half-lives run longer, and move it that way
    assert abs(centre - math.log(3.0)) < 0.5 and spread < 1.5
    # a category below min_points does not enter: a wild curve there changes nothing
    wild = Curve(list(LOG_GRID), list(-50.0 * (LOG_GRID - LOG_GRID[-1]) ** 2))
    assert _prior(curves + [wild], np.r_[points[:n], 3], FitConfig(), LOG_GRID) == _prior(
        curves, points[:n], FitConfig(), LOG_GRID
    )


def test_a_given_spread_is_kept():
    rng = np.random.default_rng(2)
    truth = rng.normal(0.0, 1.0, 50)
    _, spread = _prior(_curves(truth, np.full(50, 0.2), rng), np.full(50, 1000), FitConfig(prior_log_sd=0.3), LOG_GRID)
    assert spread == 0.3


def _log(gap: timedelta, span_days: float) -> pa.Table:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times, t = [], start
    while t < start + timedelta(days=span_days):
        times.append(t)
        t += gap
    n = len(times)
    return pa.table(
        {
            schema.USER: ["u"] * n,
            schema.ITEM: ["i"] * n,
            schema.EVENT: ["view"] * n,
            schema.TIMESTAMP: pa.array(times, pa.timestamp("us", tz="UTC")),
            schema.CATEGORY: ["c"] * n,
        }
    )


def test_the_grid_reaches_down_to_a_session_logs_gaps_and_up_to_twice_its_span():
    sessions = _log(timedelta(seconds=20), 2.0)
    now = datetime(2026, 1, 3, tzinfo=UTC)
    grid = resolve_grid(prepare(sessions, now), FitConfig())
    assert grid.grid_min_days == 1 / 1440  # 20-second gaps: the floor of 1 minute
    assert grid.grid_max_days == 30.0  # twice 2 days, raised to the least ceiling
    step = math.log(grid.grid_max_days / grid.grid_min_days) / (grid.grid_points - 1)
    assert abs(step - math.log(365 * 24) / 16) < 0.05  # the default spacing is kept

    daily = _log(timedelta(days=1), 400.0)
    grid = resolve_grid(prepare(daily, datetime(2027, 2, 6, tzinfo=UTC)), FitConfig())
    assert grid.grid_min_days == 1 / 24 and 780 < grid.grid_max_days < 820  # day gaps: 1 hour; span ~401 days
    given = resolve_grid(prepare(daily, datetime(2027, 2, 6, tzinfo=UTC)), FitConfig(grid_min_days=0.5, grid_points=9))
    assert (given.grid_min_days, given.grid_points) == (0.5, 9)
