"""Calibrated interest strength: ``P(engage with key k within a horizon | S(u, k, t))``.

``S`` (DESIGN.md, "One quantity feeds everything") is a sum of decayed event weights: it
ranks interests but has no unit. :class:`StrengthModel` maps it to a probability with an
isotonic (monotone non-decreasing) fit learned from the log itself: at anchor times
``now - horizon, now - 2 horizon, ...`` every (user, key) pair with ``S > 0`` is a training
point, labelled 1 when the user touched the key in ``(anchor, anchor + horizon]``. All
labels end at or before ``now``: nothing after ``now`` is read.

"Faded" means strength below a threshold. Because the map is monotone in ``S`` and ``S``
only decays between events, the level ``S*`` where strength crosses the threshold gives
the time to fade in closed form: ``tau = h * log2(S / S*)``.

The events of one level (categories or items) as dense arrays, :func:`keyed_events`, are
shared with :mod:`decayrec.decay.profile`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.decay.ids import IdMap, pair_codes
from decayrec.decay.kernels import LN2, time_to_fade, to_days
from decayrec.decay.model import DecayModel, event_codes
from decayrec.errors import InputError
from decayrec.timeparse import iso, parse_time

__all__ = ["KeyedEvents", "StrengthModel", "anchor_pairs", "isotonic_fit", "keyed_events", "pav"]

Level = Literal["category", "item"]
LEVELS: tuple[str, ...] = ("category", "item")
_FORMAT = "decayrec.strength"
_VERSION = 1
# Below this many blocks the scalar stack PAV is cheaper than another vectorised pass.
_STACK_BELOW = 2_000


# -- the events of one level, as dense arrays ------------------------------------------
def as_utc(when: datetime) -> datetime:
    """An aware UTC datetime (naive input is taken as UTC, as the store keeps times)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class KeyedEvents:
    """The events of one level (category or item) as of ``origin``, as dense arrays.

    Attributes
    ----------
    level
        ``"category"`` or ``"item"``.
    origin
        Aware UTC; ``time`` counts days from it and no event after it was kept.
    users, keys
        Id maps of every user with an event at or before ``origin`` and of the keys.
    user, key, etype, time, weight
        Per event: codes, event type code (index into ``schema.EVENT_TYPES``), days
        since ``origin`` (<= 0) and interest weight.
    key_half_life
        Per key: the half-life in days (an item uses its category's).
    key_category
        Per key: its category id (null when unknown); the key itself at category level.
    user_scale
        Per user: the multiplier of their half-lives from a ``per_user`` decay fit (None: all
        1). ``weight`` is already divided by it, as the fit defines it.
    """

    level: str
    origin: datetime
    users: IdMap
    keys: IdMap
    user: np.ndarray
    key: np.ndarray
    etype: np.ndarray
    time: np.ndarray
    weight: np.ndarray
    key_half_life: np.ndarray
    key_category: pa.Array
    user_scale: np.ndarray | None = None

    def pair_half_life(self, users: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """The half-life of each (user, key): the key's, times the user's multiplier."""
        h: np.ndarray = self.key_half_life[keys]
        return h if self.user_scale is None else h * self.user_scale[users]

    def event_half_life(self) -> np.ndarray:
        """Per event: the half-life of its (user, key)."""
        return self.pair_half_life(self.user, self.key)

    def decay_rate(self) -> np.ndarray:
        """Per event ``-ln 2 / h`` of its (user, key): ``S`` terms are ``w * exp(rate * age)``."""
        return -LN2 / self.event_half_life()


def _column(events: pa.Table, name: str) -> pa.ChunkedArray:
    """A string column, or all nulls when the optional column is missing."""
    if name not in events.column_names:
        return pa.chunked_array([pa.nulls(events.num_rows, pa.string())])
    col = events.column(name)
    return col.cast(pa.string()) if not pa.types.is_string(col.type) else col


def keyed_events(events: pa.Table, decay: DecayModel, level: str, now: datetime) -> KeyedEvents:
    """Dense arrays of ``events`` at ``level`` as of ``now`` (later events are dropped).

    At category level, events without a category are dropped (their user stays in
    ``users``). An item's category is that of its latest event that names one.
    """
    _check_level(level)
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in events.column_names]
    if missing:
        raise InputError(f"events lack the columns {missing}", "give canonical events (decayrec.schema.COLUMNS)")
    now = as_utc(now)
    time = to_days(events.column(schema.TIMESTAMP), now)
    keep = time <= 0.0
    if not keep.all():
        events, time = events.filter(pa.array(keep)), time[keep]
    users_col = _column(events, schema.USER)
    users = IdMap.from_values(users_col)
    category = _column(events, schema.CATEGORY)
    if level == "category":
        named = pc.is_valid(category).to_numpy(zero_copy_only=False)
        if not named.all():
            events, time, category = events.filter(pa.array(named)), time[named], category.filter(pa.array(named))
            users_col = _column(events, schema.USER)
    key_col = category if level == "category" else _column(events, schema.ITEM)
    keys = IdMap.from_values(key_col)
    key = keys.encode(key_col)
    key_category = keys.ids if level == "category" else _item_categories(key, time, category, len(keys))
    user = users.encode(users_col)
    weight = decay.weight_for(events.column(schema.EVENT))
    user_scale = None
    if decay.user_scale:  # a per-user fit: half-lives times r, weights over r
        user_scale = decay.scales_for(users.ids)
        weight = weight / user_scale[user]
    return KeyedEvents(
        level=level,
        origin=now,
        users=users,
        keys=keys,
        user=user,
        key=key,
        etype=event_codes(events.column(schema.EVENT)),
        time=time,
        weight=weight,
        key_half_life=decay.half_life_for(key_category),
        key_category=key_category,
        user_scale=user_scale,
    )


