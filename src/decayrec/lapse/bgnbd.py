"""The BG/NBD model of repeat buying (Fader, Hardie and Lee 2005), fitted by maximum likelihood.

While alive, a customer buys as a Poisson process of rate ``lambda ~ Gamma(r, alpha)``;
right after each repeat purchase they drop out with probability ``p ~ Beta(a, b)``. A
customer's data is ``(x, t_x, T)``: repeat purchases, time of the last one (0 if none)
and time since the first purchase, in any one unit (weeks for CDNOW).

Likelihood (FHL 2005, eq. 6), in logs for stability::

    L = B(a, b+x)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
      + [x > 0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))

``p_active`` is closed form because dropout only happens at a purchase: a customer alive
at ``T`` (posterior ``lambda ~ Gamma(r+x, alpha+T)``) has no purchase in ``(T, T+t]``
with probability ``((alpha+T) / (alpha+T+t))^(r+x)``, a dead one with probability 1.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple, cast

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, gammaln, hyp2f1, psi

from decayrec.errors import InputError

__all__ = ["BetaGeoModel"]

_FORMAT = "decayrec.bgnbd"
_VERSION = 1
_NAMES = ("r", "alpha", "a", "b")
_LOG_BOUND = 20.0  # |log parameter| limit: e^20 ~ 5e8


def _check_summary(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float64 arrays ``(x, t_x, T)`` broadcast to one shape."""
    try:
        x, tx, age = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (frequency, recency, T)))
    except ValueError as exc:
        raise InputError(
            f"frequency, recency and T do not have matching shapes ({exc})", "pass one value per customer in each array"
        ) from exc
    fix = "build the summary with decayrec.lapse.rfm.rfm_summary, or check the columns' order"
    if not (np.isfinite(x).all() and np.isfinite(tx).all() and np.isfinite(age).all()):
        raise InputError("frequency, recency or T contain NaN or infinity", fix)
    if (x < 0).any() or (tx < 0).any() or (age < 0).any():
        raise InputError("frequency, recency and T must be non-negative", fix)
    if (x != np.round(x)).any():
        raise InputError("frequency must be a whole number of repeat transactions", fix)
    if (tx > age).any():
        raise InputError(f"recency exceeds T for {int((tx > age).sum())} customer(s)", fix)
    if ((x == 0) & (tx > 0)).any():
        raise InputError("a customer with frequency 0 has recency > 0 (it must be 0)", fix)
    return x, tx, age


class _Summary(NamedTuple):
    """Fit data: ``(x, t_x, T)`` and the distinct counts ``xs`` with ``counts`` of each.

    ``x`` is a whole number with few distinct values, so every gamma and digamma
    function of ``x`` is evaluated once per distinct value, not once per customer.
    """

    x: np.ndarray
    tx: np.ndarray
    age: np.ndarray
    xs: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, tx: np.ndarray, age: np.ndarray) -> _Summary:
        xs, counts = np.unique(x, return_counts=True)
        return cls(x, tx, age, xs, counts)


def _log_odds_dead(theta, x, tx, age) -> np.ndarray:
    """``log P(dead) / P(alive)`` given the history; ``-inf`` for ``x = 0`` (no dropout yet)."""
    r, alpha, a, b = theta
    repeat = x > 0
    # b + x - 1 may be <= 0 where x == 0; there the term is absent, so feed the log a 1.
    log_ratio = np.log(alpha + age) - np.log(alpha + tx)
    odds = np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) + (r + x) * log_ratio
    return np.where(repeat, odds, -np.inf)


