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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import digamma, gammaln, ndtri, polygamma

from decayrec import schema
from decayrec.decay.ids import IdMap, pair_codes
from decayrec.decay.kernels import states_before_events, to_days
from decayrec.decay.model import DecayModel, HalfLife, event_codes, lookup
from decayrec.errors import InputError

LN2 = math.log(2.0)
CI_DROP = 1.920729  # half the 95% quantile of chi-square(1)
N_TYPES = len(schema.EVENT_TYPES)


class FitConfig(BaseModel):
    """How half-lives are fitted. Every field is a plain, explicit setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid_min_days: float = Field(1.0 / 24.0, gt=0, description="Shortest half-life considered.")
    grid_max_days: float = Field(365.0, gt=0, description="Longest half-life considered.")
    grid_points: int = Field(17, ge=5, description="Log-spaced grid points between them (each refined locally).")
    point_events: tuple[Literal["view", "click", "cart", "fav", "purchase"], ...] | None = Field(
        None, description="Event types that are engagement points; None: view and click if present, else all."
    )
    em_iterations: int = Field(60, ge=5, description="EM iterations per grid point (warm-started).")
    min_points: int = Field(50, ge=1, description="Points a category needs to enter the prior's spread estimate.")
    prior_log_sd: float | None = Field(None, gt=0, description="Spread of log half-lives across categories; None: estimated.")
    fit_by_event: bool = Field(True, description="Also fit one half-life per event type.")
    objective: Literal["likelihood", "next_window", "anchors"] = Field(
        "likelihood",
        description="Choose half-lives by the likelihood of the whole history; by forecasting the last "
        "validation_days from what came before (next_window); or by forecasting several windows, each "
        "from what came before it (anchors: the summed forecast likelihood, less noisy than one window).",
    )
    validation_days: float = Field(30.0, gt=0, description="The forecast window of the next_window objective.")
    anchors: int = Field(4, ge=1, description="Forecast windows of the anchors objective; they tile the end of the log.")
    anchor_window_days: float | None = Field(
        None, gt=0, description="Length of each anchors window; None: a tenth of the log's span before now."
    )
    window_end: Literal["user_last_event", "now"] = Field(
        "user_last_event", description="Where each user's windows close: their last event (default) or now."
    )
    per_user: bool = Field(
        False,
        description="Also fit one multiplier of the category half-lives per user (quick and slow "
        "forgetters; the excitation per event is kept), shrunk toward 1 by an empirical-Bayes prior on its log.",
    )


# -- data ----------------------------------------------------------------------------
@dataclass
class Sequences:
    """Events as of ``now`` in (sequence, time) order, with everything the likelihood needs."""

    times: np.ndarray  # days since origin
    seq: np.ndarray  # sequence code (user x category)
    cat: np.ndarray  # category code per event (n_cat = unknown)
    etype: np.ndarray  # event type code
    is_point: np.ndarray  # bool: counts as an engagement point (and is not a sequence's first event)
    first: np.ndarray  # per sequence: its first event (the window opens there)
    end: np.ndarray  # per sequence: where its window closes (the user's last event, or now)
    seq_cat: np.ndarray  # per sequence: its category code
    seq_user: np.ndarray  # per sequence: its user code
    now: float
    categories: IdMap
    point_types: tuple[str, ...]
    origin: np.datetime64
    users: IdMap | None = None  # user id of each code in seq_user

    @property
    def n_seq(self) -> int:
        return self.first.size

    @property
    def n_days(self) -> int:
        return math.floor(self.now) + 1

    @property
    def n_cat(self) -> int:
        return len(self.categories) + 1  # the last code is "no category"


def prepare(
    events: pa.Table, now: datetime, point_events: tuple[str, ...] | None = None, window_end: str = "user_last_event"
) -> Sequences:
    """Sequences of (user, category) as of ``now``; events after ``now`` are never read.

    ``window_end="user_last_event"`` closes every sequence of a user at that user's last
    event: half-lives then describe how interest fades while a customer stays active, and
    a customer who left the shop (lapse, a separate model) does not read as fast decay.
    ``"now"`` keeps every window open until ``now``.
    """
    ts = events[schema.TIMESTAMP]
    if pa.types.is_timestamp(ts.type) and ts.type.tz is not None:
        ts = ts.cast(pa.timestamp("us"))
    now_naive = np.datetime64(now.astimezone(UTC).replace(tzinfo=None), "us")
    keep = pc.less_equal(ts, pa.scalar(now_naive.astype(object), pa.timestamp("us")))
    events = events.filter(keep)
    if events.num_rows < 2:
        raise InputError(
            f"only {events.num_rows} event(s) at or before {now:%Y-%m-%d %H:%M}", "give more history or a later --at"
        )
    ts = events[schema.TIMESTAMP]
    if pa.types.is_timestamp(ts.type) and ts.type.tz is not None:
        ts = ts.cast(pa.timestamp("us"))
    origin = np.datetime64(pc.min(ts).as_py(), "us")
    times = to_days(ts, origin)
    now_days = float((now_naive - origin) / np.timedelta64(1, "us")) / 86_400e6
    users = IdMap.from_values(events[schema.USER])
    cats = events[schema.CATEGORY] if schema.CATEGORY in events.column_names else pa.nulls(events.num_rows, pa.string())
    categories = IdMap.from_values(pc.drop_null(cats))
    cat = categories.encode(cats).astype(np.int64)
    cat[cat < 0] = len(categories)
    etype = event_codes(events[schema.EVENT])
    user = users.encode(events[schema.USER]).astype(np.int64)
    seq, _ = pair_codes(user, cat, len(categories) + 1)
    order = np.lexsort((times, seq))
    times, seq, cat, etype, user = times[order], seq[order], cat[order], etype[order], user[order]

    present = [schema.EVENT_TYPES[i] for i in np.unique(etype)]
    if point_events is None:
        point_events = tuple(e for e in ("view", "click") if e in present) or tuple(present)
    point_codes = np.array([schema.EVENT_TYPES.index(e) for e in point_events])
    first = np.r_[True, seq[1:] != seq[:-1]]
    starts = np.flatnonzero(first)
    n_seq = int(seq.max()) + 1
    first_time = np.full(n_seq, np.nan)
    first_time[seq[starts]] = times[starts]
    # The first event of a sequence is conditioned on (it opens the window), not predicted.
    is_point = np.isin(etype, point_codes) & (times > first_time[seq])
    seq_cat = np.zeros(n_seq, dtype=np.int64)
    seq_cat[seq[starts]] = cat[starts]
    seq_user = np.zeros(n_seq, dtype=np.int64)
    seq_user[seq[starts]] = user[starts]
    if window_end == "now":
        end = np.full(n_seq, now_days)
    else:
        user_last = np.full(len(users), -np.inf)
        np.maximum.at(user_last, user, times)
        end = np.zeros(n_seq)
        end[seq[starts]] = user_last[user[starts]]
    return Sequences(
        times=times,
        seq=seq,
        cat=cat,
        etype=etype,
        is_point=is_point,
        first=first_time,
        end=end,
        seq_cat=seq_cat,
        seq_user=seq_user,
        now=now_days,
        categories=categories,
        point_types=tuple(point_events),
        origin=origin,
        users=users,
    )


# -- the likelihood machinery ----------------------------------------------------------
def _states(data: Sequences, half_life: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """S just before every event, with a per-event half-life (constant within a sequence)."""
    return states_before_events(data.seq, data.times / half_life, weights, 1.0)


def _kernel_mass(data: Sequences, half_life: np.ndarray, start: float | None = None) -> np.ndarray:
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


def _problem(data: Sequences, idx: np.ndarray, features: np.ndarray, compensator: np.ndarray, by_category: bool) -> Problem:
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


def _em(problem: Problem, iterations: int, init: EMResult | None = None) -> EMResult:
    """EM for the Hawkes likelihood with each sequence's baseline integrated out.

    Each sequence's baseline mu_k has a Gamma(shape_c, rate_c) prior of its category (both
    learned, empirical Bayes); alpha is a point estimate per group and component; the
    season is one factor per day (mean 1). The integral over mu_k is done by importance
    quadrature at ``NODES`` quantiles of a Gamma proposal that tracks each sequence's
    posterior (moment-matched every iteration), so the objective is the marginal
    likelihood itself. The proposal is log-normal (cheap nodes, exact density). Integrating mu_k out, instead of fitting one free baseline per
    sequence, is what keeps long half-lives identifiable: a free baseline absorbs slow
    excitation and biases half-lives short (the incidental-parameter problem).
    """
    data, features = problem.data, problem.features
    n_seq, n_cat, seq_cat = data.n_seq, data.n_cat, data.seq_cat
    m = features.shape[1]
    pseq, pday = problem.point_seq, problem.point_day
    counts = np.bincount(pseq, minlength=n_seq).astype(float)
    if init is None:
        season = np.ones(data.n_days)
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
        season, shape, rate = init.season.copy(), init.shape.copy(), init.rate.copy()
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
            immigrants = np.bincount(pday, r0, minlength=data.n_days)
            at_risk = _day_totals(data, mean_mu)
            ok = at_risk > 0
            # Shrunk toward 1 by a pseudo-day of the average day's evidence: days with little
            # at risk (early, sparse logs; the end of each window) cannot swing the season.
            prior = max(at_risk[ok].mean(), 1e-300) if ok.any() else 1.0
            rate_all = immigrants.sum() / max(at_risk.sum(), 1e-300)
            season = (immigrants + prior * rate_all) / np.maximum(at_risk + prior, 1e-300) / max(rate_all, 1e-300)
            if ok.any():
                season /= max(season[ok].mean(), 1e-300)
            exposure = _season_exposure(data, season)
            shape, rate = _gamma_prior(mean_mu, mean_log, seq_cat, n_cat, shape)
    per_group = np.bincount(problem.seq_group, log_marginal, minlength=problem.n_groups) - (alpha * problem.compensator).sum(1)
    mu = ((weight / total) * nodes).sum(1)
    return EMResult(float(per_group.sum()), per_group, mu, alpha, shape, rate, season, (loc, scale), log_marginal)


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


def _grid(config: FitConfig) -> np.ndarray:
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


def _summarise(
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


# -- the three fits --------------------------------------------------------------------
def _type_features(data: Sequences, half_life_by_type: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-type excitation at the points and pooled kernel masses, each type with its own h."""
    feats = np.zeros((idx.size, N_TYPES))
    comp = np.zeros((1, N_TYPES))
    for e in np.unique(data.etype):
        h = np.full(data.times.size, half_life_by_type[e])
        w = (data.etype == e).astype(float)
        feats[:, e] = _states(data, h, w)[idx]
        comp[0, e] = (_kernel_mass(data, h) * w).sum()
    return feats, comp