def _item_categories(key: np.ndarray, time: np.ndarray, category: pa.ChunkedArray, n_keys: int) -> pa.Array:
    """Each item's category: the one named by its latest event that names one (null if none)."""
    named = np.flatnonzero(pc.is_valid(category).to_numpy(zero_copy_only=False))
    latest = np.full(n_keys, -np.inf)
    np.maximum.at(latest, key[named], time[named])  # O(n): a (key, time) sort cost 10x more
    hit = named[time[named] == latest[key[named]]]
    source = np.full(n_keys, -1, dtype=np.int64)
    source[key[hit[::-1]]] = hit[::-1]  # simultaneous latest events: the first row wins
    flat = category.combine_chunks() if isinstance(category, pa.ChunkedArray) else category
    return flat.take(pa.array(source, mask=source < 0))


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise InputError(f"level {level!r} is not one of {LEVELS}", "use level='category' or level='item'")


# -- training pairs ----------------------------------------------------------------------
def anchor_pairs(ke: KeyedEvents, anchors: np.ndarray, horizon: float) -> dict[str, np.ndarray]:
    """``S`` and labels of every (user, key) pair with ``S > 0`` at each anchor.

    Parameters
    ----------
    ke
        Events as of some origin (``ke.time <= 0``).
    anchors
        Anchor times in days since ``ke.origin``; a label reads ``(anchor, anchor + horizon]``.
    horizon
        Label window in days.

    Returns
    -------
    dict
        ``anchor`` (index into ``anchors``), ``user``, ``key``, ``interest`` (S) and
        ``label`` (bool), one entry per pair and anchor.
    """
    codes, pairs = pair_codes(ke.user, ke.key, max(len(ke.keys), 1))
    n = len(pairs)
    rate = ke.decay_rate()
    parts: list[tuple[np.ndarray, ...]] = []
    for j, a in enumerate(np.asarray(anchors, dtype=np.float64)):  # a few anchors, each vectorised
        before = ke.time <= a
        s = np.bincount(codes[before], ke.weight[before] * np.exp(rate[before] * (a - ke.time[before])), minlength=n)
        within = (ke.time > a) & (ke.time <= a + horizon)
        hit = np.bincount(codes[within], minlength=n) > 0
        live = np.flatnonzero(s > 0)
        parts.append((np.full(live.size, j, dtype=np.int32), live, s[live], hit[live]))
    anchor, pair, s, label = (np.concatenate(p) for p in zip(*parts))
    users, keys = pairs.decode(pair)
    return {"anchor": anchor, "user": users, "key": keys, "interest": s, "label": label}


