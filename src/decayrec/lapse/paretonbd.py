"""The Pareto/NBD model of repeat buying (Schmittlein, Morrison and Colombo 1987), fitted by maximum likelihood.

While alive, a customer buys as a Poisson process of rate ``lambda ~ Gamma(r, alpha)``;
their lifetime is exponential with rate ``mu ~ Gamma(s, beta)``, so unlike BG/NBD a
customer can drop out at any moment, not only right after a purchase. A customer's data
is ``(x, t_x, T)``: repeat purchases, time of the last one (0 if none) and time since the
first purchase, in one unit (weeks for CDNOW).

Likelihood (Fader and Hardie 2005, "A note on deriving the Pareto/NBD model", eq. 22)::

    L = G(r+x) alpha^r beta^s / G(r) * [ 1 / ((alpha+T)^(r+x) (beta+T)^s) + s / (r+s+x) * A0 ]

with ``A0`` a difference of two Gauss hypergeometric terms (:func:`_log_a0`). Given the
history and alive at ``T``, ``lambda ~ Gamma(r+x, alpha+T)`` and ``mu ~ Gamma(s, beta+T)``
independently, so P(at least one purchase in ``(T, T+t]``) is::

    P(alive) * integral_0^t E[lambda exp(-(lambda+mu) u)] du
             = P(alive) * integral_0^t (r+x)/(alpha+T) ((alpha+T)/(alpha+T+u))^(r+x+1) ((beta+T)/(beta+T+u))^s du

(alive and buying before dying: ``lambda/(lambda+mu) (1 - exp(-(lambda+mu) t))``). The
integral is taken by Gauss-Legendre after the change of variables
``y = 1 - ((alpha+T)/(alpha+T+u))^(r+x)``, which leaves the smooth factor
``((beta+T)/(beta+T+u))^s`` on ``[0, y(t)]``; a test checks it against a simulation.
"""

from __future__ import annotations

import json
import math
from typing import Any, cast

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

from decayrec.errors import InputError
from decayrec.lapse.bgnbd import _check_horizon, _check_summary

__all__ = ["ParetoNBDModel"]

_FORMAT = "decayrec.paretonbd"
_VERSION = 1
_NAMES = ("r", "alpha", "s", "beta")
_LOG_BOUND = 15.0
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(48)


def _log_a0(theta, x, tx, age) -> np.ndarray:
    """``log A0``: the hypergeometric part of the likelihood, on the branch that keeps ``z`` in ``[0, 1)``."""
    r, alpha, s, beta = theta
    a = r + s + x
    c = a + 1.0
    if alpha >= beta:
        b, base, gap = s + 1.0, alpha, alpha - beta
    else:
        b, base, gap = r + x, beta, beta - alpha
    first = np.log(hyp2f1(a, b, c, gap / (base + tx))) - a * np.log(base + tx)
    second = np.log(hyp2f1(a, b, c, gap / (base + age))) - a * np.log(base + age)
    # A0 = exp(first) - exp(second) >= 0 (equal where t_x = T); log1p(-exp(.)) keeps its precision.
    with np.errstate(divide="ignore", invalid="ignore"):
        return first + np.log1p(-np.exp(np.minimum(second - first, 0.0)))


def _log_died_integral(theta, x, tx, age) -> np.ndarray:
    """``log(s/(r+s+x) A0) = log(s * integral_{t_x}^T (alpha+u)^-(r+x) (beta+u)^-(s+1) du)`` by quadrature.

    With ``q = r + s + x``, ``c`` the larger of ``alpha`` and ``beta``, and the change of
    variables ``y = 1 - ((c+t_x)/(c+u))^q``, the integral is ``((c+t_x)^-q / q)`` times the
    integral over ``[0, y(T)]`` of a ratio that falls from a bound to 1:
    ``((alpha+u)/(beta+u))^(s+1)`` where ``c = alpha``, ``((beta+u)/(alpha+u))^(r+x)`` where
    ``c = beta`` (the two branches of the hypergeometric form, :func:`_log_a0`, which a
    test checks it against). Gauss-Legendre takes it as fast for large ``r, s`` as for small.
    """
    r, alpha, s, beta = theta
    if alpha >= beta:
        c, other, power = alpha, beta, s + 1.0
    else:
        c, other, power = beta, alpha, r + x
    q = (r + s + x)[..., None]
    c0 = (c + tx)[..., None]
    span = (age - tx)[..., None]
    with np.errstate(divide="ignore"):  # -inf where t_x = T: no time to die in
        log_y_max = np.log(-np.expm1(-q * np.log1p(span / c0)))
    y = np.exp(log_y_max) * (_NODES + 1.0) / 2.0
    v = c0 * np.expm1(-np.log1p(-np.minimum(y, 1.0 - 1e-16)) / q)  # u - t_x at each node
    log_ratio = np.asarray(power)[..., None] * (np.log(c0 + v) - np.log(other + tx[..., None] + v))
    peak = log_ratio.max(axis=-1, keepdims=True)
    log_sum = np.log(np.sum(_WEIGHTS * np.exp(log_ratio - peak), axis=-1)) + peak[..., 0]
    return np.log(s) + log_y_max[..., 0] - np.log(2.0) + log_sum - np.log(q[..., 0]) - q[..., 0] * np.log(c0[..., 0])


