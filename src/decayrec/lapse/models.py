"""Lapse-risk models: one contract, two models.

A lapse model is ``fit(events, now) -> self`` then ``predict(now=None) -> pa.Table`` with
``user_id, p_active, risk_rank`` for every user with an event at or before the fit time:
``p_active`` is the probability of at least one event of any kind in
``(now, now + horizon_days]`` and ``risk_rank`` 1 is the user most likely to lapse.

- :class:`LapseModel` (``"decayrec"``): LightGBM over decay features at several scales,
  recency, frequency, tenure, money, gaps, drift and category spread
  (:mod:`decayrec.lapse.features`), trained on time-shifted windows that all end at or
  before ``now``, class imbalance weighted explicitly, then calibrated on the most recent
  window (isotonic or Platt).
- :class:`BGNBDLapse` (``"bgnbd"``): the BG/NBD model (Fader, Hardie and Lee 2005) fitted
  by maximum likelihood on each user's repeat-visit summary; the classic baseline.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import minimize
from scipy.special import expit

from decayrec import schema
from decayrec.decay.strength import as_utc, isotonic_fit
from decayrec.errors import InputError, require
from decayrec.lapse.bgnbd import BetaGeoModel
from decayrec.lapse.features import (
    FEATURES,
    UserFeatures,
    UserLog,
    activity_labels,
    user_features,
)
from decayrec.lapse.metrics import best_f1_threshold
from decayrec.lapse.rfm import rfm_summary
from decayrec.lgbm import eval_args, reproducible

__all__ = ["LAPSE_MODELS", "BGNBDLapse", "LapseConfig", "LapseModel", "make_lapse_model", "risk_table"]


def risk_table(users: pa.Array, p_active: np.ndarray, extra: dict[str, Any] | None = None) -> pa.Table:
    """``user_id, p_active, risk_rank`` (+ extra columns), ranked most-likely-to-lapse first.

    Ties in ``p_active`` are broken by user id so the ranking is reproducible.
    """
    users = pa.array(users).cast(pa.string())
    p_active = np.asarray(p_active, dtype=np.float64)
    order = pc.sort_indices(pa.table({"p": p_active, "u": users}), sort_keys=[("p", "ascending"), ("u", "ascending")])
    rank = np.empty(len(users), dtype=np.int64)
    rank[order.to_numpy()] = np.arange(1, len(users) + 1)
    cols: dict[str, Any] = {schema.USER: users, "p_active": p_active, "risk_rank": rank}
    cols.update(extra or {})
    return pa.table(cols).take(order)


def _past(events: pa.Table, now: datetime) -> pa.Table:
    ts = events.column(schema.TIMESTAMP)
    bound = pa.scalar(now.replace(tzinfo=None) if ts.type.tz is None else now, type=ts.type)
    return events.filter(pc.less_equal(ts, bound))


class LapseConfig(BaseModel):
    """Settings of the learned lapse model."""

    model_config = ConfigDict(extra="forbid")

    horizon_days: float = Field(30.0, gt=0, description="P(active) is over (now, now + horizon].")
    windows: int = Field(4, ge=2, description="Time-shifted training windows; the newest calibrates.")
    window_step_days: float | None = Field(None, gt=0, description="Days between windows; default the horizon.")
    calibration: Literal["isotonic", "platt"] = "isotonic"
    balance_classes: bool = Field(True, description="Weigh the rarer class up by n_major / n_minor before calibrating.")
    n_estimators: int = Field(400, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(50, ge=1)
    early_stopping_rounds: int = Field(40, ge=1)
    bgnbd_features: bool = Field(True, description="Add BG/NBD's P(alive) and P(active), fitted as of each window, as features.")
    unit_days: float = Field(7.0, gt=0, description="Time unit of the BG/NBD features (CDNOW: weeks).")
    num_threads: int = Field(2, ge=1)
    seed: int = 0


class LapseModel:
    """Learned lapse risk: LightGBM over decay features, calibrated (see the module doc)."""

    name = "decayrec"

    def __init__(self, config: LapseConfig | None = None, **overrides: Any):
        base = config or LapseConfig()
        self.config = base.model_copy(update=overrides) if overrides else base
        if overrides:
            LapseConfig.model_validate(self.config.model_dump())

    def __repr__(self) -> str:
        return f"LapseModel(horizon_days={self.config.horizon_days:g}, windows={self.config.windows})"

    @property
    def horizon_days(self) -> float:
        return self.config.horizon_days

    def _anchors(self, now_d: float) -> list[float]:
        step = self.config.window_step_days or self.config.horizon_days
        return [now_d - self.config.horizon_days - j * step for j in range(self.config.windows)]

    @property
    def feature_names(self) -> list[str]:
        return list(FEATURES) + (["bgnbd_p_alive", "bgnbd_p_active"] if self.config.bgnbd_features else [])

    def _features(self, at: float) -> tuple[UserFeatures, np.ndarray]:
        """Feature rows as of ``at`` (days since the fit time), BG/NBD's columns appended."""
        feats = user_features(self.log_, at)
        if not self.config.bgnbd_features:
            return feats, feats.values
        when = self.fitted_at_ + timedelta(days=at)
        baseline = BGNBDLapse(horizon_days=self.config.horizon_days, unit_days=self.config.unit_days)
        try:
            risk = baseline.fit(self.events_, when).predict()
        except InputError:  # too little history for BG/NBD at an early window: leave the columns empty
            return feats, np.column_stack([feats.values, np.full((feats.users.size, 2), np.nan)])
        risk = risk.sort_by(schema.USER)
        order = self.log_.users.encode(risk.column(schema.USER))
        extra = np.full((len(self.log_.users), 2), np.nan)
        extra[order, 0] = risk.column("p_alive").to_numpy()
        extra[order, 1] = risk.column("p_active").to_numpy()
        return feats, np.column_stack([feats.values, extra[feats.users]])

    def _window(self, at: float) -> tuple[np.ndarray, np.ndarray]:
        feats, x = self._features(at)
        return x, activity_labels(self.log_, feats.users, at, self.config.horizon_days)

    def fit(self, events: pa.Table, now: datetime) -> LapseModel:
        """Train on windows ending at or before ``now``; nothing after ``now`` is read."""
        lgb = require("lightgbm", "lapse")
        cfg = self.config
        now = as_utc(now)
        past = _past(events, now)
        if past.num_rows == 0:
            raise InputError("no events at or before the fit time", "pass --at after the first event")
        self.log_ = UserLog.from_events(past, now)
        self.events_ = past
        self.fitted_at_ = now
        first = float(self.log_.time.min())
        anchors = [a for a in self._anchors(0.0) if a > first]
        if len(anchors) < 2:
            raise InputError(
                f"the log spans {max(-first, 0.0):.1f} days, too short for {cfg.windows} windows of {cfg.horizon_days:g} days "
                "before the fit time",
                "shorten --horizon-days, or use --model bgnbd",
            )
        cal_x, cal_y = self._window(anchors[0])
        parts = [self._window(a) for a in anchors[1:]]
        x = np.vstack([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        for name, labels in (("training", y), ("calibration", cal_y)):
            if labels.size == 0 or labels.min() == labels.max():
                raise InputError(
                    f"the {name} windows hold one outcome only (all users active or all lapsed)",
                    "use a longer history or a different --horizon-days, or use --model bgnbd",
                )
        n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
        self.class_weight_ = (n_neg / n_pos) if cfg.balance_classes else 1.0
        model = lgb.LGBMClassifier(
            objective="binary",
            n_estimators=cfg.n_estimators,
            learning_rate=cfg.learning_rate,
            num_leaves=cfg.num_leaves,
            min_child_samples=cfg.min_child_samples,
            scale_pos_weight=self.class_weight_,
            **reproducible(cfg.seed, cfg.num_threads),
        )
        model.fit(
            x, y, **eval_args(model, cal_x, cal_y), callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)]
        )
        self.model_ = model
        raw = model.predict_proba(cal_x)[:, 1]
        self._fit_calibration(raw, cal_y)
        p = self._calibrate(raw)
        self.threshold_ = best_f1_threshold(1 - cal_y, 1 - p)  # on P(lapse), chosen on the newest window
        self.training_ = {
            "windows": [str(now + timedelta(days=a)) for a in anchors],
            "rows": int(y.size),
            "active_rate": float(y.mean()),
            "calibration_rows": int(cal_y.size),
            "class_weight": self.class_weight_,
            "trees": int(model.best_iteration_ or cfg.n_estimators),
        }
        return self

    def _fit_calibration(self, raw: np.ndarray, y: np.ndarray) -> None:
        if self.config.calibration == "isotonic":
            self.calibration_ = ("isotonic", *isotonic_fit(raw, y.astype(np.float64)))
            return
        z = np.log(np.clip(raw, 1e-9, 1 - 1e-9) / np.clip(1 - raw, 1e-9, 1))

        def nll(ab: np.ndarray) -> float:
            q = np.clip(expit(ab[0] * z + ab[1]), 1e-12, 1 - 1e-12)
            return float(-np.sum(y * np.log(q) + (1 - y) * np.log1p(-q)))

        res = minimize(nll, np.array([1.0, 0.0]), method="L-BFGS-B")
        self.calibration_ = ("platt", res.x[0], res.x[1])

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        kind, a, b = self.calibration_
        if kind == "isotonic":
            # The isotonic map is a step function; a blend of 2e-6 of the raw score
            # keeps the trees' ranking inside each step (ties would throw it away).
            return (1 - 2e-6) * np.clip(np.interp(raw, a, b), 0.0, 1.0) + 2e-6 * raw
        z = np.log(np.clip(raw, 1e-9, 1 - 1e-9) / np.clip(1 - raw, 1e-9, 1))
        return expit(a * z + b)

    def predict(self, now: datetime | None = None) -> pa.Table:
        """Risk of every user with history at the fit time, as of ``now`` (default: the fit time).

        A later ``now`` sees no events after the fit time: it answers "if nobody came back".
        """
        self._fitted()
        now = self.fitted_at_ if now is None else as_utc(now)
        if now < self.fitted_at_:
            raise InputError("predict's time is before the fit time", "refit the model as of the earlier time")
        feats, x = self._features(self.log_.days(now))
        p = self._calibrate(self.model_.predict_proba(x)[:, 1])
        table = feats.table(self.log_)
        extra = {c: table.column(c) for c in ("recency_days", "active_days", "tenure_days", "drift_30d")}
        return risk_table(self.log_.users.decode(feats.users), p, extra)

    def feature_importance(self) -> dict[str, float]:
        """Total gain per feature, normalised to sum to 1."""
        self._fitted()
        gain = self.model_.booster_.feature_importance(importance_type="gain")
        total = gain.sum() or 1.0
        return {name: float(g / total) for name, g in sorted(zip(self.feature_names, gain), key=lambda t: -t[1])}

    def _fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise InputError("the lapse model is not fitted", "call fit(events, now) first")


