"""A deterministic synthetic shop whose generative process is known exactly.

For user u and category c, engagement episodes start at the points of a self-exciting
(Hawkes) process with the exponential kernel of DESIGN.md::

    lambda_uc(t) = season(t) * mu_uc + alpha_c * S_uc(t)
    S_uc(t) = sum over u's events e in c with t_e < t of w[type(e)] * 2 ** (-(t - t_e) / h_c)

simulated exactly by Ogata thinning on [signup_u, min(lapse_u, end)). The points are
the ``view`` and ``click`` events, each starting an episode on one item (chosen by
popularity and newness among items already released, or by revisiting the user's earlier
items in c). Minutes to hours later the episode may add a ``cart`` then a ``purchase`` and
a ``fav`` of that item. In consumable categories a purchase schedules, with probability
``rebuy_continue``, a re-buy of the same item after a Gamma gap whose mean is the
category's cycle. Episodes never buy an item the user owns (outside consumables) or has a
purchase or re-buy pending for (consumables), so same-item purchase gaps are re-buy gaps
or longer. Follow-ups and re-buys are not points but enter S with their own weights.
``alpha_c`` is set from ``branching_ratio`` and the expected weight of an episode (an
upper bound, as suppressed purchases and the period's end only lower it). ``season`` is
constant within each 24-hour block counted from ``start`` (weekends and a holiday bump
higher) and has mean 1, so ``mu_uc`` is the average baseline rate per day. After its lapse
a user emits nothing. Every number in the truth is exactly the one the simulation used.

What is written out can differ from what was simulated the way real logs differ
(``observe``, ``time_resolution``, ``basket_days``, ``anonymous_sessions``): purchases only,
times floored to the day, purchases gathered into shopping trips, or sessions written as
users. The process itself, and so the truth, stays the same.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from heapq import heappop, heappush
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from decayrec.schema import COLUMNS as _ALL_COLUMNS
from decayrec.schema import EVENT_ID, EVENT_TYPES, REC_ID

# A simulated shop has no client event ids and no recommendation lists to respond to.
COLUMNS = tuple(c for c in _ALL_COLUMNS if c not in (EVENT_ID, REC_ID))

__all__ = ["SimConfig", "Simulation", "season_by_day", "simulate"]

_US_PER_DAY = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_VIEW, _CLICK, _CART, _FAV, _PURCHASE = (EVENT_TYPES.index(e) for e in ("view", "click", "cart", "fav", "purchase"))
_REBUY = len(EVENT_TYPES)  # internal code of a re-buy; written out as a purchase
_BLOCK = 1 << 15
# Funnel delays: (median minutes, log-sd) of cart after start, purchase after cart, fav after start.
_CART_DELAY, _BUY_DELAY, _FAV_DELAY = (8.0, 1.0), (40.0, 1.0), (3.0, 1.0)
_DEFAULT_WEIGHTS = {"view": 1.0, "click": 1.5, "cart": 3.0, "fav": 3.0, "purchase": 5.0}
# Emitted events as columns: time in days since start, user, item, event code, quantity.
_Out = tuple[list[float], list[int], list[int], list[int], list[float]]


class SimConfig(BaseModel):
    """Knobs of the synthetic shop; :func:`simulate` is a pure function of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_users: int = Field(2000, ge=1)
    n_categories: int = Field(30, ge=1)
    n_items: int = Field(1200, ge=1, description="At least n_categories.")
    days: float = Field(180.0, gt=0, le=3660)
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    seed: int = Field(0, ge=0)
    half_life_range_days: tuple[float, float] = Field((1.0, 60.0), description="Half-lives, log-uniform.")
    branching_ratio: float = Field(0.5, gt=0, lt=0.9, description="Episodes an episode triggers (at most).")
    event_weights: dict[str, float] = Field(default_factory=lambda: dict(_DEFAULT_WEIGHTS))
    episodes_per_day: float = Field(0.3, gt=0, description="Mean baseline episode rate of a user.")
    activity_shape: float = Field(1.5, gt=0, description="Gamma shape of user rates; small = unequal.")
    taste_concentration: float = Field(0.3, gt=0, description="Dirichlet taste; small = few favourites.")
    weekend_boost: float = Field(1.3, gt=0, description="Saturday and Sunday factor.")
    yearly_amplitude: float = Field(0.1, ge=0, lt=1, description="Cosine yearly cycle, peak mid-December.")
    holiday_boost: float = Field(0.4, ge=0, description="Gaussian bump at the end of November (sd 10 days).")
    click_share: float = Field(0.3, ge=0, le=1, description="Episodes that start with a click, not a view.")
    cart_prob: float = Field(0.25, ge=0, le=1)
    purchase_prob: float = Field(0.55, ge=0, le=1, description="Purchase given cart.")
    fav_prob: float = Field(0.06, ge=0, le=1)
    consumable_share: float = Field(0.3, ge=0, le=1, description="Share of categories with re-buy cycles.")
    rebuy_cycle_range_days: tuple[float, float] = Field((7.0, 45.0), description="Cycles, uniform.")
    rebuy_continue: float = Field(0.8, ge=0, lt=1, description="Chance a purchase schedules a re-buy.")
    rebuy_gap_shape: float = Field(8.0, gt=0, description="Gamma shape of re-buy gaps (mean = cycle).")
    revisit_prob: float = Field(0.3, ge=0, le=1, description="Episode revisits one of the user's items in c.")
    newness_boost: float = Field(3.0, ge=0, description="Extra choice weight of a just-released item.")
    newness_half_life_days: float = Field(10.0, gt=0)
    prereleased_share: float = Field(0.6, ge=0, le=1, description="Items released before start.")
    late_signup_share: float = Field(0.2, ge=0, le=1, description="Users who sign up during the period.")
    never_lapse_share: float = Field(0.35, ge=0, le=1)
    lapse_mean_days: float = Field(120.0, gt=0, description="Mean exponential time from signup to lapse.")
    session_gap_minutes: float = Field(30.0, gt=0)
    # How the shop is observed: the process above runs the same, only what is written out changes.
    observe: Literal["all", "purchases"] = Field("all", description="Events written out: all, or purchases only.")
    time_resolution: Literal["exact", "day"] = Field("exact", description="Times as simulated, or floored to the day.")
    basket_days: float | None = Field(
        None, gt=0, description="Purchases wait for the user's next shopping trip, one every basket_days days: baskets."
    )
    anonymous_sessions: bool = Field(False, description="Write each session as its own user: nobody comes back.")

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        if self.n_items < self.n_categories:
            raise ValueError("n_items must be at least n_categories (every category needs an item)")
        if set(self.event_weights) != set(EVENT_TYPES) or min(self.event_weights.values()) <= 0:
            raise ValueError(f"event_weights needs a positive weight for each of {EVENT_TYPES}")
        for name in ("half_life_range_days", "rebuy_cycle_range_days"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high")
        return self


@dataclass(frozen=True)
class Simulation:
    """Events of the synthetic shop and the truth that generated them."""

    config: SimConfig
    events: pa.Table
    truth: dict[str, Any]

    def write(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``events.csv`` (canonical CSV) and ``truth.json``; return their paths."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        ts = self.events.column("timestamp").cast(pa.int64()).to_numpy()
        iso = pa.array(_iso(ts), pa.string())
        table = self.events.set_column(COLUMNS.index("timestamp"), "timestamp", iso)
        csv_path, truth_path = out / "events.csv", out / "truth.json"
        # Ids, event names and ISO times hold no commas or quotes: plain, unquoted CSV.
        with csv_path.open("wb") as f:
            f.write((",".join(COLUMNS) + "\n").encode())
            pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        truth_path.write_text(json.dumps(self.truth, indent=1) + "\n", encoding="utf-8")
        return csv_path, truth_path


def season_by_day(config: SimConfig) -> np.ndarray:
    """Multiplier of the baseline rate in each 24-hour block since ``start`` (mean 1)."""
    n = math.ceil(config.days)
    offset = ((np.arange(n) + 0.5) * _US_PER_DAY).astype("timedelta64[us]")
    days = (np.datetime64(_us(config.start), "us") + offset).astype("datetime64[D]")  # of block midpoints
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    doy = (days - days.astype("datetime64[Y]")).astype(np.int64)
    week = np.where(weekday >= 5, config.weekend_boost, 1.0)
    year = 1 + config.yearly_amplitude * np.cos(2 * np.pi * (doy - 350) / 365.25)
    gap = np.abs(doy - 333)
    holiday = config.holiday_boost * np.exp(-0.5 * (np.minimum(gap, 365 - gap) / 10.0) ** 2)
    season = week * (year + holiday)
    return _sig(season / season.mean())


def simulate(config: SimConfig | None = None) -> Simulation:
    """Simulate the shop described by ``config`` (default :class:`SimConfig`).

    Returns
    -------
    Simulation
        Events in canonical columns sorted by timestamp, user_id, item_id, and the truth.
    """
    cfg = config or SimConfig()
    rng = np.random.default_rng(cfg.seed)
    cats = _draw_categories(cfg, rng)
    items = _draw_items(cfg, rng, cats["price_median"])
    users = _draw_users(cfg, rng)
    season = season_by_day(cfg)
    draws = _Draws(rng, cfg.rebuy_gap_shape)
    out: _Out = ([], [], [], [], [])
    signup, end = users["signup"].tolist(), users["end"].tolist()  # Python floats: the loop is scalar
    for c, table in enumerate(_choice_tables(cfg, items)):
        category = _category(cfg, cats, c, table, season)
        for u in np.flatnonzero(users["mu"][:, c] > 0).tolist():
            _simulate_pair(category, draws, u, float(users["mu"][u, c]), signup[u], end[u], out)
    events = _to_table(cfg, out, items)
    return Simulation(cfg, events, _truth(cfg, cats, items, users, season))


# ----------------------------------------------------------------------------- drawing


def _sig(values: np.ndarray) -> np.ndarray:
    """Round to 6 significant digits, so the truth's JSON holds the exact values used."""
    return np.array([float(f"{v:.6g}") for v in np.ravel(values)]).reshape(np.shape(values))


def _on_us(days: np.ndarray) -> np.ndarray:
    """Snap times in days to whole microseconds (as written in the truth)."""
    return np.round(days * _US_PER_DAY) / _US_PER_DAY


def _draw_categories(cfg: SimConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = cfg.n_categories
    lo, hi = np.log(cfg.half_life_range_days)
    half_life = _sig(np.exp(rng.uniform(lo, hi, n)))
    consumable = np.zeros(n, bool)
    consumable[rng.permutation(n)[: round(cfg.consumable_share * n)]] = True
    cycle = _sig(rng.uniform(*cfg.rebuy_cycle_range_days, n))
    w = cfg.event_weights
    rebuys = np.where(consumable, cfg.rebuy_continue / (1 - cfg.rebuy_continue), 0.0)
    # Expected weight an episode adds to S, re-buys included, so alpha meets the branching ratio.
    start = cfg.click_share * w["click"] + (1 - cfg.click_share) * w["view"]
    buy = cfg.purchase_prob * w["purchase"] * (1 + rebuys)
    weight = start + cfg.fav_prob * w["fav"] + cfg.cart_prob * (w["cart"] + buy)
    alpha = _sig(cfg.branching_ratio * math.log(2) / (half_life * weight))
    price_median = np.exp(rng.uniform(np.log(5.0), np.log(200.0), n))
    return {
        "half_life": half_life,
        "alpha": alpha,
        "consumable": consumable,
        "cycle": cycle,
        "price_median": price_median,
    }


def _draw_items(cfg: SimConfig, rng: np.random.Generator, price_median: np.ndarray) -> dict[str, np.ndarray]:
    n, k = cfg.n_items, cfg.n_categories
    extra = rng.choice(k, n - k, p=rng.dirichlet(np.full(k, 2.0)))
    category = rng.permutation(np.concatenate([np.arange(k), extra]))
    before = -rng.uniform(0, 365, n)
    release = np.where(rng.random(n) < cfg.prereleased_share, before, rng.uniform(0, cfg.days, n))
    first = np.unique(category, return_index=True)[1]
    release[first] = before[first]  # every category has something to sell from the start
    popularity = rng.lognormal(0.0, 1.0, n)
    price = np.maximum(np.round(price_median[category] * rng.lognormal(0.0, 0.4, n), 2), 0.01)
    return {"category": category, "release": _on_us(release), "popularity": popularity, "price": price}


def _draw_users(cfg: SimConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, k = cfg.n_users, cfg.n_categories
    rate = rng.gamma(cfg.activity_shape, cfg.episodes_per_day / cfg.activity_shape, n)
    share = rng.dirichlet(np.full(k, 2.0))
    taste = rng.dirichlet(np.maximum(cfg.taste_concentration * k * share, 1e-3), size=n)
    signup = np.where(rng.random(n) < cfg.late_signup_share, rng.uniform(0, 0.8 * cfg.days, n), 0.0)
    lapse = signup + rng.exponential(cfg.lapse_mean_days, n)
    lapse = np.where((rng.random(n) < cfg.never_lapse_share) | (lapse >= cfg.days), np.inf, _on_us(lapse))
    mu = _sig(rate[:, None] * taste)
    return {"mu": mu, "signup": _on_us(signup), "lapse": lapse, "end": np.minimum(lapse, cfg.days)}


def _choice_tables(cfg: SimConfig, items: dict[str, np.ndarray]) -> list[tuple[list[int], list[list[float]]]]:
    """Per category: its items and, per day, cumulative choice weights (0 before release)."""
    day = np.arange(math.ceil(cfg.days))[:, None]
    tables = []
    for c in range(cfg.n_categories):
        idx = np.flatnonzero(items["category"] == c)
        age = day - items["release"][idx]
        boost = 1 + cfg.newness_boost * np.exp2(-np.maximum(age, 0) / cfg.newness_half_life_days)
        weight = np.where(age >= 0, items["popularity"][idx] * boost, 0.0)
        tables.append((idx.tolist(), np.cumsum(weight, axis=1).tolist()))
    return tables


# ----------------------------------------------------------------------------- thinning


class _Draws:
    """Buffered uniform, normal and Gamma(shape) draws from one generator, in call order."""

    def __init__(self, rng: np.random.Generator, gamma_shape: float) -> None:
        self._rng, self._shape = rng, gamma_shape
        self._u: list[float] = []
        self._n: list[float] = []
        self._g: list[float] = []

    def uniform(self) -> float:
        if not self._u:
            self._u = self._rng.random(_BLOCK).tolist()
        return self._u.pop()

    def normal(self) -> float:
        if not self._n:
            self._n = self._rng.standard_normal(_BLOCK).tolist()
        return self._n.pop()

    def gamma(self) -> float:
        if not self._g:
            self._g = self._rng.standard_gamma(self._shape, _BLOCK).tolist()
        return self._g.pop()


class _Category(NamedTuple):
    """What the thinning loop needs to know about one category."""

    h: float
    alpha: float
    cycle: float  # 0 when not consumable
    items: list[int]
    cum: list[list[float]]  # by day, cumulative choice weights of ``items``
    season: list[float]
    smax: float
    weight: tuple[float, ...]  # by event code, _REBUY included
    cfg: SimConfig


def _category(
    cfg: SimConfig, cats: dict[str, np.ndarray], c: int, table: tuple[list[int], list[list[float]]], season: np.ndarray
) -> _Category:
    weight = tuple(cfg.event_weights[e] for e in EVENT_TYPES) + (cfg.event_weights["purchase"],)
    cycle = float(cats["cycle"][c]) if cats["consumable"][c] else 0.0
    h, alpha = float(cats["half_life"][c]), float(cats["alpha"][c])
    return _Category(h, alpha, cycle, *table, season.tolist(), float(season.max()), weight, cfg)


def _delay(normal: Callable[[], float], spec: tuple[float, float]) -> float:
    """A log-normal delay in days, at least one second."""
    return max(spec[0] * math.exp(spec[1] * normal()) / 1440.0, 1 / 86400)


def _simulate_pair(cat: _Category, draws: _Draws, u: int, mu: float, t0: float, t1: float, out: _Out) -> None:
    """Ogata thinning for one (user, category) on [t0, t1); appends events to ``out``."""
    cfg, h, alpha, w = cat.cfg, cat.h, cat.alpha, cat.weight
    uni, normal = draws.uniform, draws.normal
    o_t, o_u, o_i, o_code, o_q = out[0].append, out[1].append, out[2].append, out[3].append, out[4].append
    heap: list[tuple[float, int, int, int, float]] = []  # pending (time, seq, code, item, quantity)
    urn: list[int] = []  # items of the user's episodes in c, for revisits
    # item -> seq of its pending re-buy, 0 once bought (for good outside consumables), -1 free again
    rebuy: dict[int, int] = {}
    seq, t, s_time, s_val, base = 0, t0, t0, 0.0, cat.smax * mu

    def quantity() -> float:
        x = uni() if cat.cycle else 0.0
        return 1.0 if x < 0.75 else 2.0 if x < 0.9 else 3.0

    while True:
        stop = heap[0][0] if heap and heap[0][0] < t1 else t1
        bound = base + alpha * s_val * 2.0 ** ((s_time - t) / h)  # S only decays until ``stop``
        cand = t - math.log(1.0 - uni()) / bound
        if cand >= stop:
            if stop >= t1:
                return
            t, key, code, item, qty = heappop(heap)
            if code == _REBUY and rebuy.get(item) != key:
                continue  # replaced by a later purchase
            o_t(t), o_u(u), o_i(item), o_code(_PURCHASE if code == _REBUY else code), o_q(qty)
            s_val, s_time = s_val * 2.0 ** ((s_time - t) / h) + w[code], t
            if cat.cycle and code in (_PURCHASE, _REBUY):
                seq += 1
                rebuy[item] = seq if uni() < cfg.rebuy_continue else -1
                if rebuy[item] == seq:
                    gap = cat.cycle * draws.gamma() / cfg.rebuy_gap_shape
                    heappush(heap, (t + gap, seq, _REBUY, item, quantity()))
            continue
        t = cand
        if uni() * bound > cat.season[int(t)] * mu + alpha * s_val * 2.0 ** ((s_time - t) / h):
            continue
        code = _CLICK if uni() < cfg.click_share else _VIEW
        if urn and uni() < cfg.revisit_prob:
            item = urn[int(uni() * len(urn))]
        else:
            cum = cat.cum[int(t)]
            item = cat.items[min(bisect_right(cum, uni() * cum[-1]), len(cum) - 1)]
        urn.append(item)
        o_t(t), o_u(u), o_i(item), o_code(code), o_q(1.0)
        s_val, s_time = s_val * 2.0 ** ((s_time - t) / h) + w[code], t
        if uni() < cfg.cart_prob:
            t_cart = t + _delay(normal, _CART_DELAY)
            heappush(heap, (t_cart, seq := seq + 1, _CART, item, 1.0))
            if uni() < cfg.purchase_prob and rebuy.get(item, -1) < 0:
                rebuy[item] = 0
                t_buy = t_cart + _delay(normal, _BUY_DELAY)
                heappush(heap, (t_buy, seq := seq + 1, _PURCHASE, item, quantity()))
        if uni() < cfg.fav_prob:
            heappush(heap, (t + _delay(normal, _FAV_DELAY), seq := seq + 1, _FAV, item, 1.0))


# ----------------------------------------------------------------------------- output


def _us(when: datetime) -> int:
    """Microseconds since the Unix epoch, exactly."""
    return (when - _EPOCH) // timedelta(microseconds=1)


def _iso(us: np.ndarray) -> list[str]:
    """ISO-8601 UTC strings ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` of epoch microseconds."""
    text = np.datetime_as_string(np.asarray(us, np.int64).astype("datetime64[us]"), unit="us")
    return [(s[:-7] if s.endswith(".000000") else s) + "Z" for s in text]


def _names(prefix: str, n: int, width: int) -> list[str]:
    width = max(width, len(str(n - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def _sessions(ts: np.ndarray, user: np.ndarray, gap_minutes: float) -> np.ndarray:
    """Per-user session numbers from 1; a new session starts after a gap over ``gap_minutes``."""
    order = np.lexsort((ts, user))
    u, t = user[order], ts[order]
    first = np.ones(len(u), bool)
    first[1:] = u[1:] != u[:-1]
    new = first.copy()
    new[1:] |= np.diff(t) > gap_minutes * 60e6
    count = np.cumsum(new)
    number = np.empty_like(count)
    number[order] = count - np.maximum.accumulate(np.where(first, count, 0)) + 1
    return number


def _observe(cfg: SimConfig, ts: np.ndarray, user: np.ndarray, item: np.ndarray, code: np.ndarray, qty: np.ndarray):
    """What of the simulated events a log shows (:class:`SimConfig`'s observation fields), times in epoch us."""
    start, end = _us(cfg.start), _us(cfg.start) + round(cfg.days * _US_PER_DAY)
    if cfg.basket_days is not None:
        # Each user shops on a fixed rhythm with their own phase; a purchase waits for the next trip.
        step = cfg.basket_days * _US_PER_DAY
        phase = np.mod(user * 0.6180339887498949, 1.0) * step
        buy = code == _PURCHASE
        trip = np.ceil((ts - start - phase) / step) * step + phase + start
        ts = np.where(buy, np.round(trip).astype(np.int64), ts)
        keep = ts < end
        ts, user, item, code, qty = ts[keep], user[keep], item[keep], code[keep], qty[keep]
    if cfg.observe == "purchases":
        keep = code == _PURCHASE
        ts, user, item, code, qty = ts[keep], user[keep], item[keep], code[keep], qty[keep]
    if cfg.time_resolution == "day":
        ts = start + (ts - start) // _US_PER_DAY * _US_PER_DAY
    # One row per (time, user, item, event): a basket's or a day's repeats are one event with their quantities summed.
    order = np.lexsort((code, item, user, ts))
    ts, user, item, code, qty = ts[order], user[order], item[order], code[order], qty[order]
    if ts.size:
        new = np.r_[True, (np.diff(ts) != 0) | (np.diff(user) != 0) | (np.diff(item) != 0) | (np.diff(code) != 0)]
        start_at = np.flatnonzero(new)
        qty = np.add.reduceat(qty, start_at)
        ts, user, item, code = ts[start_at], user[start_at], item[start_at], code[start_at]
    return ts, user, item, code, qty


def _to_table(cfg: SimConfig, out: _Out, items: dict[str, np.ndarray]) -> pa.Table:
    ts = _us(cfg.start) + np.round(np.asarray(out[0], np.float64) * _US_PER_DAY).astype(np.int64)
    user, item, code = (np.asarray(x, np.int64) for x in out[1:4])
    ts, user, item, code, qty = _observe(cfg, ts, user, item, code, np.asarray(out[4], np.float64))
    order = np.lexsort((item, user, ts))  # ids are zero-padded, so index order is string order
    ts, user, item, code, qty = ts[order], user[order], item[order], code[order], qty[order]
    users = pa.array(_names("u", cfg.n_users, 5)).take(user)
    session = pc.utf8_lpad(pa.array(_sessions(ts, user, cfg.session_gap_minutes)).cast(pa.string()), 4, "0")
    sessions = pc.binary_join_element_wise(users, session, "-")
    columns = {
        "user_id": sessions if cfg.anonymous_sessions else users,
        "item_id": pa.array(_names("i", cfg.n_items, 4)).take(item),
        "event": pa.array(EVENT_TYPES).take(code),
        "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "category_id": pa.array(_names("c", cfg.n_categories, 2)).take(items["category"][item]),
        "price": pa.array(items["price"][item], pa.float64()),
        "quantity": pa.array(qty, pa.float64()),
        "session_id": sessions,
    }
    table = pa.table([columns[name] for name in COLUMNS], names=list(COLUMNS))
    if cfg.anonymous_sessions:  # session ids sort differently from user codes
        table = table.sort_by([("timestamp", "ascending"), ("user_id", "ascending"), ("item_id", "ascending")])
    return table


def _truth(cfg: SimConfig, cats: dict, items: dict, users: dict, season: np.ndarray) -> dict[str, Any]:
    start = _us(cfg.start)

    def iso(days: np.ndarray) -> list[str]:
        return _iso(start + np.round(np.asarray(days) * _US_PER_DAY).astype(np.int64))

    uid, iid, cid = _names("u", cfg.n_users, 5), _names("i", cfg.n_items, 4), _names("c", cfg.n_categories, 2)
    lapsed = np.isfinite(users["lapse"])
    lapse = iso(np.where(lapsed, users["lapse"], 0.0))
    mu = users["mu"]
    return {
        "start": iso(np.array([0.0]))[0],
        "end": iso(np.array([cfg.days]))[0],
        "half_life_days": {"by_category": dict(zip(cid, cats["half_life"].tolist()))},
        "event_weights": dict(cfg.event_weights),
        "alpha": dict(zip(cid, cats["alpha"].tolist())),
        "branching_ratio": cfg.branching_ratio,
        "hawkes_points": ["view", "click"],
        "season_by_day": season.tolist(),
        "consumable_cycles_days": {cid[c]: float(cats["cycle"][c]) for c in np.flatnonzero(cats["consumable"])},
        "rebuy": {"continue_prob": cfg.rebuy_continue, "gap_shape": cfg.rebuy_gap_shape},
        "users": {
            u: {"signup": s, "lapse": lapse[i] if lapsed[i] else None} for i, (u, s) in enumerate(zip(uid, iso(users["signup"])))
        },
        "baseline_per_day": {u: {cid[c]: float(mu[i, c]) for c in np.flatnonzero(mu[i] > 0)} for i, u in enumerate(uid)},
        "items": {
            i: {"category_id": cid[c], "release": r, "price": float(p)}
            for i, c, r, p in zip(iid, items["category"].tolist(), iso(items["release"]), items["price"])
        },
        "config": cfg.model_dump(mode="json"),
    }
