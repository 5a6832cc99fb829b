"""Learning half-lives: the point-process (Hawkes) likelihood of engagement given decayed interest.

For each sequence k = (user, category), engagement points arrive with intensity

    lambda_k(t) = mu_k + alpha_c * S_k(t-),   S_k(t) = sum_j w[type_j] * 2 ** (-(t - t_j) / h_c)

(DESIGN.md, "One quantity feeds everything"). Every event feeds S; the *points* are the
engagement events (views and clicks when the log has them, else every event). The
log-likelihood of a sequence on its window (first event, now] is

    sum over points i of log lambda(t_i)  -  mu_k * E_k  -  alpha_c * sum_j w_j * (h/ln2) * (1 - 2 ** (-(now - t_j)/h))

computed exactly in O(n) with the per-event states of :mod:`decayrec.decay.kernels`. For a
fixed h it is concave in (mu, alpha), maximised here by EM (the branching-structure
algorithm, vectorised over all sequences and categories at once); h is profiled on a
log grid and refined by a parabola in log h. The profile gives the 95% interval (log
likelihood within 1.92 of its maximum). Sparse categories are shrunk toward the pooled
half-life by a normal prior on log h whose spread is estimated from the well-determined
categories (empirical Bayes).

Three fits share that machinery:

* pooled: one h for all, one alpha per event type (the relative event weights);
* by category: one h and one alpha per category, weights from the pooled fit;
* by event type: one h per type's kernel (coordinate ascent from the pooled h).

Per-sequence half-lives are expressed by rescaling each sequence's time by its h, so one
scan computes S for any mix of half-lives.

This module holds the fitting strategies (pooled, per category with empirical-Bayes
shrinkage, per event type, per user) and :func:`fit_decay`; the options are
:class:`~decayrec.decay.config.FitConfig`, the data preparation
:mod:`decayrec.decay.sequences`, the likelihood and its EM :mod:`decayrec.decay.likelihood`,
and held-out scoring :mod:`decayrec.decay.heldout`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from scipy.interpolate import CubicSpline

from decayrec import schema
from decayrec.decay.config import FitConfig
from decayrec.decay.kernels import LN2
from decayrec.decay.likelihood import (
    Curve,
    EMResult,
    build_problem,
    em,
    fit_at,
    half_life_grid,
    kernel_mass,
    point_states,
    resolve_grid,
    summarise_profile,
)
from decayrec.decay.model import DecayModel, HalfLife
from decayrec.decay.sequences import N_TYPES, Sequences, prepare, truncate
from decayrec.errors import InputError

__all__ = ["USER_RATIOS", "by_user", "fit_decay", "user_prior"]


# -- the three fits --------------------------------------------------------------------
def _type_features(data: Sequences, half_life_by_type: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-type excitation at the points and pooled kernel masses, each type with its own h."""
    feats = np.zeros((idx.size, N_TYPES))
    comp = np.zeros((1, N_TYPES))
    for e in np.unique(data.etype):
        h = np.full(data.times.size, half_life_by_type[e])
        w = (data.etype == e).astype(float)
        feats[:, e] = point_states(data, h, w)[idx]
        comp[0, e] = (kernel_mass(data, h) * w).sum()
    return feats, comp


