"""BG/NBD: the published CDNOW fit, recovery of simulated truth, and the predictive formulas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from decayrec.errors import InputError
from decayrec.lapse.bgnbd import BetaGeoModel

CDNOW = Path(__file__).parent / "fixtures" / "cdnow_customers_summary.csv"
# Fader, Hardie and Lee (2005), section 4: the CDNOW fit (times in weeks).
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL = -9582.4


def simulate(n, r, alpha, a, b, T, horizon, rng):
    """Customers drawn from the BG/NBD process: ``(x, t_x, T)`` and purchases in ``(T, T + horizon]``.

    Exact and vectorised: the customer's ``J``-th repeat purchase (``J ~ Geometric(p)``)
    is the one after which they drop out; ``N(T)`` Poisson arrivals fall in ``[0, T]``
    as uniform order statistics, so the ``k``-th of them is ``T * Beta(k, N - k + 1)``.
    """
    T = np.broadcast_to(np.asarray(T, dtype=float), (n,))
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    drop_after = rng.geometric(p)
    n_before = rng.poisson(lam * T)
    n_after = rng.poisson(lam * horizon)
    x = np.minimum(n_before, drop_after)
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), n_before - x + 1), 0.0)
    alive = drop_after > n_before
    future = np.where(alive, np.minimum(n_before + n_after, drop_after) - n_before, 0)
    return x.astype(float), tx, T.copy(), future


@pytest.fixture(scope="module")
def cdnow():
    data = np.genfromtxt(CDNOW, delimiter=",", names=True)
    return data["frequency"], data["recency"], data["T"]


@pytest.fixture(scope="module")
def cdnow_model(cdnow):
    return BetaGeoModel().fit(*cdnow)


# -- the published fit ---------------------------------------------------------------
def test_cdnow_reproduces_published_parameters(cdnow_model):
    for name, value in PUBLISHED.items():
        assert cdnow_model.params_[name] == pytest.approx(value, rel=0.01), name
    assert abs(cdnow_model.log_likelihood_ - PUBLISHED_LL) < 0.1
    assert cdnow_model.n_customers_ == 2357


def test_cdnow_standard_errors_are_finite_and_small(cdnow_model):
    ses = cdnow_model.standard_errors_
    assert all(np.isfinite(v) and 0 < v < cdnow_model.params_[k] for k, v in ses.items())


def test_paper_example_expected_purchases(cdnow_model):
    # FHL 2005, section 4: x = 2, t_x = 30.43, T = 38.86 expects 1.226 purchases in 39 weeks.
    assert float(cdnow_model.expected_purchases(39, 2, 30.43, 38.86)) == pytest.approx(1.226, abs=5e-4)


# -- recovering known truth ----------------------------------------------------------
def test_recovers_simulated_parameters():
    truth = {"r": 0.5, "alpha": 3.0, "a": 0.8, "b": 2.5}
    rng = np.random.default_rng(7)
    x, tx, T, _ = simulate(4000, *truth.values(), T=rng.uniform(26, 39, 4000), horizon=0.0, rng=rng)
    model = BetaGeoModel().fit(x, tx, T)
    for name, value in truth.items():
        se = model.standard_errors_[name]
        # Asymptotically normal MLE: 4 standard errors leave ~6e-5 chance per parameter.
        assert abs(model.params_[name] - value) < 4 * se, (name, model.params_[name], se)
        assert se < 0.35 * value, (name, se)  # and the data do pin each parameter down


# -- predictions ---------------------------------------------------------------------
def test_p_alive_is_one_without_repeat_purchases(cdnow_model):
    np.testing.assert_array_equal(cdnow_model.p_alive([0, 0, 0], [0, 0, 0], [1.0, 20.0, 80.0]), 1.0)
    p = cdnow_model.p_alive([1, 5, 5], [10.0, 10.0, 38.0], [38.0, 38.0, 38.0])
    assert np.all((p > 0) & (p < 1))
    assert p[1] < p[0] < p[2]  # more purchases long ago: more likely gone; recent: alive


def test_p_active_is_a_probability_increasing_in_t(cdnow_model):
    t = np.linspace(0, 200, 101)[:, None]
    p = cdnow_model.p_active(t, [0, 2, 7, 1], [0.0, 30.43, 10.0, 38.0], [38.86, 38.86, 38.86, 38.0])
    assert p.shape == (101, 4)
    np.testing.assert_array_equal(p[0], 0.0)
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p, axis=0) > 0)
    # It never exceeds P(alive): a dead customer buys nothing.
    assert np.all(p[-1] < cdnow_model.p_alive([0, 2, 7, 1], [0.0, 30.43, 10.0, 38.0], [38.86, 38.86, 38.86, 38.0]))


@pytest.fixture(scope="module")
def simulated_histories(cdnow_model):
    rng = np.random.default_rng(2005)
    horizon = 39.0
    x, tx, T, future = simulate(400_000, **cdnow_model.params_, T=38.86, horizon=horizon, rng=rng)
    return horizon, x, tx, T, future


GROUPS = {
    "no repeats": lambda x, tx: x == 0,
    "paper example": lambda x, tx: (x == 2) & (tx > 29) & (tx < 32),
    "busy, then quiet": lambda x, tx: (x >= 4) & (x <= 6) & (tx < 15),
    "busy, recent": lambda x, tx: (x >= 8) & (tx > 36),
}


@pytest.mark.parametrize("group", GROUPS)
def test_p_active_matches_monte_carlo(cdnow_model, simulated_histories, group):
    # Tower property: over customers picked by their history, the share who buy in
    # (T, T + t] must average p_active; this holds exactly for any such group.
    horizon, x, tx, T, future = simulated_histories
    pick = GROUPS[group](x, tx)
    assert pick.sum() > 500
    observed = (future[pick] > 0).mean()
    predicted = cdnow_model.p_active(horizon, x[pick], tx[pick], T[pick]).mean()
    se = np.sqrt(predicted * (1 - predicted) / pick.sum())
    assert abs(observed - predicted) < 4 * se, (observed, predicted, se)


@pytest.mark.parametrize("group", GROUPS)
def test_expected_purchases_matches_monte_carlo(cdnow_model, simulated_histories, group):
    horizon, x, tx, T, future = simulated_histories
    pick = GROUPS[group](x, tx)
    observed = future[pick].mean()
    predicted = cdnow_model.expected_purchases(horizon, x[pick], tx[pick], T[pick]).mean()
    se = future[pick].std() / np.sqrt(pick.sum())
    assert abs(observed - predicted) < 4 * se, (observed, predicted, se)


def test_round_trips_through_json(cdnow_model):
    model = BetaGeoModel.from_dict(json.loads(json.dumps(cdnow_model.to_dict())))
    assert model.params_ == cdnow_model.params_
    assert model.standard_errors_ == cdnow_model.standard_errors_
    assert model.log_likelihood_ == cdnow_model.log_likelihood_
    assert float(model.p_active(10, 2, 30.43, 38.86)) == float(cdnow_model.p_active(10, 2, 30.43, 38.86))
    unfitted = BetaGeoModel.from_dict(BetaGeoModel(penalizer=0.1).to_dict())
    assert unfitted.penalizer == 0.1 and not hasattr(unfitted, "params_")


# -- errors --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frequency", "recency", "T"),
    [
        ([1, -1], [1.0, 0.0], [2.0, 2.0]),  # negative frequency
        ([1, 2], [3.0, 1.0], [2.0, 2.0]),  # recency > T
        ([0, 2], [1.0, 1.0], [2.0, 2.0]),  # no repeats but a last-purchase time
        ([1.5, 2], [1.0, 1.0], [2.0, 2.0]),  # not a count
        ([1, 2], [1.0, np.nan], [2.0, 2.0]),  # missing value
        ([1, 2, 3], [1.0, 1.0], [2.0, 2.0]),  # lengths differ
    ],
)
def test_bad_summaries_raise_input_error_with_a_fix(frequency, recency, T):
    with pytest.raises(InputError) as err:
        BetaGeoModel().fit(frequency, recency, T)
    assert err.value.fix


def test_other_misuse_raises_input_error_with_a_fix(cdnow):
    cases = [
        lambda: BetaGeoModel().p_alive(1, 1.0, 2.0),  # not fitted
        lambda: BetaGeoModel().fit([0, 0], [0.0, 0.0], [5.0, 6.0]),  # nobody repeats
        lambda: BetaGeoModel(max_iter=1).fit(*cdnow),  # optimiser stops short
        lambda: BetaGeoModel(penalizer=-1.0).fit(*cdnow),
        lambda: BetaGeoModel.from_dict({"format": "something else"}),
        lambda: BetaGeoModel.from_dict({"format": "decayrec.bgnbd", "version": 1, "hyper": {}, "fit": {}}),
    ]
    for case in cases:
        with pytest.raises(InputError) as err:
            case()
        assert err.value.fix
    model = BetaGeoModel().fit(*cdnow)
    with pytest.raises(InputError):
        model.p_active(-1.0, 1, 1.0, 2.0)


def test_analytic_gradient_matches_finite_differences(cdnow):
    from scipy.optimize import approx_fprime

    from decayrec.lapse.bgnbd import _Summary

    model, data = BetaGeoModel(), _Summary.of(*cdnow)
    for log_theta in (np.log([0.24, 4.4, 0.79, 2.4]), np.log([1.3, 0.5, 3.0, 0.6])):
        numeric = approx_fprime(log_theta, lambda u: model._objective(u, data)[0], 1e-7)
        np.testing.assert_allclose(model._objective(log_theta, data)[1], numeric, rtol=1e-4, atol=1e-6)