def _iterations(config: FitConfig, warm: bool) -> int:
    return max(config.em_iterations // 3, 8) if warm else config.em_iterations


def _pooled(data: Sequences, config: FitConfig, idx: np.ndarray) -> tuple[Curve, EMResult]:
    """One h for everything, one alpha per event type: the profile curve and the best fit."""
    curve, fits, prev = Curve([], []), {}, None
    log_grid = np.log(_grid(config))

    def at(log_h: float) -> None:
        nonlocal prev
        feats, comp = _type_features(data, np.full(N_TYPES, math.exp(log_h)), idx)
        fit = _em(_problem(data, idx, feats, comp, by_category=False), _iterations(config, prev is not None), prev)
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
    data: Sequences, config: FitConfig, idx: np.ndarray, w: np.ndarray, half_life_by_cat: np.ndarray, prev: EMResult | None
) -> EMResult:
    """One EM run in which every category has its own half-life: log-likelihood per category."""
    return _fit_at(data, idx, w, half_life_by_cat[data.cat], _iterations(config, prev is not None), prev)


def _fit_at(
    data: Sequences, idx: np.ndarray, w: np.ndarray, hl: np.ndarray, iterations: int, prev: EMResult | None = None
) -> EMResult:
    """EM for (mu, alpha per category) at per-event weights ``w`` and half-lives ``hl`` (constant per sequence)."""
    feats = _states(data, hl, w)[idx][:, None]
    comp = np.bincount(data.cat, _kernel_mass(data, hl) * w, minlength=data.n_cat)[:, None]
    return _em(_problem(data, idx, feats, comp, by_category=True), iterations, prev)


