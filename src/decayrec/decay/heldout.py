"""Held-out scoring: the log-likelihood of engagement after a cutoff under given half-lives.

Used to compare learned and fixed half-lives (``make bench-decay``) and by the forecast
objective; the terms are per sequence so that a bootstrap can resample users.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from decayrec import schema
from decayrec.decay.config import FitConfig
from decayrec.decay.likelihood import fit_at, kernel_mass, point_states
from decayrec.decay.model import lookup
from decayrec.decay.sequences import Sequences, prepare, truncate

__all__ = ["HeldOut", "HeldOutTerms", "heldout_loglik", "heldout_terms"]


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
    fit with ``per_user=True``; see :func:`decayrec.decay.fit.fit_decay`).
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
    train_data, seen = truncate(data, train, cutoff_days, config.window_end)
    tidx = np.flatnonzero(train_data.is_point)
    fit = fit_at(train_data, tidx, w[train], h[train], config.em_iterations)

    S = point_states(data, h, w)
    n_seq = data.n_seq
    test = np.flatnonzero(data.is_point & ~train & seen[data.seq])
    lam = np.maximum(fit.mu[data.seq[test]] + fit.alpha[data.cat[test], 0] * S[test], 1e-300)
    window = Sequences(**{**data.__dict__, "end": np.full(n_seq, data.now)})
    mass = kernel_mass(window, h, start=cutoff_days) * w
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
