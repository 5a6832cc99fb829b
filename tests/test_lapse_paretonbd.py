"""Pareto/NBD: the published CDNOW fit, and its predictive formulas against a simulation of the process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decayrec.errors import InputError
from decayrec.lapse.paretonbd import ParetoNBDModel

CDNOW = Path(__file__).parent / "fixtures" / "cdnow_customers_summary.csv"
# Fader and Hardie (2005), "A note on implementing the Pareto/NBD model in MATLAB": the
# CDNOW fit in weeks, its log-likelihood, and the mean and median P(alive) at the end of
# the calibration period (also reproduced by the BTYD package's demo).
PUBLISHED = {"r": 0.5533, "alpha": 10.5802, "s": 0.6061, "beta": 11.6562}
PUBLISHED_LL = -9594.976
PUBLISHED_P_ALIVE = {"mean": 0.4462, "median": 0.3499}
TRUE = {"r": 0.8, "alpha": 6.0, "s": 0.7, "beta": 15.0}


def simulate(n, r, alpha, s, beta, T, horizon, rng):
    """Customers drawn from the Pareto/NBD process: ``(x, t_x, T)`` and purchases in ``(T, T + horizon]``."""
    lam = rng.gamma(r, 1 / alpha, n)
    mu = rng.gamma(s, 1 / beta, n)
    death = rng.exponential(1 / mu)
    seen = np.minimum(death, T)
    x = rng.poisson(lam * seen)
    # The last of x uniform arrivals on [0, seen] is seen * Beta(x, 1).
    tx = np.where(x > 0, seen * rng.beta(np.maximum(x, 1), 1), 0.0)
    future = rng.poisson(lam * np.clip(np.minimum(death, T + horizon) - T, 0, None))
    return x.astype(float), tx, np.full(n, float(T)), future


@pytest.fixture(scope="module")
def cdnow():
    data = np.genfromtxt(CDNOW, delimiter=",", names=True)
    return data["frequency"], data["recency"], data["T"]


@pytest.fixture(scope="module")
def cdnow_model(cdnow):
    return ParetoNBDModel().fit(*cdnow)


def test_cdnow_reproduces_published_parameters(cdnow_model):
    for name, value in PUBLISHED.items():
        assert cdnow_model.params_[name] == pytest.approx(value, rel=0.01), name
    assert abs(cdnow_model.log_likelihood_ - PUBLISHED_LL) < 0.05
    assert cdnow_model.n_customers_ == 2357


def test_cdnow_p_alive_matches_published_summary(cdnow_model, cdnow):
    p = cdnow_model.p_alive(*cdnow)
    assert p.mean() == pytest.approx(PUBLISHED_P_ALIVE["mean"], abs=5e-4)
    assert np.median(p) == pytest.approx(PUBLISHED_P_ALIVE["median"], abs=5e-4)
    # Nobody who just bought can be less alive than a twin who bought long ago.
    assert (cdnow_model.p_alive(3, 30, 38) > cdnow_model.p_alive(3, 5, 38)).all()


def test_predictions_match_a_simulation_of_the_process():
    rng = np.random.default_rng(3)
    x, tx, T, future = simulate(200_000, **TRUE, T=26.0, horizon=13.0, rng=rng)
    model = ParetoNBDModel()
    model.params_ = dict(TRUE)
    p = model.p_active(13.0, x, tx, T)
    e = model.expected_purchases(13.0, x, tx, T)
    for group in (x == 0, (x > 0) & (x <= 2), x > 2, (x > 0) & (tx < 6)):
        assert p[group].mean() == pytest.approx((future[group] > 0).mean(), abs=0.01)
        assert e[group].mean() == pytest.approx(future[group].mean(), rel=0.05)
    assert ((p >= 0) & (p <= 1)).all()


def test_fit_recovers_simulated_parameters():
    x, tx, T, _ = simulate(20_000, **TRUE, T=52.0, horizon=1.0, rng=np.random.default_rng(11))
    fitted = ParetoNBDModel().fit(x, tx, T).params_
    for name, value in TRUE.items():
        assert fitted[name] == pytest.approx(value, rel=0.2), name


def test_p_active_grows_with_the_horizon_and_is_zero_at_zero(cdnow_model, cdnow):
    short, long = cdnow_model.p_active(4, *cdnow), cdnow_model.p_active(52, *cdnow)
    assert (long >= short).all()
    assert np.allclose(cdnow_model.p_active(0, *cdnow), 0.0)
    assert (long <= cdnow_model.p_alive(*cdnow) + 1e-12).all()


def test_round_trip_and_errors(cdnow_model, cdnow):
    again = ParetoNBDModel.from_dict(cdnow_model.to_dict())
    assert np.allclose(again.p_active(39, *cdnow), cdnow_model.p_active(39, *cdnow))
    with pytest.raises(InputError, match="not fitted"):
        ParetoNBDModel().p_alive(*cdnow)
    with pytest.raises(InputError, match="no customer has a repeat"):
        ParetoNBDModel().fit([0, 0], [0, 0], [5, 6])
    with pytest.raises(InputError, match="version"):
        ParetoNBDModel.from_dict({**cdnow_model.to_dict(), "version": 99})
    with pytest.raises(InputError, match="recency exceeds T"):
        ParetoNBDModel().fit([1], [9], [5])


def test_quadrature_equals_the_hypergeometric_form(cdnow):
    """The likelihood's "died" term by quadrature equals the closed form with Gauss's 2F1, on both branches."""
    from decayrec.lapse.paretonbd import _log_a0, _log_died_integral

    x, tx, T = cdnow
    for theta in ([0.5533, 10.5802, 0.6061, 11.6562], [0.3, 2.0, 5.0, 40.0], [2.0, 30.0, 0.2, 1.0]):
        theta = np.array(theta)
        closed = np.log(theta[2]) - np.log(theta[0] + theta[2] + x) + _log_a0(theta, x, tx, T)
        ok = tx < T  # where t_x = T the term is 0 (log -inf) in both
        np.testing.assert_allclose(_log_died_integral(theta, x, tx, T)[ok], closed[ok], atol=1e-4)
