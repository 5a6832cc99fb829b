"""Expected events per key in the next window, and its backtest against naive baselines.

The model is a Poisson GLM with a log link, refitted at each call on the log's own past:
at anchors ``a_j = at - j * window`` (``j = 1..anchors``, each with at least one window
of history) every key with an event at or before ``a_j`` is a row; its features are read
at ``a_j`` and its target is its count in ``(a_j, a_j + window]``, which ends at or before
``at``. The fitted model is then applied at ``at``. Nothing after ``at`` is read.

Features (all ``log1p``): exposure-corrected decayed counts at half-lives of 1/2, 2 and 8
windows, each as expected events per window; the count in the last window; the long-run
mean count per window; windows since the key's last event. A key's count is a count of
events with positive weight: weights shape interest, not the count.

The shop's volume moves for reasons no key's history explains (growth, weekdays, the end of
a crawl), and a few anchors are a handful of observations of it. So by default
(``forecast_volume="last_window"``) each anchor has its own intercept: a Poisson GLM with
anchor fixed effects is the multinomial model of how a window's events are shared among
keys, and the forecast shares out the last window's total. ``"fitted"`` keeps one
intercept and forecasts the volume too. Above :data:`MAX_TRAIN_ROWS` training rows, a
uniform sample with a fixed seed is fitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from decayrec.decay.kernels import decayed_sums, last_event_time
from decayrec.errors import InputError
from decayrec.timeparse import iso
from decayrec.trends._log import KeyLog, key_log, rate_factor
from decayrec.trends.config import Level, TrendConfig
from decayrec.trends.glm import DEVIANCE_FLOOR, PoissonGLM, fit_poisson, poisson_deviance

__all__ = ["FEATURES", "Forecast", "features", "forecast", "forecast_backtest"]

FEATURES = (
    "rate_half_window",
    "rate_2_windows",
    "rate_8_windows",
    "last_window",
    "long_run_mean",
    "windows_since_last",
)
_SCALES = np.array([0.5, 2.0, 8.0])  # feature half-lives, in windows
_LAST, _MEAN, _SMOOTH = 3, 4, 2  # columns of the naive, long-run and fallback forecasts
# Training rows beyond this are a uniform sample (fixed seed): a dozen coefficients need far fewer,
# and the fit stays a fraction of a second on shops with a million keys.
MAX_TRAIN_ROWS = 100_000
_BOOT_CELLS = 1 << 22  # bootstrap index block: 4M int64 = 32 MB


# -- features and the forecast --------------------------------------------------------------
def features(log: KeyLog, at: float, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw features of every key as of ``at`` (days since ``log.now``), from events ``<= at`` only.

    Returns ``(active, x)``: whether the key has an event at or before ``at``, and the
    ``(n_keys, len(FEATURES))`` untransformed features (meaningful for active keys only).
    """
    m = log.upto(at)
    key, time = log.key[:m], log.time[:m]
    n = log.n_keys
    total = np.bincount(key, minlength=n).astype(np.float64)
    exposure = at - log.start
    h = _SCALES * window
    x = np.empty((n, len(FEATURES)))
    # Rates from less than one window of history are read over one window (one event is not a flood).
    x[:, :3] = decayed_sums(key, time, 1.0, h, at, n) * (rate_factor(h, max(exposure, window)) * window)
    x[:, _LAST] = np.bincount(log.key[log.upto(at - window) : m], minlength=n)
    x[:, _MEAN] = total * (window / max(exposure, window))
    active = total > 0
    last = last_event_time(key, time, at, n)
    x[:, 5] = np.where(active, (at - last) / window, 0.0)
    return active, x