def _loglik(theta, data: _Summary) -> tuple[float, np.ndarray]:
    """Total log-likelihood and each customer's log-odds of being dead.

    ``log L = [terms in x only] - (r + x) log(alpha + T) + log(1 + odds_dead)``: the
    two-term sum of eq. 6 factored around its "alive" term, ``logaddexp`` for stability.
    """
    r, alpha, a, b = theta
    xs, n = data.xs, data.counts
    by_x = gammaln(r + xs) + gammaln(b + xs) - gammaln(a + b + xs)
    const = -gammaln(r) + r * np.log(alpha) - gammaln(b) + gammaln(a + b)
    d = _log_odds_dead(theta, data.x, data.tx, data.age)
    per_customer = np.logaddexp(0.0, d) - (r + data.x) * np.log(alpha + data.age)
    return float((n * by_x).sum() + data.x.size * const + per_customer.sum()), d


def _gradient(theta, data: _Summary, d: np.ndarray) -> np.ndarray:
    """Gradient of the total log-likelihood in ``(r, alpha, a, b)``."""
    r, alpha, a, b = theta
    x, tx, age, xs, n = data
    dead = expit(d)  # posterior weight of the "dropped out at t_x" term
    log_ratio = np.log(alpha + age) - np.log(alpha + tx)
    bx1 = np.where(x > 0, b + x - 1, 1.0)
    m = x.size
    d_r = (n * psi(r + xs)).sum() - m * (psi(r) - np.log(alpha)) - np.log(alpha + age).sum()
    d_r += (dead * log_ratio).sum()
    d_alpha = m * r / alpha - ((r + x) * ((1 - dead) / (alpha + age) + dead / (alpha + tx))).sum()
    d_a = -(n * psi(a + b + xs)).sum() + m * psi(a + b) + dead.sum() / a
    d_b = (n * (psi(b + xs) - psi(a + b + xs))).sum() + m * (psi(a + b) - psi(b)) - (dead / bx1).sum()
    return np.array([d_r, d_alpha, d_a, d_b])


