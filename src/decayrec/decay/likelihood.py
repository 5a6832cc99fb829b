"""The point-process likelihood of engagement given decayed interest, and its EM.

For a fixed half-life the log-likelihood is concave in the baselines and the excitation;
:func:`em` maximises it (the branching-structure algorithm, vectorised over all sequences
and categories at once, each sequence's baseline integrated against a Gamma prior), and
:func:`summarise` turns a profile over the half-life grid into an estimate with its 95%
profile-likelihood interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy.special import digamma, gammaln, ndtri, polygamma

from decayrec.decay.config import FitConfig
from decayrec.decay.kernels import LN2, states_before_events
from decayrec.decay.model import HalfLife
from decayrec.decay.sequences import Sequences

__all__ = [
    "CI_DROP",
    "NODES",
    "Curve",
    "EMResult",
    "Problem",
    "build_problem",
    "em",
    "fit_at",
    "half_life_grid",
    "kernel_mass",
    "point_states",
    "resolve_grid",
    "summarise_profile",
]
CI_DROP = 1.920729  # half the 95% quantile of chi-square(1)


# -- the likelihood machinery ----------------------------------------------------------
def point_states(data: Sequences, half_life: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """S just before every event, with a per-event half-life (constant within a sequence)."""
    return states_before_events(data.seq, data.times / half_life, weights, 1.0)


def kernel_mass(data: Sequences, half_life: np.ndarray, start: float | None = None) -> np.ndarray:
    """Per event: the integral of its unit kernel over (max(t_j, start), end of its sequence]."""
    end = data.end[data.seq]
    lo = data.times if start is None else np.maximum(data.times, start)
    mass = (half_life / LN2) * (np.exp2(-(lo - data.times) / half_life) - np.exp2(-(end - data.times) / half_life))
    return cast(np.ndarray, np.maximum(mass, 0.0))  # numpy's ufunc stubs give Any here


@dataclass
class Problem:
    """One likelihood to maximise: excitation features at the points and their compensators.

    ``features[i, c]`` is component c's excitation at point i (alpha of group
    ``point_group[i]`` multiplies it); ``compensator[g, c]`` is the matching integral.
    The baseline of sequence k is ``mu_k * season(day)`` on its window.
    """

    data: Sequences
    features: np.ndarray
    compensator: np.ndarray
    point_seq: np.ndarray
    point_group: np.ndarray
    point_day: np.ndarray
    seq_group: np.ndarray
    n_groups: int


def build_problem(data: Sequences, idx: np.ndarray, features: np.ndarray, compensator: np.ndarray, by_category: bool) -> Problem:
    groups = data.cat[idx] if by_category else np.zeros(idx.size, dtype=np.int64)
    seq_group = data.seq_cat if by_category else np.zeros(data.n_seq, dtype=np.int64)
    return Problem(
        data,
        features,
        compensator,
        data.seq[idx],
        groups,
        np.floor(data.times[idx]).astype(np.int64),
        seq_group,
        data.n_cat if by_category else 1,
    )


def _season_exposure(data: Sequences, season: np.ndarray) -> np.ndarray:
    """Per sequence: the integral of the daily season factor over its window."""
    cum = np.r_[0.0, np.cumsum(season)]

    def integral(t: np.ndarray) -> np.ndarray:
        d = np.clip(np.floor(t).astype(np.int64), 0, season.size - 1)
        return cast(np.ndarray, cum[d] + (t - d) * season[d])  # numpy types fancy indexing as Any

    return cast(np.ndarray, np.maximum(integral(data.end) - integral(data.first), 0.0))  # numpy's ufunc stubs give Any here


def _day_totals(data: Sequences, weight: np.ndarray) -> np.ndarray:
    """sum over sequences of weight_k * (time of day d inside k's window), for every day d."""
    n = data.n_days
    diff = np.zeros(n + 2)
    for t, sign in ((data.first, 1.0), (data.end, -1.0)):
        d = np.clip(np.floor(t).astype(np.int64), 0, n - 1)
        frac = t - d
        # a window edge inside day d covers (1 - frac) of it from the start edge's side
        np.add.at(diff, d, sign * weight * (1.0 - frac))
        np.add.at(diff, d + 1, sign * weight * frac)
    return np.cumsum(diff)[:n]


@dataclass
class EMResult:
    loglik: float  # the evidence lower bound (ELBO), the objective compared across half-lives
    loglik_by_group: np.ndarray
    mu: np.ndarray  # posterior mean baseline per sequence
    alpha: np.ndarray  # (n_groups, m)
    shape: np.ndarray  # Gamma prior of baselines, per category: shape
    rate: np.ndarray  # and rate
    season: np.ndarray  # daily factor of the baseline, mean 1
    proposal: tuple[np.ndarray, np.ndarray]  # per sequence: the Gamma tracking mu's posterior
    log_marginal: np.ndarray | None = None  # per sequence: log-likelihood with mu integrated out (before alpha's compensator)


NODES = 12  # quadrature nodes per sequence for the baseline integral
# Standard-normal quantiles at the nodes: the proposal for log mu_k is normal, moment-matched.
_Z = ndtri((np.arange(NODES) + 0.5) / NODES)
_LOG_PHI = -0.5 * _Z**2 - 0.5 * math.log(2 * math.pi)


def em(problem: Problem, iterations: int, init: EMResult | None = None, season: np.ndarray | None = None) -> EMResult:
    """EM for the Hawkes likelihood with each sequence's baseline integrated out.

    Each sequence's baseline mu_k has a Gamma(shape_c, rate_c) prior of its category (both
    learned, empirical Bayes); alpha is a point estimate per group and component; the
    season is one factor per day (mean 1). The integral over mu_k is done by importance
    quadrature at ``NODES`` quantiles of a Gamma proposal that tracks each sequence's
    posterior (moment-matched every iteration), so the objective is the marginal
    likelihood itself. The proposal is log-normal (cheap nodes, exact density). Integrating mu_k out, instead of fitting one free baseline per
    sequence, is what keeps long half-lives identifiable: a free baseline absorbs slow
    excitation and biases half-lives short (the incidental-parameter problem).

    ``season``, when given, is held fixed (the per-category fits take the pooled fit's: the
    day-of-calendar rhythm is the shop's, and re-learning it in every run made each
    category's profile depend on the other categories' half-lives in that run).
    """
    data, features = problem.data, problem.features
    n_seq, n_cat, seq_cat = data.n_seq, data.n_cat, data.seq_cat
    m = features.shape[1]
    pseq, pday = problem.point_seq, problem.point_day
    counts = np.bincount(pseq, minlength=n_seq).astype(float)
    fixed = season is not None
    if init is None:
        season = np.ones(data.n_days) if season is None else season
        exposure = _season_exposure(data, season)
        cat_rate = np.bincount(seq_cat, counts, minlength=n_cat) / np.maximum(
            np.bincount(seq_cat, exposure, minlength=n_cat), 1e-12
        )
        shape = np.full(n_cat, 0.5)
        rate = shape / np.maximum(cat_rate, 1e-9)
        alpha = np.full((problem.n_groups, m), 0.5 * max(counts.sum(), 1.0) / max(problem.compensator.sum(), 1e-12))
        A, B = shape[seq_cat] + 0.5 * counts, rate[seq_cat] + exposure
        # log-normal proposal matched to the Gamma(A, B) first guess
        loc, scale = digamma(A) - np.log(B), np.sqrt(polygamma(1, A))
    else:
        season = init.season.copy() if season is None else season
        shape, rate = init.shape.copy(), init.rate.copy()
        loc, scale = init.proposal[0].copy(), init.proposal[1].copy()
        exposure = _season_exposure(data, season)
        # EM's alpha update is multiplicative: an alpha at (or near) 0 stays there for good.
        # A warm start from a half-life where excitation was useless (a kernel shorter than
        # the log's time resolution) must not pin alpha at 0 for every later half-life, so
        # each component restarts from at least a tenth of the cold guess.
        guess = 0.5 * max(counts.sum(), 1.0) / np.where(problem.compensator > 0, problem.compensator, np.inf)
        alpha = np.maximum(init.alpha, 0.1 * guess) if init.alpha.shape == guess.shape else guess
    safe_comp = np.where(problem.compensator > 0, problem.compensator, np.inf)
    for it in range(iterations + 1):
        log_nodes = loc[:, None] + scale[:, None] * _Z[None, :]
        nodes = np.exp(log_nodes)  # (n_seq, Q)
        excite = alpha[problem.point_group] * features  # (n_pts, m)
        x = excite.sum(1)
        base = nodes[pseq] * season[pday][:, None]  # (n_pts, Q)
        lam = np.maximum(base + x[:, None], 1e-300)
        loglam = np.log(lam)
        ell = np.zeros((n_seq, NODES))
        for q in range(NODES):
            ell[:, q] = np.bincount(pseq, loglam[:, q], minlength=n_seq)
        a, b = shape[seq_cat, None], rate[seq_cat, None]
        log_prior = a * np.log(b) - gammaln(a) + (a - 1) * log_nodes - b * nodes
        log_prop = _LOG_PHI[None, :] - np.log(scale)[:, None] - log_nodes  # density of mu, not of log mu
        ell += -nodes * exposure[:, None] + log_prior - log_prop
        top = ell.max(1, keepdims=True)
        weight = np.exp(ell - top)
        total = weight.sum(1, keepdims=True)
        log_marginal = top[:, 0] + np.log(total[:, 0] / NODES)
        if it == iterations:
            break
        post = weight / total  # posterior weights of the nodes, per sequence
        pw = post[pseq]
        inv = (pw / lam).sum(1)  # E[1 / lambda] under the node posterior, per point
        r0 = (pw * base / lam).sum(1)
        for c in range(m):
            alpha[:, c] = np.bincount(problem.point_group, excite[:, c] * inv, minlength=problem.n_groups) / safe_comp[:, c]
        mean_mu = (post * nodes).sum(1)
        mean_log = (post * log_nodes).sum(1)
        var_log = (post * (log_nodes - mean_log[:, None]) ** 2).sum(1)
        # Next proposal: the posterior's log-moments, a little wider so its tails cover it.
        loc, scale = mean_log, np.clip(1.2 * np.sqrt(var_log), 0.02, 5.0)
        if it % 3 == 2:
            if not fixed:
                season = _season_update(data, pday, r0, mean_mu)
                exposure = _season_exposure(data, season)
            shape, rate = _gamma_prior(mean_mu, mean_log, seq_cat, n_cat, shape)
    per_group = np.bincount(problem.seq_group, log_marginal, minlength=problem.n_groups) - (alpha * problem.compensator).sum(1)
    mu = ((weight / total) * nodes).sum(1)
    return EMResult(float(per_group.sum()), per_group, mu, alpha, shape, rate, season, (loc, scale), log_marginal)


SEASON_PSEUDO_EVENTS = 10.0  # the season's shrinkage toward 1, in expected immigrant events per day


def _season_update(data: Sequences, pday: np.ndarray, r0: np.ndarray, mean_mu: np.ndarray) -> np.ndarray:
    """The daily season factor (mean 1) from the expected immigrant events of each day.

    Each day is shrunk toward 1 by :data:`SEASON_PSEUDO_EVENTS` pseudo-events, so days with
    little at risk (early, sparse logs; the end of each window) cannot swing it, while a day
    with hundreds of events keeps its own level. (Shrinking by a whole average day's
    evidence halved a real weekly cycle; the excitation then absorbed the rest and
    week-long half-lives came out 10 to 15% short.)
    """
    immigrants = np.bincount(pday, r0, minlength=data.n_days)
    at_risk = _day_totals(data, mean_mu)
    ok = at_risk > 0
    rate_all = max(immigrants.sum() / max(at_risk.sum(), 1e-300), 1e-300)
    prior = SEASON_PSEUDO_EVENTS / rate_all  # at-risk time that holds that many events at the mean rate
    season = (immigrants + SEASON_PSEUDO_EVENTS) / np.maximum(at_risk + prior, 1e-300) / rate_all
    if ok.any():
        season /= max(season[ok].mean(), 1e-300)
    return cast(np.ndarray, season)


def _gamma_prior(
    mean_mu: np.ndarray, mean_log: np.ndarray, seq_cat: np.ndarray, n_cat: int, shape: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Empirical-Bayes update of each category's Gamma prior from the baselines' posteriors."""
    n = np.maximum(np.bincount(seq_cat, minlength=n_cat), 1)
    m1 = np.bincount(seq_cat, mean_mu, minlength=n_cat) / n
    ml = np.bincount(seq_cat, mean_log, minlength=n_cat) / n
    # Maximise a*log(b) - lgamma(a) + (a-1)*E[log mu] - b*E[mu]: b in closed form, a by Newton.
    s = np.maximum(np.log(np.maximum(m1, 1e-300)) - ml, 1e-8)
    a = np.clip(shape, 1e-3, 1e4)
    for _ in range(20):
        g = np.log(a) - digamma(a) - s
        h = 1.0 / a - polygamma(1, a)
        a = np.clip(a - g / h, 1e-3, 1e4)
    return a, a / np.maximum(m1, 1e-300)


GRID_STEP = math.log(365.0 * 24.0) / 16.0  # the default spacing in log h: 17 points from 1 hour to 365 days


def resolve_grid(data: Sequences, config: FitConfig) -> FitConfig:
    """``config`` with the half-life grid made concrete for this log (see :class:`FitConfig`)."""
    lo, hi = config.grid_min_days, config.grid_max_days
    if lo is None:
        gaps = np.diff(data.times)[np.diff(data.seq) == 0]
        gaps = gaps[gaps > 0]
        lo = float(np.clip(np.quantile(gaps, 0.05), 1.0 / 1440.0, 1.0 / 24.0)) if gaps.size else 1.0 / 24.0
    if hi is None:
        span = float(data.now - data.times.min()) if data.times.size else 0.0
        hi = float(np.clip(2.0 * span, 30.0, 3650.0))
    if hi <= lo:
        hi = lo * 100.0  # a given floor above the automatic ceiling: two decades above it
    points = config.grid_points or max(round(math.log(hi / lo) / GRID_STEP) + 1, 5)
    return config.model_copy(update={"grid_min_days": lo, "grid_max_days": hi, "grid_points": points})


def half_life_grid(config: FitConfig) -> np.ndarray:
    """The log-spaced grid of a resolved config (:func:`resolve_grid`)."""
    assert config.grid_min_days and config.grid_max_days and config.grid_points, "resolve_grid first"
    return np.exp(np.linspace(math.log(config.grid_min_days), math.log(config.grid_max_days), config.grid_points))


@dataclass
class Curve:
    """Log-likelihood values of one parameter at points of log h (any order, any spacing)."""

    log_h: list[float]
    values: list[float]

    def add(self, log_h: float, value: float) -> None:
        self.log_h.append(float(log_h))
        self.values.append(float(value))

    def best(self) -> float:
        return self.log_h[int(np.argmax(self.values))]


def summarise_profile(
    curve: Curve,
    bounds: tuple[float, float],
    log_prior: Callable[[np.ndarray], np.ndarray] | None = None,
    events: int = 0,
    points: int = 0,
) -> HalfLife:
    """Estimate and 95% interval from the points nearest the maximum.

    A parabola through the top points (in log h) gives the estimate and its curvature the
    interval (log-likelihood within 1.92 of the maximum); where the curve is flat or
    one-sided, the interval runs to the grid's end.
    """
    x = np.asarray(curve.log_h)
    y = np.asarray(curve.values)
    post = y + (log_prior(x) if log_prior is not None else 0.0)
    order = np.argsort(x)
    x, y, post = x[order], y[order], post[order]
    # repeated points (refinements clipped at a grid edge) count once: a parabola needs 3 distinct x
    x, first = np.unique(x, return_index=True)
    y, post = y[first], post[first]
    j = int(np.argmax(post))
    near = np.argsort(np.abs(x - x[j]))[:5]
    est, lo, hi = x[j], bounds[0], bounds[1]
    if near.size >= 3:
        c2, c1, _ = np.polyfit(x[near] - x[j], post[near], 2)
        if c2 < 0:
            vertex = -c1 / (2 * c2)
            span = np.ptp(x[near])
            est = float(np.clip(x[j] + np.clip(vertex, -span, span), bounds[0], bounds[1]))
            half = math.sqrt(CI_DROP / -c2)
            lo, hi = max(est - half, bounds[0]), min(est + half, bounds[1])
    # a curve too flat for the parabola: read the interval off the points themselves
    top = post[j]
    below = post < top - CI_DROP
    left, right = np.flatnonzero(below & (x < est)), np.flatnonzero(below & (x > est))
    if not left.size:
        lo = bounds[0]
    if not right.size:
        hi = bounds[1]
    mle = x[int(np.argmax(y))]
    return HalfLife(days=math.exp(est), low=math.exp(lo), high=math.exp(hi), mle=math.exp(mle), events=events, points=points)


def fit_at(
    data: Sequences,
    idx: np.ndarray,
    w: np.ndarray,
    hl: np.ndarray,
    iterations: int,
    prev: EMResult | None = None,
    season: np.ndarray | None = None,
) -> EMResult:
    """EM for (mu, alpha per category) at per-event weights ``w`` and half-lives ``hl`` (constant
    per sequence); ``season`` fixed when given (see :func:`em`)."""
    feats = point_states(data, hl, w)[idx][:, None]
    comp = np.bincount(data.cat, kernel_mass(data, hl) * w, minlength=data.n_cat)[:, None]
    return em(build_problem(data, idx, feats, comp, by_category=True), iterations, prev, season)