@dataclass(frozen=True)
class Forecast:
    """Per key: expected events in ``(at, at + window]`` and the baselines, 0 for keys without history.

    ``model`` is None when there was nothing to fit on (fewer than two windows of log, or no
    event in any target window); the forecast is then the 8-window decayed rate.
    """

    at: float
    window: float
    active: np.ndarray
    mean: np.ndarray
    naive: np.ndarray
    long_run: np.ndarray
    model: PoissonGLM | None
    volume: str
    anchors: int
    rows: int

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "poisson_glm" if self.model is not None else "fallback: 8-window decayed rate",
            "volume": self.volume,
            "anchors": self.anchors,
            "training_rows": self.rows,
            "features": list(FEATURES),
            **(self.model.describe(FEATURES) if self.model is not None else {}),
        }


def _training_rows(log: KeyLog, at: float, window: float, anchors: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``log1p`` features, targets and anchor index of every key with history at each usable anchor."""
    xs, ys, gs = [], [], []
    for j in range(1, anchors + 1):  # a few anchors, each vectorised over events
        a = at - j * window
        if a - log.start < window:  # a full window of history before the anchor
            break
        active, x = features(log, a, window)
        y = np.bincount(log.key[log.upto(a) : log.upto(a + window)], minlength=log.n_keys)
        xs.append(np.log1p(x[active]))
        ys.append(y[active])
        gs.append(np.full(int(active.sum()), j - 1))
    if not ys:
        return np.zeros((0, len(FEATURES))), np.zeros(0), np.zeros(0, dtype=np.int64)
    x, y, g = np.concatenate(xs), np.concatenate(ys).astype(np.float64), np.concatenate(gs)
    if y.size > MAX_TRAIN_ROWS:
        pick = np.sort(np.random.default_rng(0).choice(y.size, MAX_TRAIN_ROWS, replace=False))
        x, y, g = x[pick], y[pick], g[pick]
    return x, y, g


def forecast(log: KeyLog, at: float, config: TrendConfig) -> Forecast:
    """Fit on windows ending at or before ``at`` and forecast ``(at, at + window]``; see the module doc.

    ``config`` gives the window, the anchors, the ridge penalty and the volume:
    ``forecast_volume="last_window"``: one intercept per anchor, so the coefficients describe how the
    window's events are shared among keys, whatever the shop's volume did; the forecast
    shares out the last window's total. ``"fitted"``: one intercept for all anchors,
    so the volume is the anchors' average relation between features and counts.
    """
    window, volume = config.window_days, config.forecast_volume
    x_train, y_train, groups = _training_rows(log, at, window, config.forecast_anchors)
    active, x = features(log, at, window)
    naive, long_run = x[:, _LAST].copy(), x[:, _MEAN].copy()
    model = None
    if y_train.sum() > 0:
        per_anchor = volume == "last_window"
        model = fit_poisson(x_train, y_train, config.forecast_ridge, groups if per_anchor else None)
        mean = model.predict(np.log1p(x))
        total = naive[active].sum()
        if per_anchor and total > 0:  # a shop silent for a window keeps the anchors' average level
            mean *= total / mean[active].sum()
    else:
        mean = x[:, _SMOOTH].copy()
    zero = ~active
    mean[zero] = naive[zero] = long_run[zero] = 0.0
    n_anchors = int(groups.max()) + 1 if groups.size else 0
    return Forecast(at, window, active, mean, naive, long_run, model, volume, n_anchors, int(y_train.size))


# -- the backtest ---------------------------------------------------------------------------
def _scores(y: np.ndarray, mu: np.ndarray) -> dict[str, float]:
    err = mu - y
    total = float(y.sum())
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "wape": float(np.abs(err).sum() / total) if total > 0 else float("nan"),
        "poisson_deviance": poisson_deviance(y, mu),
        "forecast_total": float(mu.sum()),
    }


def _wape_gap(y: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    """WAPE(a) - WAPE(b) and its 95% percentile interval, resampling keys with replacement."""
    ea, eb = np.abs(a - y), np.abs(b - y)
    estimate = float((ea.sum() - eb.sum()) / y.sum())
    n = y.size
    diffs = []
    block = max(1, _BOOT_CELLS // n)
    for lo in range(0, n_boot, block):  # blocks of replicates, each vectorised over keys
        idx = rng.integers(0, n, (min(block, n_boot - lo), n))
        total = y[idx].sum(axis=1)
        diffs.append((ea[idx].sum(axis=1) - eb[idx].sum(axis=1)) / np.where(total > 0, total, np.nan))
    d = np.concatenate(diffs)
    lo, hi = np.nanpercentile(d, [2.5, 97.5])
    return {"estimate": estimate, "ci95": [float(lo), float(hi)], "n_boot": n_boot}


def forecast_backtest(
    events: pa.Table,
    now: datetime,
    *,
    level: Level = "category",
    config: TrendConfig | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Score the forecast on the last window: pretend it is ``now - window`` and forecast ``(now - window, now]``.

    The model sees only events at or before the cutoff (it is fitted on earlier windows).
    Scored keys: those with an event at or before the cutoff; events of keys first seen
    after it are counted in ``unscored_events``. Compared forecasts: ``model`` (the expected
    count), ``model_median`` (the median of a Poisson with that mean: the point forecast an
    absolute-error metric rewards, 0 for most sparse keys), ``naive_last_window`` (the count
    in ``(cutoff - window, cutoff]``) and ``long_run_mean`` (events so far per window
    observed, at least one window). For each: MAE, RMSE, WAPE (``sum |error| / sum actual``)
    and the mean Poisson deviance (forecasts floored at :data:`DEVIANCE_FLOOR`), the proper
    score of an expected count; for the WAPE differences model - naive, model - long-run and
    model_median - naive, a 95% bootstrap interval over keys (negative = the model is better).

    Returns
    -------
    dict
        JSON-ready: ``protocol``, ``scored`` (keys, actual events), ``metrics`` per forecast,
        ``wape_diff_vs_naive``, ``wape_diff_vs_long_run``, ``wape_diff_median_vs_naive``
        and ``model`` (the fit).
    """
    from scipy.stats import poisson  # scipy.stats takes a while to import; only the backtest needs it

    if n_boot < 1:
        raise InputError(f"n_boot must be at least 1, got {n_boot}")
    cfg = config or TrendConfig()
    log = key_log(events, now, level, cfg.event_weights)
    window = cfg.window_days
    cutoff = -window
    if log.upto(cutoff) == 0:
        raise InputError(
            f"no {level} event at or before the backtest cutoff (now - {window:g} days)",
            "give a later --at, more history, or a shorter window",
        )
    fc = forecast(log, cutoff, cfg)
    after = np.bincount(log.key[log.upto(cutoff) :], minlength=log.n_keys)
    keys = fc.active
    y = after[keys].astype(np.float64)
    preds = {
        "model": fc.mean[keys],
        "model_median": poisson.median(fc.mean[keys]),
        "naive_last_window": fc.naive[keys],
        "long_run_mean": fc.long_run[keys],
    }
    rng = np.random.default_rng(seed)
    scored = y.sum() > 0
    cut = log.now - timedelta(days=window)
    return {
        "protocol": {
            "level": level,
            "now": iso(log.now),
            "cutoff": iso(cut),
            "window_days": window,
            "config": json.loads(cfg.model_dump_json()),
            "deviance_floor": DEVIANCE_FLOOR,
        },
        "scored": {
            "keys": int(keys.sum()),
            "keys_with_events": int((y > 0).sum()),
            "actual_events": int(y.sum()),
            "unscored_events": int(after[~keys].sum()),
        },
        "metrics": {name: _scores(y, p) for name, p in preds.items()},
        "wape_diff_vs_naive": _wape_gap(y, preds["model"], preds["naive_last_window"], n_boot, rng) if scored else None,
        "wape_diff_vs_long_run": _wape_gap(y, preds["model"], preds["long_run_mean"], n_boot, rng) if scored else None,
        "wape_diff_median_vs_naive": (
            _wape_gap(y, preds["model_median"], preds["naive_last_window"], n_boot, rng) if scored else None
        ),
        "model": fc.describe(),
    }