class BetaGeoModel:
    """BG/NBD "buy till you die" model: who is still a customer, and how much will they buy.

    Parameters
    ----------
    penalizer
        L2 penalty on the natural parameters, added to the mean negative
        log-likelihood (as in the ``lifetimes`` package); 0 is plain MLE.
    tol
        Convergence tolerance passed to ``scipy.optimize.minimize`` (L-BFGS-B).
    max_iter
        Maximum optimiser iterations.

    Attributes
    ----------
    params_ : dict
        Fitted ``r, alpha, a, b``.
    log_likelihood_ : float
        Total log-likelihood at the fit (without the penalty).
    standard_errors_ : dict
        Asymptotic standard errors of the parameters (inverse Hessian on the log scale,
        delta method); NaN where the Hessian is not positive definite, which is the sign
        of a parameter the data do not identify (it then runs to an extreme value).
    n_customers_ : int
        Customers fitted.
    """

    def __init__(self, *, penalizer: float = 0.0, tol: float = 1e-10, max_iter: int = 500):
        self.penalizer = penalizer
        self.tol = tol
        self.max_iter = max_iter

    # -- fitting -----------------------------------------------------------------------
    def _objective(self, log_theta, data: _Summary):
        """Mean penalised negative log-likelihood and its gradient in log-parameters."""
        theta = np.exp(log_theta)
        ll, d = _loglik(theta, data)
        n = data.x.size
        value = -ll / n + self.penalizer * np.sum(theta**2)
        grad = -_gradient(theta, data, d) / n + 2 * self.penalizer * theta
        return value, grad * theta

    def fit(self, frequency, recency, T) -> BetaGeoModel:
        """Maximum-likelihood ``r, alpha, a, b`` from per-customer ``(x, t_x, T)``.

        Parameters
        ----------
        frequency, recency, T
            Repeat transactions, time of the last one and age, one entry per customer
            (e.g. the fields of :class:`decayrec.lapse.rfm.RFM`).

        Returns
        -------
        BetaGeoModel
            ``self``, fitted.
        """
        if not (self.penalizer >= 0 and self.tol > 0 and self.max_iter >= 1):
            raise InputError(
                f"bad hyper-parameters penalizer={self.penalizer}, tol={self.tol}, max_iter={self.max_iter}",
                "use penalizer >= 0, tol > 0 and max_iter >= 1",
            )
        data = _Summary.of(*(v.ravel() for v in _check_summary(frequency, recency, T)))
        if not (data.x > 0).any():
            raise InputError(
                "no customer has a repeat transaction, so dropout cannot be estimated",
                "fit on a longer period or more customers (frequency > 0 for some)",
            )
        # Log-parameters start at 0 (all parameters 1); the bounds only stop a parameter
        # the data do not pin down (e.g. nobody lapses: a -> 0) from overflowing.
        res = self._minimize(np.zeros(4), data)
        # A line search that fails along a flat ridge (r and alpha growing together: a
        # gamma collapsing to a point) often goes on from where it stopped: restart there.
        for _ in range(3):
            if res.success:
                break
            again = self._minimize(res.x, data)
            progress = res.fun - again.fun
            res = again if again.fun <= res.fun else res
            if not progress > 1e-12 * max(1.0, abs(res.fun)):
                break
        theta = np.exp(res.x)
        # A line search that stalls at the optimum (float precision) is a success too, and so
        # is one whose restarts no longer improve the likelihood (a flat ridge at the bound).
        stalled = np.isfinite(res.fun) and (np.max(np.abs(res.jac)) < 1e-6 or self._flat(res.x, data))
        if not (res.success or stalled):
            raise InputError(
                f"the BG/NBD fit did not converge ({res.message}; parameters {_rounded(theta)})",
                "fit on a longer period or more customers (decayrec churn), or, from Python, "
                "BetaGeoModel(penalizer=0.001) or a larger max_iter; check that a summary is in weeks",
            )
        self.params_ = dict(zip(_NAMES, map(float, theta)))
        self.log_likelihood_ = _loglik(theta, data)[0]
        self.standard_errors_ = dict(zip(_NAMES, map(float, self._standard_errors(res.x, data))))
        self.n_customers_ = int(data.x.size)
        return self

    def _minimize(self, start: np.ndarray, data: _Summary):
        return minimize(
            self._objective,
            start,
            args=(data,),
            jac=True,
            method="L-BFGS-B",
            bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4,
            tol=self.tol,
            options={"maxiter": self.max_iter},
        )

    def _flat(self, log_theta: np.ndarray, data: _Summary) -> bool:
        """Whether no step of 1% in any log-parameter improves the objective by more than 1e-9 (relative)."""
        f0 = self._objective(log_theta, data)[0]
        for j in range(log_theta.size):
            for step in (-0.01, 0.01):
                probe = log_theta.copy()
                probe[j] = np.clip(probe[j] + step, -_LOG_BOUND, _LOG_BOUND)
                if self._objective(probe, data)[0] < f0 - 1e-9 * max(1.0, abs(f0)):
                    return False
        return True

    def _standard_errors(self, log_theta, data: _Summary) -> np.ndarray:
        """Delta-method standard errors from a central-difference Hessian of the analytic gradient."""
        n, step = data.x.size, 1e-5
        hess = np.empty((4, 4))
        for i in range(4):  # 4 parameters: a loop over parameters, not over customers
            e = np.zeros(4)
            e[i] = step
            hi = self._objective(log_theta + e, data)[1]
            lo = self._objective(log_theta - e, data)[1]
            hess[i] = n * (hi - lo) / (2 * step)
        hess = (hess + hess.T) / 2
        try:
            var = np.diag(np.linalg.inv(hess))
        except np.linalg.LinAlgError:
            return np.full(4, np.nan)
        return np.where(var > 0, np.exp(log_theta) * np.sqrt(np.clip(var, 0, None)), np.nan)

    # -- prediction --------------------------------------------------------------------
    def _theta(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise InputError("this BetaGeoModel is not fitted", "call fit(frequency, recency, T) first")
        return cast(tuple[float, float, float, float], tuple(self.params_[k] for k in _NAMES))  # _NAMES: the 4 parameters

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """Probability each customer is still alive at ``T`` (FHL 2005, eq. 11)."""
        x, tx, age = _check_summary(frequency, recency, T)
        return expit(-_log_odds_dead(self._theta(), x, tx, age))

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """Expected transactions in ``(T, T + t]`` given the history (FHL 2005, eq. 10)."""
        x, tx, age = _check_summary(frequency, recency, T)
        t = _check_horizon(t)
        theta = self._theta()
        r, alpha, a, b = theta
        z = t / (alpha + age + t)
        head = (a + b + x - 1) / (a - 1)  # a = 1 exactly is a removable singularity left as is
        tail = 1.0 - np.exp((r + x) * np.log1p(-z)) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        return head * tail * expit(-_log_odds_dead(theta, x, tx, age))

    def p_active(self, t, frequency, recency, T) -> np.ndarray:
        """Probability of at least one transaction in ``(T, T + t]`` given the history."""
        x, tx, age = _check_summary(frequency, recency, T)
        t = _check_horizon(t)
        theta = self._theta()
        r, alpha = theta[:2]
        # 1 - ((alpha+T)/(alpha+T+t))^(r+x), via expm1 so small t keeps its precision.
        buys_if_alive = -np.expm1((r + x) * (np.log(alpha + age) - np.log(alpha + age + t)))
        return buys_if_alive * expit(-_log_odds_dead(theta, x, tx, age))

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (hyper-parameters, and the fit when there is one)."""
        doc: dict[str, Any] = {
            "format": _FORMAT,
            "version": _VERSION,
            "hyper": {"penalizer": float(self.penalizer), "tol": float(self.tol), "max_iter": int(self.max_iter)},
        }
        if hasattr(self, "params_"):
            doc["fit"] = {
                "params": dict(self.params_),
                "log_likelihood": self.log_likelihood_,
                "standard_errors": {k: v if math.isfinite(v) else None for k, v in self.standard_errors_.items()},
                "n_customers": self.n_customers_,
            }
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> BetaGeoModel:
        """Rebuild a model from :meth:`to_dict` output."""
        fix = "pass the dict written by BetaGeoModel.to_dict"
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise InputError("not a decayrec BG/NBD document", fix)
        if doc.get("version") != _VERSION:
            raise InputError(
                f"BG/NBD document version {doc.get('version')} is not readable (this release reads {_VERSION})",
                "refit the model with this release",
            )
        try:
            model = cls(**doc["hyper"])
            fit = doc.get("fit")
            if fit is not None:
                params = {k: float(fit["params"][k]) for k in _NAMES}
                ses = {k: float("nan") if fit["standard_errors"][k] is None else float(fit["standard_errors"][k]) for k in _NAMES}
                log_likelihood, n_customers = float(fit["log_likelihood"]), int(fit["n_customers"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed BG/NBD document ({exc!r})", fix) from exc
        if fit is not None:
            if not all(math.isfinite(v) and v > 0 for v in params.values()):
                raise InputError(f"BG/NBD parameters must be positive and finite, got {params}", fix)
            model.params_, model.standard_errors_ = params, ses
            model.log_likelihood_, model.n_customers_ = log_likelihood, n_customers
        return model

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict())

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return "BetaGeoModel(unfitted)"
        return "BetaGeoModel(" + ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items()) + ")"


def _rounded(theta: np.ndarray) -> dict[str, float]:
    """Parameters as a readable dict for messages."""
    return {k: float(f"{v:.6g}") for k, v in zip(_NAMES, theta)}


def _check_horizon(t) -> np.ndarray:
    """A validated non-negative horizon (scalar or array, broadcast against customers)."""
    t = np.asarray(t, dtype=np.float64)
    if not np.isfinite(t).all() or (t < 0).any():
        raise InputError("the horizon t must be finite and non-negative", "pass t in the same unit as recency and T (e.g. weeks)")
    return t