def _log_terms(theta, x, tx, age) -> tuple[np.ndarray, np.ndarray]:
    """``log`` of the likelihood's two bracketed terms: "alive at T" and "died in (t_x, T]"."""
    r, alpha, s, beta = theta
    alive = -(r + x) * np.log(alpha + age) - s * np.log(beta + age)
    died = _log_died_integral(theta, x, tx, age)
    return alive, died


def _loglik(theta, x, tx, age, counts) -> float:
    r, alpha, s, beta = theta
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        alive, died = _log_terms(theta, x, tx, age)
        per = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta) + np.logaddexp(alive, died)
        total = float(np.sum(counts * per))
    return total if math.isfinite(total) else -math.inf


class ParetoNBDModel:
    """Pareto/NBD "buy till you die" model: who is still a customer, and how much will they buy.

    Parameters
    ----------
    penalizer
        L2 penalty on the parameters, added to the mean negative log-likelihood (as in
        ``lifetimes``); 0 is plain MLE.
    max_iter
        Maximum optimiser iterations.

    Attributes
    ----------
    params_ : dict
        Fitted ``r, alpha, s, beta``.
    log_likelihood_ : float
        Total log-likelihood at the fit (without the penalty).
    n_customers_ : int
        Customers fitted.
    """

    def __init__(self, *, penalizer: float = 0.0, max_iter: int = 2000):
        self.penalizer = penalizer
        self.max_iter = max_iter

    def fit(self, frequency, recency, T) -> ParetoNBDModel:
        """Maximum-likelihood ``r, alpha, s, beta`` from per-customer ``(x, t_x, T)``.

        Customers with the same ``(x, t_x, T)`` share one likelihood evaluation, so a log
        at day resolution costs its distinct summaries, not its customers.
        """
        if not (self.penalizer >= 0 and self.max_iter >= 1):
            raise InputError(
                f"bad hyper-parameters penalizer={self.penalizer}, max_iter={self.max_iter}",
                "use penalizer >= 0 and max_iter >= 1",
            )
        x, tx, age = (v.ravel() for v in _check_summary(frequency, recency, T))
        if not (x > 0).any():
            raise InputError(
                "no customer has a repeat transaction, so the purchase rate cannot be told from the dropout rate",
                "fit on a longer period or more customers (frequency > 0 for some)",
            )
        rows, counts = np.unique(np.column_stack([x, tx, age]), axis=0, return_counts=True)
        ux, utx, uage = rows.T
        n = float(x.size)

        def objective(log_theta: np.ndarray) -> float:
            theta = np.exp(log_theta)
            ll = _loglik(theta, ux, utx, uage, counts)
            if not math.isfinite(ll):
                return 1e10
            return -ll / n + self.penalizer * float(np.sum(theta**2))

        # L-BFGS-B on the log-parameters from the all-ones start, with finite-difference
        # gradients (the likelihood's gradient has no cheap closed form).
        res = minimize(
            objective,
            np.zeros(4),
            method="L-BFGS-B",
            bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4,
            options={"maxiter": self.max_iter, "ftol": 1e-13, "gtol": 1e-9, "eps": 1e-7},
        )
        theta = np.exp(res.x)
        if not math.isfinite(res.fun) or res.fun >= 1e10:
            raise InputError(
                f"the Pareto/NBD fit found no finite likelihood (parameters {_rounded(theta)})",
                "fit on a longer period or more customers, or check that the summary is in a sensible unit (weeks)",
            )
        self.params_ = dict(zip(_NAMES, map(float, theta)))
        self.log_likelihood_ = _loglik(theta, ux, utx, uage, counts)
        self.n_customers_ = int(x.size)
        return self

    def _theta(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise InputError("this ParetoNBDModel is not fitted", "call fit(frequency, recency, T) first")
        return cast(tuple[float, float, float, float], tuple(self.params_[k] for k in _NAMES))

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """Probability each customer is still alive at ``T``: the "alive" term's share of the likelihood."""
        x, tx, age = _check_summary(frequency, recency, T)
        alive, died = _log_terms(self._theta(), x, tx, age)
        return np.exp(alive - np.logaddexp(alive, died))

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """Expected transactions in ``(T, T + t]`` given the history (Fader and Hardie 2005, eq. 27)."""
        x, tx, age = _check_summary(frequency, recency, T)
        t = _check_horizon(t)
        r, alpha, s, beta = self._theta()
        rate = (r + x) / (alpha + age)
        if abs(s - 1.0) < 1e-9:
            life = (beta + age) * np.log1p(t / (beta + age))
        else:
            life = (beta + age) / (s - 1.0) * -np.expm1((s - 1.0) * (np.log(beta + age) - np.log(beta + age + t)))
        return rate * life * self.p_alive(x, tx, age)

    def p_active(self, t, frequency, recency, T) -> np.ndarray:
        """Probability of at least one transaction in ``(T, T + t]`` given the history (see the module doc)."""
        x, tx, age = _check_summary(frequency, recency, T)
        t = _check_horizon(t)
        r, alpha, s, beta = self._theta()
        x, tx, age, t = np.broadcast_arrays(x, tx, age, t)
        k, a, b = (r + x)[..., None], (alpha + age)[..., None], (beta + age)[..., None]
        y_max = -np.expm1(k * (np.log(a) - np.log(a + t[..., None])))
        y = y_max * (_NODES + 1.0) / 2.0  # Gauss-Legendre nodes mapped onto [0, y_max]
        u = a * np.expm1(-np.log1p(-np.minimum(y, 1.0 - 1e-16)) / k)
        integral = (y_max[..., 0] / 2.0) * np.sum(_WEIGHTS * np.exp(-s * np.log1p(u / b)), axis=-1)
        return np.clip(integral, 0.0, 1.0) * self.p_alive(x, tx, age)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (hyper-parameters, and the fit when there is one)."""
        doc: dict[str, Any] = {
            "format": _FORMAT,
            "version": _VERSION,
            "hyper": {"penalizer": float(self.penalizer), "max_iter": int(self.max_iter)},
        }
        if hasattr(self, "params_"):
            doc["fit"] = {"params": dict(self.params_), "log_likelihood": self.log_likelihood_, "n_customers": self.n_customers_}
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ParetoNBDModel:
        """Rebuild a model from :meth:`to_dict` output."""
        fix = "pass the dict written by ParetoNBDModel.to_dict"
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise InputError("not a decayrec Pareto/NBD document", fix)
        if doc.get("version") != _VERSION:
            raise InputError(
                f"Pareto/NBD document version {doc.get('version')} is not readable (this release reads {_VERSION})",
                "refit the model with this release",
            )
        try:
            model = cls(**doc["hyper"])
            fit = doc.get("fit")
            if fit is not None:
                params = {k: float(fit["params"][k]) for k in _NAMES}
                log_likelihood, n_customers = float(fit["log_likelihood"]), int(fit["n_customers"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed Pareto/NBD document ({exc!r})", fix) from exc
        if fit is not None:
            if not all(math.isfinite(v) and v > 0 for v in params.values()):
                raise InputError(f"Pareto/NBD parameters must be positive and finite, got {params}", fix)
            model.params_, model.log_likelihood_, model.n_customers_ = params, log_likelihood, n_customers
        return model

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return "ParetoNBDModel(unfitted)"
        return "ParetoNBDModel(" + ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items()) + ")"


def _rounded(theta: np.ndarray) -> dict[str, float]:
    return {k: float(f"{v:.6g}") for k, v in zip(_NAMES, theta)}