def _iterations(config: FitConfig, warm: bool) -> int:
    return max(config.em_iterations // 3, 8) if warm else config.em_iterations


def _pooled(data: Sequences, config: FitConfig, idx: np.ndarray) -> tuple[Curve, EMResult]:
    """One h for everything, one alpha per event type: the profile curve and the best fit."""
    curve, fits, prev = Curve([], []), {}, None
    log_grid = np.log(half_life_grid(config))

    def at(log_h: float) -> None:
        nonlocal prev
        feats, comp = _type_features(data, np.full(N_TYPES, math.exp(log_h)), idx)
        fit = em(build_problem(data, idx, feats, comp, by_category=False), _iterations(config, prev is not None), prev)
        curve.add(log_h, fit.loglik)
        fits[float(log_h)], prev = fit, fit

    for log_h in log_grid:
        at(log_h)
    step = log_grid[1] - log_grid[0]
    best = curve.best()
    for offset in (-step / 2, step / 2):
        if not log_grid[0] <= best + offset <= log_grid[-1]:
            continue
        at(best + offset)
    return curve, fits[curve.best()]


def _category_loglik(
    data: Sequences,
    config: FitConfig,
    idx: np.ndarray,
    w: np.ndarray,
    half_life_by_cat: np.ndarray,
    prev: EMResult | None,
    season: np.ndarray | None = None,
) -> EMResult:
    """One EM run in which every category has its own half-life: log-likelihood per category."""
    return fit_at(data, idx, w, half_life_by_cat[data.cat], _iterations(config, prev is not None), prev, season)


def _by_category(
    data: Sequences,
    config: FitConfig,
    idx: np.ndarray,
    weights: np.ndarray,
    season: np.ndarray | None,
) -> tuple[list[Curve], float, float, EMResult | None]:
    """Curves of every category: a shared grid, then two local refinements per category.

    With ``objective="likelihood"`` a curve is the category's profile log-likelihood (the
    daily ``season`` held at the pooled fit's); with ``"next_window"`` it is the
    log-likelihood of the category's engagement in the last ``validation_days`` given a fit
    on everything before (forecasting skill), and with ``"anchors"`` the sum of that over
    several windows, each forecast from the events before it. Returns the curves, the
    prior's spread and centre (:func:`_prior`) and the last fit (for warm starts; None for
    the forecasting objectives).
    """
    w = weights[data.etype]
    score = _forecast_scorer(data, config, weights) if config.objective != "likelihood" else None
    log_grid = np.log(half_life_grid(config))
    curves = [Curve([], []) for _ in range(data.n_cat)]
    prev = None

    def run(h_by_cat: np.ndarray) -> np.ndarray:
        nonlocal prev
        if score is not None:
            values, prev = score(h_by_cat, prev)
            return values
        prev = _category_loglik(data, config, idx, w, h_by_cat, prev, season)
        return prev.loglik_by_group

    for log_h in log_grid:
        values = run(np.full(data.n_cat, math.exp(log_h)))
        for c in range(data.n_cat):
            curves[c].add(log_h, values[c])
    points = np.bincount(data.cat[idx], minlength=data.n_cat)
    center, sd = _prior(curves, points, config, log_grid)
    step = log_grid[1] - log_grid[0]
    for scale in (0.5, 0.25):
        best = np.array([summarise_profile(cv, (log_grid[0], log_grid[-1]), _log_prior(center, sd)).days for cv in curves])
        for offset in (-scale * step, scale * step):
            log_h = np.clip(np.log(best) + offset, log_grid[0], log_grid[-1])
            values = run(np.exp(log_h))
            for c in range(data.n_cat):
                curves[c].add(log_h[c], values[c])
    return curves, sd, center, (None if score is not None else prev)


def _anchor_times(data: Sequences, config: FitConfig) -> tuple[np.ndarray, float]:
    """Forecast origins and the window length of the forecasting objectives (days since origin).

    ``next_window``: one window, the last ``validation_days``. ``anchors``: ``config.anchors``
    back-to-back windows ending at ``now`` (a tenth of the span each unless set), so every
    window closes by ``now`` and is forecast only from events before it opens.
    """
    if config.objective == "next_window":
        return np.array([data.now - config.validation_days]), config.validation_days
    window = config.anchor_window_days or data.now / 10.0
    starts = data.now - window * np.arange(config.anchors, 0, -1)
    return starts[starts > 0], window


def _forecast_scorer(
    data: Sequences, config: FitConfig, weights: np.ndarray
) -> Callable[[np.ndarray, EMResult | None], tuple[np.ndarray, None]]:
    """A function scoring per-category half-lives by forecasting: the summed log-likelihood of the
    engagement in each window ``(t, t + window]`` given a fit on the events up to ``t``.

    The excitation S at each test point depends only on earlier events, so one scan of the whole
    log serves every window; the baselines and alphas are refitted per window, each from a cold
    start with ``em_iterations`` (as :func:`heldout_terms` does). Warm starts along the grid do
    not converge far enough: from the short end of a day-resolution log (where the excitation
    dies) a chain of warm fits scored every longer half-life thousands of nats low and picked 1 hour.
    """
    starts, window = _anchor_times(data, config)
    w = weights[data.etype]
    anchors = []
    for t0 in starts:
        train = data.times <= t0
        train_data, seen = truncate(data, train, t0, config.window_end)
        tidx = np.flatnonzero(train_data.is_point)
        inside = (data.times > t0) & (data.times <= t0 + window)
        test = np.flatnonzero(data.is_point & inside & seen[data.seq])
        if test.size == 0 or tidx.size < 10:
            continue  # nothing to forecast, or too little history to fit before it
        # events whose kernels reach into the window: up to its end, in sequences seen before it
        reach = np.flatnonzero(seen[data.seq] & (data.times <= t0 + window))
        anchors.append((t0, train_data, seen, tidx, w[train], test, reach))
    if not anchors:
        what = (
            f"the last {config.validation_days:g} days"
            if config.objective == "next_window"
            else (f"any of {config.anchors} windows of {window:g} days")
        )
        raise InputError(
            f"no repeat engagement in {what} to score half-lives on",
            "use objective='likelihood', or a longer validation_days / anchor_window_days",
        )

    def score(h_by_cat: np.ndarray, prev: EMResult | None = None) -> tuple[np.ndarray, None]:
        h = h_by_cat[data.cat]
        S = point_states(data, h, w)
        values = np.zeros(data.n_cat)
        for t0, train_data, seen, tidx, w_train, test, reach in anchors:
            fit = _category_loglik(train_data, config, tidx, w_train, h_by_cat, None)
            lam = np.maximum(fit.mu[data.seq[test]] + fit.alpha[data.cat[test], 0] * S[test], 1e-300)
            values += np.bincount(data.cat[test], np.log(lam), minlength=data.n_cat)
            values -= np.bincount(data.seq_cat[seen], fit.mu[seen] * window, minlength=data.n_cat)
            t, hr = data.times[reach], h[reach]  # each kernel's mass inside (t0, t0 + window]
            mass = (hr / LN2) * (np.exp2(-(np.maximum(t, t0) - t) / hr) - np.exp2(-(t0 + window - t) / hr)) * w[reach]
            values -= np.bincount(data.cat[reach], fit.alpha[data.cat[reach], 0] * mass, minlength=data.n_cat)
        return values, None  # nothing to warm-start from (see above)

    return score


def _log_prior(center: float, sd: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: -0.5 * ((np.asarray(x) - center) / sd) ** 2


def _prior(curves: list[Curve], points: np.ndarray, config: FitConfig, log_grid: np.ndarray) -> tuple[float, float]:
    """Empirical Bayes for the normal prior on log half-lives: its centre and spread.

    Both maximise the marginal likelihood of the categories' curves on the shared grid
    (each curve splined to a fine grid and integrated against the prior), over the
    categories with at least ``min_points`` points. Every such curve counts, flat and
    one-sided ones included: they say a category's half-life is long (or short) without
    saying how long, which moves the centre and widens the spread as it should. (The
    pooled half-life is a poor centre: fast categories carry most points and pull it to
    the short end, 2.8 days on the default shop where the categories' median is 7.7.)
    ``prior_log_sd``, when set, fixes the spread. With fewer than three usable curves the
    centre is the summed curve's best and the spread 1.
    """
    n_grid = log_grid.size
    use = np.flatnonzero(points >= config.min_points)
    grid_values = np.array([curves[c].values[:n_grid] for c in range(len(curves))])
    if len(use) < 3:
        center = float(log_grid[int(np.argmax(grid_values.sum(0)))]) if len(curves) else 0.0
        return center, config.prior_log_sd or 1.0
    fine = np.linspace(log_grid[0], log_grid[-1], 8 * (n_grid - 1) + 1)
    values = CubicSpline(log_grid, grid_values[use], axis=1)(fine)
    values -= values.max(1, keepdims=True)
    like = np.exp(values)  # (categories, fine)
    centers = fine[::2]
    spreads = np.array([config.prior_log_sd]) if config.prior_log_sd else np.geomspace(0.05, 4.0, 40)
    dx = fine[1] - fine[0]
    z = (fine[None, None, :] - centers[:, None, None]) / spreads[None, :, None]
    density = np.exp(-0.5 * z**2) / (spreads[None, :, None] * math.sqrt(2 * math.pi)) * dx  # (centres, spreads, fine)
    marginal = np.log(np.maximum(np.einsum("msx,cx->msc", density, like), 1e-300)).sum(2)
    i, j = np.unravel_index(int(np.argmax(marginal)), marginal.shape)
    return float(centers[i]), float(spreads[j])


def fit_decay(
    events: pa.Table, now: datetime, config: FitConfig | None = None, progress: Callable[[int, int, str], object] | None = None
) -> DecayModel:
    """Fit half-lives (pooled, per category, per event type) and event weights as of ``now``.

    Parameters
    ----------
    events
        Canonical events (e.g. ``EventStore.scan()``); rows after ``now`` are ignored.
    now
        The fitting time; nothing after it is read.
    config
        Grid, iterations, shrinkage and point-type settings.
    progress
        Optional ``progress(step, total, label)`` callback.
    """
    config = config or FitConfig()
    started = time.perf_counter()
    data = prepare(events, now, config.point_events, config.window_end)
    idx = np.flatnonzero(data.is_point)
    if idx.size < 10:
        raise InputError(
            f"only {idx.size} repeat engagement event(s) before {now:%Y-%m-%d}: too few to learn a half-life",
            "give a longer history (users need several events each)",
        )
    config = resolve_grid(data, config)
    assert config.grid_min_days and config.grid_max_days and config.grid_points  # resolved
    bounds = (math.log(config.grid_min_days), math.log(config.grid_max_days))
    steps = 2 + int(config.fit_by_event) + int(config.per_user)
    report = progress or (lambda *a: None)
    report(0, steps, "pooled half-life and event weights")
    curve, pooled = _pooled(data, config, idx)
    alpha_type = pooled.alpha[0]
    present = np.unique(data.etype)
    weights = np.zeros(N_TYPES)
    weights[present] = alpha_type[present] / max(alpha_type[present].max(), 1e-300)
    global_hl = summarise_profile(curve, bounds, events=int(data.times.size), points=int(idx.size))

    report(1, steps, "half-life per category")
    season = pooled.season if config.objective == "likelihood" else None
    curves, sd, center, last = _by_category(data, config, idx, weights, season)
    if config.objective != "likelihood":  # the pooled value is the pooled forecasting optimum too
        n_grid = config.grid_points
        total = np.sum([cv.values[:n_grid] for cv in curves], axis=0)
        pooled_curve = Curve(list(curves[0].log_h[:n_grid]), list(total))
        global_hl = summarise_profile(pooled_curve, bounds, events=int(data.times.size), points=int(idx.size))
    points = np.bincount(data.cat[idx], minlength=data.n_cat)
    n_events = np.bincount(data.cat, minlength=data.n_cat)
    prior = _log_prior(center, sd)
    names = data.categories.ids.to_pylist()
    by_category = {
        name: summarise_profile(curves[c], bounds, prior, int(n_events[c]), int(points[c])) for c, name in enumerate(names)
    }
    per_cat_h = np.array([by_category[n].days for n in names] + [global_hl.days])
    final = _category_loglik(data, config, idx, weights[data.etype], per_cat_h, last, season)
    alpha_c = final.alpha[:, 0]
    user_scale, user_sd = {}, None
    if config.per_user:
        report(2, steps, "half-life multiplier per user")
        scale, user_sd = by_user(data, config, idx, weights, per_cat_h, final)
        assert data.users is not None  # prepare always sets users
        ids = data.users.ids.to_pylist()
        user_scale = {u: round(float(v), 4) for u, v in zip(ids, scale)}

    by_event: dict[str, HalfLife] = {}
    if config.fit_by_event:
        report(steps - 1, steps, "half-life per event type")
        by_event = _by_event(data, config, idx, global_hl.days, present, pooled)
    report(steps, steps, "done")
    return DecayModel(
        global_half_life=global_hl,
        by_category=by_category,
        by_event=by_event,
        weights={schema.EVENT_TYPES[e]: float(weights[e]) for e in present},
        alpha_by_category={name: float(alpha_c[c]) for c, name in enumerate(names)},
        alpha_global=float(alpha_type[present].max()),
        point_events=data.point_types,
        fitted_at=now.astimezone(UTC),
        prior_log_sd=sd,
        user_scale=user_scale,
        user_scale_log_sd=user_sd,
        diagnostics={
            "events": int(data.times.size),
            "points": int(idx.size),
            "sequences": int(data.n_seq),
            "categories": len(names),
            "loglik_pooled": float(max(curve.values)),
            "window_end": config.window_end,
            "grid_days": [config.grid_min_days, config.grid_max_days, config.grid_points],
            "seconds": round(time.perf_counter() - started, 3),
        },
    )


USER_RATIOS = np.exp2(np.arange(-4, 5) / 2.0)  # per-user multipliers considered: 1/4 .. 4 in steps of sqrt(2)


def by_user(
    data: Sequences, config: FitConfig, idx: np.ndarray, weights: np.ndarray, per_cat_h: np.ndarray, start: EMResult
) -> tuple[np.ndarray, float]:
    """One multiplier of the category half-lives per user, and the prior's spread (of its log).

    A user with multiplier r has half-lives ``h_c * r`` and event weights ``w / r``: each event
    excites the same expected number of later events (the kernel's integral is unchanged),
    spread over a longer or shorter time, so r says how fast the user forgets, not how much
    they come back. (Scaling h alone also scales the excitation: on the Amazon logs that
    predicted worse, and on a simulated shop with quick and slow forgetters it predicted
    worse than no multipliers at all.)

    Every user's log-likelihood is profiled over :data:`USER_RATIOS` (all users at the same
    ratio in each EM run, baselines integrated out, alphas refitted); a normal prior on the
    log ratio, centred at 0 (the category half-life), gets its spread by maximising the
    users' marginal likelihood on that grid (empirical Bayes), and each user's multiplier is
    exp of their posterior mean log ratio. A user with little history stays near 1.
    """
    w = weights[data.etype]
    assert data.users is not None  # data comes from prepare, which always sets users
    n_users = len(data.users)
    ev_user = data.seq_user[data.seq]
    curves = np.zeros((USER_RATIOS.size, n_users))
    prev = start
    for g, r in enumerate(USER_RATIOS):
        hl = per_cat_h[data.cat] * r
        wr = w / r  # the same excitation per event, spread over a longer or shorter time
        prev = fit_at(data, idx, wr, hl, _iterations(config, True), prev, start.season)
        compensator = np.bincount(ev_user, prev.alpha[data.cat, 0] * wr * kernel_mass(data, hl), minlength=n_users)
        curves[g] = np.bincount(data.seq_user, prev.log_marginal, minlength=n_users) - compensator
    sd, log_ratio = user_prior(curves, np.log(USER_RATIOS))
    return np.exp(log_ratio), sd


def user_prior(curves: np.ndarray, log_ratio: np.ndarray) -> tuple[float, np.ndarray]:
    """Empirical Bayes on a grid: the spread of a N(0, sd^2) prior on the log ratio that maximises
    the marginal likelihood of all users' curves (grid x users), and each user's posterior mean."""
    rel = curves - curves.max(0)
    best_sd, best = 0.0, -np.inf
    for sd in np.geomspace(0.02, 10.0, 60):
        log_p = -0.5 * (log_ratio / sd) ** 2
        log_p -= np.logaddexp.reduce(log_p)
        value = float(np.logaddexp.reduce(rel + log_p[:, None], axis=0).sum())
        if value > best:
            best_sd, best = float(sd), value
    log_p = -0.5 * (log_ratio / best_sd) ** 2
    post = rel + log_p[:, None]
    post = np.exp(post - post.max(0))
    post /= post.sum(0)
    return best_sd, (post * log_ratio[:, None]).sum(0)


def _by_event(
    data: Sequences, config: FitConfig, idx: np.ndarray, start: float, present: np.ndarray, pooled: EMResult
) -> dict[str, HalfLife]:
    """One kernel half-life per event type, by one sweep of coordinate ascent from the pooled value."""
    log_grid = np.log(half_life_grid(config))[::2]  # a coarser grid: each point is one more EM run
    bounds = (log_grid[0], log_grid[-1])
    h_type = np.full(N_TYPES, start)
    out = {}
    base_feats, base_comp = _type_features(data, h_type, idx)
    prev = pooled
    for e in present:
        curve = Curve([], [])
        mask = data.etype == e
        for log_h in log_grid:
            hl = np.full(data.times.size, math.exp(log_h))
            feats, comp = base_feats.copy(), base_comp.copy()
            feats[:, e] = point_states(data, hl, mask.astype(float))[idx]
            comp[0, e] = (kernel_mass(data, hl) * mask).sum()
            prev = em(build_problem(data, idx, feats, comp, by_category=False), _iterations(config, True), prev)
            curve.add(log_h, prev.loglik)
        hl_e = summarise_profile(curve, bounds, events=int(mask.sum()), points=int(mask[idx].sum()))
        out[schema.EVENT_TYPES[e]] = hl_e
        h_type[e] = hl_e.days
        base_feats, base_comp = _type_features(data, h_type, idx)
    return out