class BGNBDLapse:
    """BG/NBD on each user's visit summary (distinct active days, in ``unit_days`` periods)."""

    name = "bgnbd"

    def __init__(self, *, horizon_days: float = 30.0, unit_days: float = 7.0, penalizer: float = 0.0):
        if horizon_days <= 0 or unit_days <= 0:
            raise InputError("horizon_days and unit_days must be positive", "pass e.g. horizon_days=30, unit_days=7")
        self.horizon_days = horizon_days
        self.unit_days = unit_days
        self.penalizer = penalizer

    def __repr__(self) -> str:
        return f"BGNBDLapse(horizon_days={self.horizon_days:g}, unit_days={self.unit_days:g})"

    def fit(self, events: pa.Table, now: datetime) -> BGNBDLapse:
        now = as_utc(now)
        self.rfm_ = rfm_summary(events, now, unit_days=self.unit_days)
        if len(self.rfm_.users) == 0:
            raise InputError("no events at or before the fit time", "pass --at after the first event")
        self.model_ = BetaGeoModel(penalizer=self.penalizer).fit(self.rfm_.frequency, self.rfm_.recency, self.rfm_.T)
        self.fitted_at_ = now
        return self

    def predict(self, now: datetime | None = None) -> pa.Table:
        if not hasattr(self, "model_"):
            raise InputError("the lapse model is not fitted", "call fit(events, now) first")
        now = self.fitted_at_ if now is None else as_utc(now)
        if now < self.fitted_at_:
            raise InputError("predict's time is before the fit time", "refit the model as of the earlier time")
        r = self.rfm_
        extra_t = (now - self.fitted_at_).total_seconds() / 86400.0 / self.unit_days
        t = r.T + extra_t
        p = self.model_.p_active(self.horizon_days / self.unit_days, r.frequency, r.recency, t)
        p_alive = self.model_.p_alive(r.frequency, r.recency, t)
        return risk_table(r.users, np.asarray(p, dtype=np.float64), {"p_alive": p_alive, "frequency": r.frequency})


LAPSE_MODELS: dict[str, type] = {"decayrec": LapseModel, "bgnbd": BGNBDLapse}


def make_lapse_model(name: str, horizon_days: float = 30.0) -> LapseModel | BGNBDLapse:
    """A lapse model by name (``decayrec`` or ``bgnbd``) for the given horizon."""
    if name not in LAPSE_MODELS:
        raise InputError(f"unknown lapse model {name!r}", f"choose one of {', '.join(LAPSE_MODELS)}")
    if name == "bgnbd":
        return BGNBDLapse(horizon_days=horizon_days)
    return LapseModel(horizon_days=horizon_days)