def _by_category(
    data: Sequences,
    config: FitConfig,
    idx: np.ndarray,
    weights: np.ndarray,
    center: float | None,
) -> tuple[list[Curve], float, float, EMResult | None]:
    """Curves of every category: a shared grid, then two local refinements per category.

    With ``objective="likelihood"`` a curve is the category's profile log-likelihood; with
    ``"next_window"`` it is the log-likelihood of the category's engagement in the last
    ``validation_days`` given a fit on everything before (forecasting skill), and with
    ``"anchors"`` the sum of that over several windows, each forecast from the events before
    it. Returns the curves, the prior's spread, its centre (the pooled best when ``center``
    is None) and the last fit (for warm starts; None for the forecasting objectives).
    """
    w = weights[data.etype]
    score = _forecast_scorer(data, config, weights) if config.objective != "likelihood" else None
    log_grid = np.log(_grid(config))
    curves = [Curve([], []) for _ in range(data.n_cat)]
    prev = None

    def run(h_by_cat: np.ndarray) -> np.ndarray:
        nonlocal prev
        if score is not None:
            values, prev = score(h_by_cat, prev)
            return values
        prev = _category_loglik(data, config, idx, w, h_by_cat, prev)
        return prev.loglik_by_group

    for log_h in log_grid:
        values = run(np.full(data.n_cat, math.exp(log_h)))
        for c in range(data.n_cat):
            curves[c].add(log_h, values[c])
    if center is None:
        total = np.sum([cv.values for cv in curves], axis=0)
        center = float(log_grid[int(np.argmax(total))])
    points = np.bincount(data.cat[idx], minlength=data.n_cat)
    sd = _prior_sd(curves, points, config, (log_grid[0], log_grid[-1]))
    step = log_grid[1] - log_grid[0]
    for scale in (0.5, 0.25):
        best = np.array([_summarise(cv, (log_grid[0], log_grid[-1]), _log_prior(center, sd)).days for cv in curves])
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
        train_data, seen = _truncate(data, train, t0, config.window_end)
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
        S = _states(data, h, w)
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