# -- isotonic regression -------------------------------------------------------------------
def pav(sums: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool adjacent violators: the increasing isotonic fit of atoms in order.

    Parameters
    ----------
    sums, weights
        Per atom, the weighted sum of responses and the (positive) total weight.

    Returns
    -------
    (starts, values)
        The first atom of each fitted block and its value (strictly increasing).

    Notes
    -----
    Adjacent atoms with ``mean[i] >= mean[i + 1]`` share a value in the solution, and
    pooling in any order reaches it (Barlow et al. 1972), so each vectorised pass pools
    every such chain at once. Passes stop paying off when few blocks merge per pass (a
    long staircase of violators); the rest goes to the classic stack, now on few blocks.
    """
    s = np.asarray(sums, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    start = np.arange(s.size)
    while s.size > 1:
        m = s / w
        joined = m[:-1] >= m[1:]
        if not joined.any():
            break
        head = np.flatnonzero(np.r_[True, ~joined])
        shrunk = head.size < 0.9 * s.size
        s, w, start = np.add.reduceat(s, head), np.add.reduceat(w, head), start[head]
        if not shrunk or s.size < _STACK_BELOW:
            keep, s, w = _pav_stack(s.tolist(), w.tolist())
            start = start[keep]
            break
    return start, s / w


def _pav_stack(s: list[float], w: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scalar PAV over blocks; returns kept block indices and their sums and weights."""
    ss: list[float] = []
    ws: list[float] = []
    first: list[int] = []
    for i, (si, wi) in enumerate(zip(s, w)):
        fi = i
        while ss and ss[-1] * wi >= si * ws[-1]:  # mean of the top >= this mean
            si += ss.pop()
            wi += ws.pop()
            fi = first.pop()
        ss.append(si)
        ws.append(wi)
        first.append(fi)
    return np.array(first, dtype=np.int64), np.array(ss), np.array(ws)


def isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Increasing isotonic regression of ``y`` on ``x``, as interpolation breakpoints.

    Returns
    -------
    (thresholds, values)
        Strictly increasing ``x`` breakpoints (each fitted block's first and last ``x``)
        and the non-decreasing fitted values there; interpolate linearly between them.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"x and y must be 1-d, non-empty and of equal length, got {x.shape} and {y.shape}")
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    tie_head = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # equal x must get one value
    ux = xs[tie_head]
    start, value = pav(np.add.reduceat(ys, tie_head), np.diff(np.r_[tie_head, xs.size]).astype(np.float64))
    last = np.r_[start[1:], ux.size] - 1
    thresholds = np.column_stack([ux[start], ux[last]]).ravel()
    values = np.repeat(value, 2)
    single = np.repeat(start == last, 2)
    single[::2] = False  # keep one point of one-atom blocks
    return thresholds[~single], values[~single]


def _fade_level(thresholds: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """The ``S`` where the interpolated map first reaches ``threshold`` (0: always above; inf: never)."""
    if values[0] >= threshold:
        return 0.0
    if values[-1] < threshold:
        return math.inf
    j = int(np.argmax(values >= threshold))
    x0, x1, p0, p1 = thresholds[j - 1], thresholds[j], values[j - 1], values[j]
    return float(x0 + (threshold - p0) * (x1 - x0) / (p1 - p0))


# -- the model ---------------------------------------------------------------------------
class StrengthModel:
    """Calibrated strength: ``P(user engages with key within horizon_days | S)``.

    Parameters
    ----------
    horizon_days
        The engagement window after each anchor (and the spacing of anchors).
    n_anchors
        Anchors at ``now - horizon * j`` for ``j = 1 .. n_anchors``; the most recent one
        is held out to measure calibration, the others are fitted.
    faded_threshold
        Strength below which an interest counts as faded.
    level
        ``"category"`` or ``"item"``: which keys the training pairs use.

    Attributes
    ----------
    thresholds_, probabilities_
        The monotone map as breakpoints (``predict`` interpolates linearly, clipping outside).
    fade_level_
        ``S*`` with ``predict(S*) == faded_threshold`` (0 if never faded, inf if always).
    reliability_, brier_, brier_base_rate_
        Held-out reliability table, Brier score, and the Brier score of always predicting
        the training base rate, on the most recent anchor.
    """

    def __init__(
        self,
        horizon_days: float = 7.0,
        n_anchors: int = 4,
        faded_threshold: float = 0.05,
        level: Level = "category",
    ):
        self.horizon_days = horizon_days
        self.n_anchors = n_anchors
        self.faded_threshold = faded_threshold
        self.level = level

    def __repr__(self) -> str:
        return (
            f"StrengthModel(horizon_days={self.horizon_days}, n_anchors={self.n_anchors}, "
            f"faded_threshold={self.faded_threshold}, level={self.level!r})"
        )

    def _check_params(self) -> None:
        if not (isinstance(self.horizon_days, (int, float)) and 0 < self.horizon_days < math.inf):
            raise InputError(f"horizon_days={self.horizon_days!r} must be a positive number of days", "e.g. 7")
        if not isinstance(self.n_anchors, int) or self.n_anchors < 2:
            raise InputError(f"n_anchors={self.n_anchors!r} must be an integer >= 2", "one is held out; e.g. 4")
        if not 0 < self.faded_threshold < 1:
            raise InputError(f"faded_threshold={self.faded_threshold!r} must lie in (0, 1)", "e.g. 0.05")
        _check_level(self.level)

    # -- fitting ---------------------------------------------------------------------
    def anchors(self, now: datetime) -> list[datetime]:
        """The anchor times for ``now``, most recent (the held-out one) first."""
        now = as_utc(now)
        return [now - timedelta(days=self.horizon_days * j) for j in range(1, self.n_anchors + 1)]

    def training_pairs(self, events: pa.Table, decay: DecayModel, now: datetime) -> pa.Table:
        """The (anchor, user, key, S, label) rows :meth:`fit` learns from, for inspection."""
        self._check_params()
        ke = keyed_events(events, decay, self.level, now)
        p = anchor_pairs(ke, -self.horizon_days * np.arange(1, self.n_anchors + 1), self.horizon_days)
        times = pa.array(self.anchors(now), pa.timestamp("us", tz="UTC"))
        return pa.table(
            {
                "anchor": times.take(pa.array(p["anchor"])),
                schema.USER: ke.users.decode(p["user"]),
                self.level + "_id": ke.keys.decode(p["key"]),
                "interest": p["interest"],
                "label": p["label"],
            }
        )

    def fit(self, events: pa.Table, decay: DecayModel, now: datetime) -> StrengthModel:
        """Learn the map from ``S`` to strength from ``events`` at or before ``now``.

        Parameters
        ----------
        events
            Canonical events (as :meth:`decayrec.store.EventStore.scan` returns them).
        decay
            The fitted decay: event weights and per-category half-lives.
        now
            The fitting time; events after it are ignored, every label ends by it.
        """
        self._check_params()
        now = as_utc(now)
        ke = keyed_events(events, decay, self.level, now)
        p = anchor_pairs(ke, -self.horizon_days * np.arange(1, self.n_anchors + 1), self.horizon_days)
        train, held = p["anchor"] > 0, p["anchor"] == 0
        s, y = p["interest"], p["label"]
        if not y[train].any():
            raise InputError(
                f"no {self.level} was engaged again within {self.horizon_days} days of any of "
                f"{self.n_anchors - 1} training anchors before {iso(now)} ({int(train.sum())} pairs)",
                "give a longer log, a later now, or a longer horizon_days",
            )
        self.fit_pairs(s[train], y[train])
        self.base_rate_ = float(y[train].mean())
        self.n_pairs_ = int(train.sum())
        self.n_holdout_ = int(held.sum())
        self.reliability_ = self.reliability_table(s[held], y[held])
        self.brier_ = self.brier_score(s[held], y[held])
        self.brier_base_rate_ = float(np.mean((self.base_rate_ - y[held]) ** 2)) if held.any() else math.nan
        self.anchors_ = [iso(a) for a in self.anchors(now)]
        self.fitted_at_ = iso(now)
        return self

    def fit_pairs(self, interest: np.ndarray, labels: np.ndarray) -> StrengthModel:
        """Fit the monotone map on given ``(S, label)`` pairs (what :meth:`fit` does after building them)."""
        self.thresholds_, self.probabilities_ = isotonic_fit(interest, np.asarray(labels, dtype=np.float64))
        self.fade_level_ = _fade_level(self.thresholds_, self.probabilities_, self.faded_threshold)
        return self

    # -- using -------------------------------------------------------------------------
    def _fitted(self) -> None:
        if not hasattr(self, "thresholds_"):
            raise InputError("this StrengthModel is not fitted", "call fit(events, decay, now) or load one with from_json_dict")

    def predict(self, interest: np.ndarray) -> np.ndarray:
        """Strength in [0, 1] of each ``S`` (linear between breakpoints, clipped outside)."""
        self._fitted()
        # numpy types np.interp of an array as Any
        return cast(np.ndarray, np.interp(np.asarray(interest, dtype=np.float64), self.thresholds_, self.probabilities_))

    def faded(self, strength: np.ndarray) -> np.ndarray:
        """Whether each strength is below ``faded_threshold``."""
        return np.asarray(strength) < self.faded_threshold

    def time_to_fade(self, interest: np.ndarray, half_life: np.ndarray) -> np.ndarray:
        """Days until each ``S``, decaying with half-life ``h`` and no new event, fades.

        ``h * log2(S / S*)`` with ``S*`` = :attr:`fade_level_`; 0 when already faded,
        inf when the map never drops below the threshold. Broadcasts.
        """
        self._fitted()
        s = np.asarray(interest, dtype=np.float64)
        h = np.asarray(half_life, dtype=np.float64)
        shape = np.broadcast_shapes(s.shape, h.shape)
        if self.fade_level_ == 0.0:
            return np.full(shape, math.inf)
        if self.fade_level_ == math.inf:
            return np.zeros(shape)
        return time_to_fade(s, h, self.fade_level_)

    def reliability_table(self, interest: np.ndarray, labels: np.ndarray, bins: int = 10) -> pa.Table:
        """Mean predicted strength against the observed rate, in equal-width bins of strength.

        Returns
        -------
        pyarrow.Table
            ``bin, low, high, mean_predicted, observed_rate, count``; empty bins are left out.
        """
        p = self.predict(interest)
        y = np.asarray(labels, dtype=np.float64)
        b = np.minimum((p * bins).astype(np.int64), bins - 1)
        count = np.bincount(b, minlength=bins)
        hit = np.flatnonzero(count)
        with np.errstate(invalid="ignore"):
            pred = np.bincount(b, p, minlength=bins)[hit] / count[hit]
            obs = np.bincount(b, y, minlength=bins)[hit] / count[hit]
        return pa.table(
            {
                "bin": pa.array(hit, pa.int32()),
                "low": hit / bins,
                "high": (hit + 1) / bins,
                "mean_predicted": pred,
                "observed_rate": obs,
                "count": pa.array(count[hit], pa.int64()),
            }
        )

    def brier_score(self, interest: np.ndarray, labels: np.ndarray) -> float:
        """Mean squared error of strength against 0/1 labels (nan when there are none)."""
        y = np.asarray(labels, dtype=np.float64)
        return float(np.mean((self.predict(interest) - y) ** 2)) if y.size else math.nan

    # -- persistence -----------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        """Parameters and the fitted map as plain JSON (no pickle; no NaN or inf)."""
        self._fitted()
        doc: dict[str, Any] = {
            "format": _FORMAT,
            "version": _VERSION,
            "params": {
                "horizon_days": self.horizon_days,
                "n_anchors": self.n_anchors,
                "faded_threshold": self.faded_threshold,
                "level": self.level,
            },
            "thresholds": self.thresholds_.tolist(),
            "probabilities": self.probabilities_.tolist(),
        }
        if hasattr(self, "fitted_at_"):
            doc["fit"] = {
                "fitted_at": self.fitted_at_,
                "anchors": self.anchors_,
                "n_pairs": self.n_pairs_,
                "n_holdout": self.n_holdout_,
                "base_rate": self.base_rate_,
                "brier": _finite(self.brier_),
                "brier_base_rate": _finite(self.brier_base_rate_),
                "reliability": self.reliability_.to_pylist(),
            }
        return doc

    @classmethod
    def from_json_dict(cls, doc: dict[str, Any]) -> StrengthModel:
        """Read what :meth:`to_json_dict` wrote."""
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise InputError("not a decayrec strength model document", "give the JSON written by StrengthModel.to_json_dict")
        if doc.get("version") != _VERSION:
            raise InputError(f"strength model version {doc.get('version')} is not readable", f"this release reads {_VERSION}")
        try:
            model = cls(**doc["params"])
            model._check_params()
            model.thresholds_ = np.asarray(doc["thresholds"], dtype=np.float64)
            model.probabilities_ = np.asarray(doc["probabilities"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"a malformed strength model document ({exc})", "write it again with to_json_dict") from None
        if model.thresholds_.size == 0 or model.thresholds_.shape != model.probabilities_.shape:
            raise InputError("a strength model document needs thresholds and probabilities of one length", "refit it")
        model.fade_level_ = _fade_level(model.thresholds_, model.probabilities_, model.faded_threshold)
        fit = doc.get("fit")
        if fit:
            parse_time(fit["fitted_at"], option="fitted_at")  # a malformed time fails here, not later
            model.fitted_at_ = fit["fitted_at"]
            model.anchors_ = list(fit["anchors"])
            model.n_pairs_, model.n_holdout_ = int(fit["n_pairs"]), int(fit["n_holdout"])
            model.base_rate_ = float(fit["base_rate"])
            model.brier_ = _nan(fit["brier"])
            model.brier_base_rate_ = _nan(fit["brier_base_rate"])
            model.reliability_ = _reliability_from_rows(fit["reliability"])
        return model


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _reliability_from_rows(rows: list[dict[str, Any]]) -> pa.Table:
    names = ("bin", "low", "high", "mean_predicted", "observed_rate", "count")
    types = (pa.int32(), pa.float64(), pa.float64(), pa.float64(), pa.float64(), pa.int64())
    return pa.table({n: pa.array([r[n] for r in rows], t) for n, t in zip(names, types)})
