"""The trends table: interest, momentum and a rising / steady / fading label per key.

For key ``k`` with events of weights ``w_e`` at ages ``a_e`` (days before ``now``), and a
log observed for ``T`` days, the rate at half-life ``h`` is

    r_h = c_h * S_h,   S_h = sum_e w_e 2 ** (-a_e / h),   c_h = ln 2 / (h (1 - 2 ** (-T / h)))

in weighted events per day: a steady Poisson stream of rate ``r`` has ``E[r_h] = r`` at
every scale. ``interest`` is the short-scale rate, ``momentum = r_short / r_long``.

The label asks for two kinds of evidence. Practical: momentum beyond the thresholds.
Statistical: ``D = r_short - r_long = sum_e w_e (c_s 2 ** (-a_e/h_s) - c_l 2 ** (-a_e/h_l))``
is a linear statistic of a Poisson process, mean 0 for a steady stream, with variance
estimated by ``sum_e w_e^2 (c_s 2 ** (-a_e/h_s) - c_l 2 ** (-a_e/h_l)) ** 2`` (Campbell's
theorem), which expands into decayed sums of ``w^2`` at ``h_s/2``, ``h_l/2`` and
``h_s h_l / (h_s + h_l)``; ``z = D / sqrt(var)``. A key needs ``|z| >= min_z`` and at least
``min_events`` events, or it is ``steady``; the ``evidence`` column says which held.

When the whole shop rises or falls (a season, a crawl that tails off) every key follows it.
``relative_to_shop`` labels keys against the shop instead: the thresholds apply to
``momentum / shop momentum`` and ``D = r_short - m_shop * r_long`` (``m_shop`` taken as known).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Final

import numpy as np
import pyarrow as pa

from decayrec.decay.kernels import decayed_sums, from_days, last_event_time
from decayrec.timeparse import iso
from decayrec.trends._log import KeyLog, key_log, rate_factor
from decayrec.trends.config import Level, TrendConfig
from decayrec.trends.forecast import forecast

__all__ = ["EVIDENCE", "TRENDS", "TRENDS_SCHEMA", "momentum_stats", "trend_codes", "trends"]

TRENDS_SCHEMA: Final = pa.schema(
    [
        ("key", pa.string()),
        ("level", pa.string()),
        ("interest", pa.float64()),
        ("momentum", pa.float64()),
        ("trend", pa.string()),
        ("z", pa.float64()),
        ("evidence", pa.string()),
        ("interest_short", pa.float64()),
        ("interest_long", pa.float64()),
        ("momentum_vs_shop", pa.float64()),
        ("events_window", pa.int64()),
        ("users_window", pa.int64()),
        ("forecast", pa.float64()),
        ("events_total", pa.int64()),
        ("last_event", pa.timestamp("us", tz="UTC")),
    ]
)
TRENDS: Final = ("rising", "steady", "fading")
EVIDENCE: Final = ("clear", "within noise", "too few events")


def momentum_stats(log: KeyLog, cfg: TrendConfig, at: float = 0.0) -> dict[str, np.ndarray]:
    """Per key as of ``at`` (days since ``log.now``): rates, momentum and the evidence behind a label.

    Returns ``short`` and ``long`` (rates per day), ``momentum``, ``vs_shop`` (momentum over
    the shop's, ``shop``: all keys' short rate over their long rate), ``labelled`` (the
    momentum the thresholds apply to: ``vs_shop`` when ``cfg.relative_to_shop``, else
    ``momentum``) and ``z`` (of ``short - ref * long`` with ``ref`` the shop's momentum or 1).
    """
    m = log.upto(at)
    key, time, w = log.key[:m], log.time[:m], log.weight[:m]
    hs, hl = cfg.short_half_life_days, cfg.long_half_life_days
    cs, cl = rate_factor(np.array([hs, hl]), at - log.start)
    s = decayed_sums(key, time, w, [hs, hl], at, log.n_keys)
    sq = decayed_sums(key, time, w * w, [hs / 2, hl / 2, hs * hl / (hs + hl)], at, log.n_keys)
    short, long_ = cs * s[:, 0], cl * s[:, 1]
    shop = float(short.sum() / long_.sum()) if long_.sum() > 0 else 1.0
    ref = shop if cfg.relative_to_shop else 1.0
    var = np.maximum(cs * cs * sq[:, 0] + ref * ref * cl * cl * sq[:, 1] - 2 * ref * cs * cl * sq[:, 2], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        momentum = np.where(long_ > 0, short / long_, 0.0)
        z = np.where(var > 0, (short - ref * long_) / np.sqrt(var), 0.0)
    vs_shop = momentum / shop if shop > 0 else np.zeros_like(momentum)
    labelled = vs_shop if cfg.relative_to_shop else momentum
    return {
        "short": short,
        "long": long_,
        "momentum": momentum,
        "shop": np.float64(shop),
        "vs_shop": vs_shop,
        "labelled": labelled,
        "z": z,
    }


def trend_codes(stats: dict[str, np.ndarray], n_events: np.ndarray, cfg: TrendConfig) -> tuple[np.ndarray, np.ndarray]:
    """Trend and evidence codes per key (indices into :data:`TRENDS` and :data:`EVIDENCE`)."""
    enough = n_events >= cfg.min_events
    clear = np.abs(stats["z"]) >= cfg.min_z
    evidence = np.where(~enough, 2, np.where(clear, 0, 1))
    mom = stats["labelled"]
    trend = np.full(mom.size, 1)
    trend[(evidence == 0) & (mom >= cfg.rising_momentum)] = 0
    trend[(evidence == 0) & (mom <= cfg.fading_momentum)] = 2
    return trend, evidence


def _arrow(values, type_: pa.DataType) -> pa.Array:
    return (values if isinstance(values, pa.Array) else pa.array(values)).cast(type_)


def trends(
    events: pa.Table,
    now: datetime,
    *,
    level: Level = "category",
    config: TrendConfig | None = None,
) -> pa.Table:
    """Shop-wide interest, momentum and trend per category or item, as of ``now``.

    Only events at or before ``now`` are read; event types of weight 0 are left out, and at
    category level so are events without a category.

    Parameters
    ----------
    events
        Canonical events (``user_id``, ``item_id``, ``event``, ``timestamp``, optional
        ``category_id``).
    now
        The time the trends are computed as of (naive = UTC).
    level
        ``"category"`` (needs ``category_id``) or ``"item"``.
    config
        :class:`TrendConfig`; defaults to ``TrendConfig()``.

    Returns
    -------
    pyarrow.Table
        :data:`TRENDS_SCHEMA`, one row per key with an event at or before ``now``, by
        ``interest`` descending then key. ``interest`` = ``interest_short``: the short-scale
        decayed rate in weighted events per day; ``interest_long`` the long-scale one;
        ``momentum`` their ratio; ``trend`` rising / steady / fading; ``z`` and ``evidence``
        (``clear``, ``within noise``, ``too few events``) the evidence behind the label;
        ``momentum_vs_shop`` the momentum over the whole level's (what the label uses when
        ``config.relative_to_shop``);
        ``events_window`` / ``users_window`` the events and distinct users in
        ``(now - window, now]``; ``forecast`` the expected events in ``(now, now + window]``;
        ``events_total`` the events so far; ``last_event`` the latest one. The schema
        metadata ``decayrec`` holds the config and the forecast model as JSON.

    Raises
    ------
    InputError
        For an unknown level, or level ``"category"`` on events without ``category_id``.
    """
    cfg = config or TrendConfig()
    log = key_log(events, now, level, cfg.event_weights)
    n = log.n_keys
    window = cfg.window_days
    stats = momentum_stats(log, cfg)
    n_events = np.bincount(log.key, minlength=n)
    trend, evidence = trend_codes(stats, n_events, cfg)
    lo = log.upto(-window)
    fc = forecast(log, 0.0, cfg)
    order = np.lexsort((np.arange(n), -stats["short"]))  # key codes follow sorted ids
    columns = {
        "key": log.keys.ids,
        "level": pa.repeat(level, n),
        "interest": stats["short"],
        "momentum": stats["momentum"],
        "trend": pa.array(TRENDS).take(pa.array(trend)),
        "z": stats["z"],
        "evidence": pa.array(EVIDENCE).take(pa.array(evidence)),
        "interest_short": stats["short"],
        "interest_long": stats["long"],
        "momentum_vs_shop": stats["vs_shop"],
        "events_window": np.bincount(log.key[lo:], minlength=n),
        "users_window": log.distinct_users(lo),
        "forecast": fc.mean,
        "events_total": n_events,
        "last_event": from_days(last_event_time(log.key, log.time, 0.0, n), log.now),
    }
    meta = {
        "level": level,
        "now": iso(log.now),
        "shop_momentum": float(stats["shop"]),
        "config": json.loads(cfg.model_dump_json()),
        "forecast": fc.describe(),
    }
    table = pa.table([_arrow(columns[f.name], f.type) for f in TRENDS_SCHEMA], schema=TRENDS_SCHEMA)
    return table.take(pa.array(order)).replace_schema_metadata({"decayrec": json.dumps(meta)})