def _prior_sd(curves: list[Curve], points: np.ndarray, config: FitConfig, bounds: tuple[float, float]) -> float:
    """Empirical-Bayes spread of log half-lives: between-category variance minus sampling noise."""
    if config.prior_log_sd is not None:
        return config.prior_log_sd
    mles, ses = [], []
    for c in np.flatnonzero(points >= config.min_points):
        hl = _summarise(curves[c], bounds)
        lo, hi = math.log(hl.low), math.log(hl.high)
        if lo > bounds[0] and hi < bounds[1]:  # bounded intervals only
            mles.append(math.log(hl.days))
            ses.append((hi - lo) / 3.92)
    if len(mles) < 3:
        return 1.0
    var = float(np.var(mles, ddof=1) - np.mean(np.square(ses)))
    return float(np.sqrt(max(var, 0.05**2)))


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
    bounds = (math.log(config.grid_min_days), math.log(config.grid_max_days))
    steps = 2 + int(config.fit_by_event) + int(config.per_user)
    report = progress or (lambda *a: None)
    report(0, steps, "pooled half-life and event weights")
    curve, pooled = _pooled(data, config, idx)
    alpha_type = pooled.alpha[0]
    present = np.unique(data.etype)
    weights = np.zeros(N_TYPES)
    weights[present] = alpha_type[present] / max(alpha_type[present].max(), 1e-300)
    global_hl = _summarise(curve, bounds, events=int(data.times.size), points=int(idx.size))

    report(1, steps, "half-life per category")
    center = math.log(global_hl.days) if config.objective == "likelihood" else None
    curves, sd, center, last = _by_category(data, config, idx, weights, center)
    if config.objective != "likelihood":  # the pooled value is the pooled forecasting optimum too
        n_grid = config.grid_points
        total = np.sum([cv.values[:n_grid] for cv in curves], axis=0)
        pooled_curve = Curve(list(curves[0].log_h[:n_grid]), list(total))
        global_hl = _summarise(pooled_curve, bounds, events=int(data.times.size), points=int(idx.size))
    points = np.bincount(data.cat[idx], minlength=data.n_cat)
    n_events = np.bincount(data.cat, minlength=data.n_cat)
    prior = _log_prior(center, sd)
    names = data.categories.ids.to_pylist()
    by_category = {name: _summarise(curves[c], bounds, prior, int(n_events[c]), int(points[c])) for c, name in enumerate(names)}
    per_cat_h = np.array([by_category[n].days for n in names] + [global_hl.days])
    final = _category_loglik(data, config, idx, weights[data.etype], per_cat_h, last)
    alpha_c = final.alpha[:, 0]
    user_scale, user_sd = {}, None
    if config.per_user:
        report(2, steps, "half-life multiplier per user")
        scale, user_sd = _by_user(data, config, idx, weights, per_cat_h, final)
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


