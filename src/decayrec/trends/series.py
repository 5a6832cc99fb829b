"""Interest over time for a few keys, and the picture of what is rising and fading.

matplotlib (optional extra ``plot``) is imported only when a picture is drawn, and only its
object API is used (``Figure`` rendered by Agg), as in :mod:`decayrec.plot`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from decayrec.decay.kernels import LN2, from_days
from decayrec.errors import InputError, require
from decayrec.timeparse import iso
from decayrec.trends._log import KeyLog, key_log, rate_factor
from decayrec.trends.config import Level, TrendConfig
from decayrec.trends.table import momentum_stats, trend_codes

__all__ = ["TrendSeries", "plot_trends", "trend_series"]

_PLURAL = {"category": "categories", "item": "items"}


@dataclass(frozen=True)
class TrendSeries:
    """Short-scale interest (weighted events per day) of ``keys`` at ``times``; the last time is ``now``.

    ``interest[i, j]`` is key ``i``'s ``interest`` column of :func:`~decayrec.trends.trends`
    as of ``times[j]``: the curve ends at the table's value.
    """

    level: str
    keys: list[str]
    times: np.ndarray
    interest: np.ndarray

    def to_table(self) -> pa.Table:
        """Long form: ``key``, ``time`` (timestamp[us, UTC]), ``interest``."""
        n, p = self.interest.shape
        return pa.table(
            {
                "key": pa.array(self.keys, pa.string()).take(pa.array(np.repeat(np.arange(n), p))),
                "time": pa.array(np.tile(self.times, n)).cast(pa.timestamp("us", tz="UTC")),
                "interest": pa.array(self.interest.ravel(), pa.float64()),
            }
        )


def _grid_rates(log: KeyLog, codes: np.ndarray, grid: np.ndarray, half_life: float) -> np.ndarray:
    """Exact short-scale rates of key ``codes`` (-1: none) at ascending ``grid`` times (days, last <= 0).

    Each event lands in the first grid cell at or after it, decayed to that grid time; then
    ``S[:, i] = S[:, i-1] * 2 ** (-(grid[i] - grid[i-1]) / h) + added[:, i]``, a loop over
    grid points vectorised over keys. Events after ``grid[-1]`` are not read.
    """
    uniq, inverse = np.unique(codes, return_inverse=True)  # -1 (unknown) sorts first if present
    rows, p = uniq.size, grid.size
    row_of = np.full(log.n_keys, -1)
    row_of[uniq[uniq >= 0]] = np.flatnonzero(uniq >= 0)
    m = log.upto(grid[-1])
    row = row_of[log.key[:m]]
    sel = row >= 0
    row, time, weight = row[sel], log.time[:m][sel], log.weight[:m][sel]
    cell = np.searchsorted(grid, time, side="left")
    added = weight * np.exp(-LN2 * (grid[cell] - time) / half_life)
    s = np.bincount(row * p + cell, added, minlength=rows * p).astype(np.float64).reshape(rows, p)
    step = np.exp(-LN2 * np.diff(grid) / half_life)
    for i in range(1, p):
        s[:, i] += s[:, i - 1] * step[i - 1]
    return (s * rate_factor(half_life, grid - log.start)[None, :])[inverse.reshape(-1)]


def _grid(log: KeyLog, cfg: TrendConfig, points: int, days_back: float | None) -> np.ndarray:
    if points < 2:
        raise InputError(f"points must be at least 2, got {points}")
    if days_back is None:  # skip the log's first short half-life: rates over minutes are noise
        span = -log.start
        days_back = min(
            span - cfg.short_half_life_days if span > 2 * cfg.short_half_life_days else span,
            3 * cfg.long_half_life_days,
        )
    if not days_back > 0:
        days_back = cfg.short_half_life_days
    return np.linspace(-float(days_back), 0.0, points)


def trend_series(
    events: pa.Table,
    now: datetime,
    keys: Sequence[str],
    *,
    level: Level = "category",
    config: TrendConfig | None = None,
    points: int = 60,
    days_back: float | None = None,
) -> TrendSeries:
    """The short-scale interest of ``keys`` on ``points`` evenly spaced times ending at ``now``.

    ``days_back`` defaults to three long half-lives, or the log's span less its first short
    half-life when shorter. Keys without events get zeros. Exact (the kernel's recursion), vectorised over events.
    """
    cfg = config or TrendConfig()
    log = key_log(events, now, level, cfg.event_weights)
    keys = [str(k) for k in keys]
    grid = _grid(log, cfg, points, days_back)
    codes = log.keys.encode(pa.array(keys, pa.string())).astype(np.int64)
    values = _grid_rates(log, codes, grid, cfg.short_half_life_days)
    return TrendSeries(level, keys, from_days(grid, log.now), values)


def plot_trends(
    events: pa.Table,
    now: datetime,
    path: str | Path,
    *,
    level: Level = "category",
    config: TrendConfig | None = None,
    top: int = 5,
    points: int = 120,
    days_back: float | None = None,
) -> Path:
    """Write a PNG: interest over time of the top rising keys (left) and top fading keys (right).

    Rising keys are the ``top`` with the highest interest now; fading keys the ``top`` with
    the highest long-scale interest (what used to matter most). Labels are as in
    :func:`~decayrec.trends.trends`.

    Raises
    ------
    MissingExtraError
        When matplotlib is not installed (``pip install 'decayrec[plot]'``).
    """
    require("matplotlib", "plot")
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    cfg = config or TrendConfig()
    log = key_log(events, now, level, cfg.event_weights)
    stats = momentum_stats(log, cfg)
    trend, _ = trend_codes(stats, np.bincount(log.key, minlength=log.n_keys), cfg)
    codes = np.arange(log.n_keys)
    rising = codes[trend == 0][np.lexsort((codes[trend == 0], -stats["short"][trend == 0]))][:top]
    fading = codes[trend == 2][np.lexsort((codes[trend == 2], -stats["long"][trend == 2]))][:top]
    grid = _grid(log, cfg, points, days_back)
    times = from_days(grid, log.now)

    fig = Figure(figsize=(13.0, 5.0), dpi=110, layout="constrained")
    axes = fig.subplots(1, 2, sharey=False)
    for ax, chosen, name in ((axes[0], rising, "rising"), (axes[1], fading, "fading")):
        values = _grid_rates(log, chosen, grid, cfg.short_half_life_days)
        for i, code in enumerate(chosen):
            key_id = log.keys.ids[int(code)].as_py()
            label = f"{key_id}: momentum {stats['labelled'][code]:.2f}, z {stats['z'][code]:+.1f}"
            ax.plot(times, values[i], lw=1.6, label=label)
        if chosen.size:
            ax.legend(loc="upper left", fontsize="small", frameon=False)
        else:
            ax.text(0.5, 0.5, f"no {name} {_PLURAL[level]} as of now", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlim(times[0], times[-1])
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.set_ylim(bottom=0.0)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"top {name} {_PLURAL[level]}")
        ax.set_xlabel("time (UTC)")
    axes[0].set_ylabel(f"interest: weighted events per day (half-life {cfg.short_half_life_days:g} d)")
    against = f", relative to the shop's {float(stats['shop']):.2f}" if cfg.relative_to_shop else ""
    fig.suptitle(
        f"Shop {level} trends as of {iso(log.now)}: momentum = {cfg.short_half_life_days:g} d rate / "
        f"{cfg.long_half_life_days:g} d rate{against}"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