def _by_user(
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
        prev = _fit_at(data, idx, wr, hl, _iterations(config, True), prev)
        compensator = np.bincount(ev_user, prev.alpha[data.cat, 0] * wr * _kernel_mass(data, hl), minlength=n_users)
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
    log_grid = np.log(_grid(config))[::2]  # a coarser grid: each point is one more EM run
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
            feats[:, e] = _states(data, hl, mask.astype(float))[idx]
            comp[0, e] = (_kernel_mass(data, hl) * mask).sum()
            prev = _em(_problem(data, idx, feats, comp, by_category=False), _iterations(config, True), prev)
            curve.add(log_h, prev.loglik)
        hl_e = _summarise(curve, bounds, events=int(mask.sum()), points=int(mask[idx].sum()))
        out[schema.EVENT_TYPES[e]] = hl_e
        h_type[e] = hl_e.days
        base_feats, base_comp = _type_features(data, h_type, idx)
    return out


# -- held-out evaluation ---------------------------------------------------------------
@dataclass(frozen=True)
class HeldOut:
    """Next-window log-likelihood of one way of setting half-lives."""

    name: str
    loglik: float
    points: int
    per_point: float
    sequences: int


@dataclass(frozen=True)
class HeldOutTerms:
    """The next-window log-likelihood split per sequence (user x category), for sums and bootstraps.

    ``loglik[k]`` is sequence k's log intensity at its test points minus its compensator over
    the window; only sequences with ``seen[k]`` (history before the cutoff) are scored.
    ``users`` holds the user id of each code in ``seq_user`` (to pool terms across cutoffs).
    """

    loglik: np.ndarray
    points: np.ndarray
    expected: np.ndarray  # the compensator: the model's expected number of points in the window
    seen: np.ndarray
    seq_user: np.ndarray
    users: pa.Array


def heldout_terms(
    events: pa.Table,
    cutoff: datetime,
    window_days: float,
    half_life_for_category: dict[str, float] | float,
    weights: dict[str, float],
    config: FitConfig | None = None,
    user_scale: dict[str, float] | None = None,
) -> HeldOutTerms:
    """Fit baselines and excitation on events up to ``cutoff`` at the given half-lives, then score
    the engagement points in ``(cutoff, cutoff + window]`` by their exact conditional intensity.

    Only sequences (user, category) seen before the cutoff are scored, the same ones whatever
    the half-lives, so results are comparable. In the window every sequence's baseline runs
    at the season's mean (1) and its excitation decays from everything before each point.
    ``user_scale`` multiplies each listed user's half-lives and divides their event weights (a
    fit with ``per_user=True``; see :func:`_by_user`).
    """
    from datetime import timedelta

    config = config or FitConfig()
    data = prepare(events, cutoff + timedelta(days=window_days), config.point_events, "now")
    assert data.users is not None  # prepare always sets users
    cutoff_days = data.now - window_days
    train = data.times <= cutoff_days
    w_by_type = np.array([weights.get(e, 0.0) for e in schema.EVENT_TYPES])
    names = data.categories.ids.to_pylist()
    if isinstance(half_life_for_category, dict):
        default = half_life_for_category.get("__global__", 7.0)
        per_cat = np.array([half_life_for_category.get(n, default) for n in names] + [default])
    else:
        per_cat = np.full(data.n_cat, float(half_life_for_category))

    h = per_cat[data.cat]
    w = w_by_type[data.etype]
    if user_scale:
        scale = lookup(data.users.ids, user_scale, 1.0)[data.seq_user[data.seq]]
        h = h * scale
        w = w / scale
    train_data, seen = _truncate(data, train, cutoff_days, config.window_end)
    tidx = np.flatnonzero(train_data.is_point)
    fit = _fit_at(train_data, tidx, w[train], h[train], config.em_iterations)

    S = _states(data, h, w)
    n_seq = data.n_seq
    test = np.flatnonzero(data.is_point & ~train & seen[data.seq])
    lam = np.maximum(fit.mu[data.seq[test]] + fit.alpha[data.cat[test], 0] * S[test], 1e-300)
    window = Sequences(**{**data.__dict__, "end": np.full(n_seq, data.now)})
    mass = _kernel_mass(window, h, start=cutoff_days) * w
    in_seen = seen[data.seq]
    expected = np.where(seen, fit.mu * window_days, 0.0)
    expected += np.bincount(data.seq[in_seen], fit.alpha[data.cat[in_seen], 0] * mass[in_seen], minlength=n_seq)
    loglik = np.bincount(data.seq[test], np.log(lam), minlength=n_seq) - expected
    points = np.bincount(data.seq[test], minlength=n_seq)
    return HeldOutTerms(np.where(seen, loglik, 0.0), points, expected, seen, data.seq_user, data.users.ids)


def heldout_loglik(
    events: pa.Table,
    cutoff: datetime,
    window_days: float,
    half_life_for_category: dict[str, float] | float,
    weights: dict[str, float],
    config: FitConfig | None = None,
    name: str = "",
    user_scale: dict[str, float] | None = None,
) -> HeldOut:
    """The total of :func:`heldout_terms`: next-window log-likelihood, per point too."""
    terms = heldout_terms(events, cutoff, window_days, half_life_for_category, weights, config, user_scale)
    loglik = float(terms.loglik.sum())
    points = int(terms.points.sum())
    return HeldOut(name, loglik, points, loglik / max(points, 1), int(terms.seen.sum()))


def _truncate(data: Sequences, keep: np.ndarray, now: float, window_end: str) -> tuple[Sequences, np.ndarray]:
    """The same sequences (same codes) restricted to events at or before ``now``, and which have any.

    A sequence with no event by then gets an empty window (no exposure, no points).
    """
    t, s = data.times[keep], data.seq[keep]
    seen = np.zeros(data.n_seq, dtype=bool)
    first = np.zeros(data.n_seq)
    end = np.zeros(data.n_seq)
    if s.size:
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        seen[s[starts]] = True
        first[s[starts]] = t[starts]
        if window_end == "now":
            end[seen] = now
        else:  # each user's last event by then closes all of that user's sequences
            user_last = np.full(int(data.seq_user.max()) + 1, -np.inf)
            np.maximum.at(user_last, data.seq_user[s], t)
            end[seen] = user_last[data.seq_user[seen]]
    truncated = Sequences(
        times=t,
        seq=s,
        cat=data.cat[keep],
        etype=data.etype[keep],
        is_point=data.is_point[keep],
        first=first,
        end=end,
        seq_cat=data.seq_cat,
        seq_user=data.seq_user,
        now=now,
        categories=data.categories,
        point_types=data.point_types,
        origin=data.origin,
        users=data.users,
    )
    return truncated, seen
