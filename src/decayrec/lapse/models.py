"""Lapse-risk models: one contract, three models.

A lapse model is ``fit(events, now) -> self`` then ``predict(now=None) -> pa.Table`` with
``user_id, p_active, risk_rank, ..., expected_active_days`` for every user with an event at
or before the fit time: ``p_active`` is the probability of at least one event of any kind
in ``(now, now + horizon_days]``, ``risk_rank`` 1 is the user most likely to lapse, and
``expected_active_days`` the expected number of distinct active days in the horizon.

- :class:`LapseModel` (``"decayrec"``): a generative model (BG/NBD by default) carries the
  horizon, LightGBM the ranking. The trees learn a correction to the generative model's
  log-odds (its ``init_score``) from decay features at several scales, recency,
  frequency, tenure, money, gaps, drift and category spread
  (:mod:`decayrec.lapse.features`), on label windows that fit inside the history: as long
  as the asked horizon where the history allows, shorter otherwise. At prediction the
  correction is added to the generative model's log-odds for the asked horizon, so any
  horizon is answered from any history BG/NBD can be fitted on. Early stopping and the
  correction's scale are chosen on the newest window (no trees at all where they do not
  help there), then, where the label window is the horizon, an isotonic calibration.
- :class:`BGNBDLapse` (``"bgnbd"``) and :class:`ParetoNBDLapse` (``"paretonbd"``): the
  BG/NBD (Fader, Hardie and Lee 2005) and Pareto/NBD (Schmittlein, Morrison and Colombo
  1987) models fitted by maximum likelihood on each user's repeat-visit summary.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import minimize
from scipy.special import expit, logit

from decayrec import schema
from decayrec.decay.strength import as_utc, isotonic_fit
from decayrec.errors import InputError, require
from decayrec.lapse.bgnbd import BetaGeoModel
from decayrec.lapse.features import (
    FEATURES,
    SCALE_FEATURES,
    UserLog,
    activity_labels,
    scale_features,
    user_features,
)
from decayrec.lapse.metrics import best_f1_threshold, roc_auc
from decayrec.lapse.paretonbd import ParetoNBDModel
from decayrec.lapse.rfm import rfm_summary
from decayrec.lgbm import eval_args, reproducible

__all__ = ["LAPSE_MODELS", "BGNBDLapse", "LapseConfig", "LapseModel", "ParetoNBDLapse", "make_lapse_model", "risk_table"]


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
    label_days: float | None = Field(
        None, gt=0, description="Label window of the training windows; default the horizon, or half the history if shorter."
    )
    windows: int = Field(4, ge=2, description="Time-shifted training windows; the newest calibrates.")
    window_step_days: float | None = Field(
        None, gt=0, description="Days between windows; default the label window, closer where the history is short."
    )
    offset: Literal["auto", "bgnbd", "paretonbd", "none"] = Field(
        "bgnbd",
        description="Generative model whose log-odds the trees correct (it carries the asked horizon); "
        "auto: BG/NBD or Pareto/NBD, whichever ranks the newest window better (Pareto/NBD fits are slower).",
    )
    calibration: Literal["isotonic", "platt"] = Field(
        "platt",
        description="platt: the stacked logistic regression alone; isotonic: an isotonic map on top of it, "
        "where the label window is the horizon.",
    )
    n_estimators: int = Field(400, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(50, ge=1)
    early_stopping_rounds: int = Field(40, ge=1)
    rehearse: bool = Field(
        True, description="Where the label window is shorter than the horizon, choose the form that carries it by a rehearsal."
    )
    refit: bool = Field(True, description="Refit the trees on every window, the newest included, with the chosen tree count.")
    bgnbd_features: bool = Field(
        True, description="Add the generative model's P(alive), P(active) and expected days as features."
    )
    unit_days: float = Field(7.0, gt=0, description="Time unit of the generative model (CDNOW: weeks).")
    num_threads: int = Field(2, ge=1)
    seed: int = 0


_GENERATIVE_FEATURES = ("gen_p_alive", "gen_p_active", "gen_expected_days")


class LapseModel:
    """Learned lapse risk for any horizon: trees correcting a generative model's log-odds (see the module doc)."""

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

    @property
    def feature_names(self) -> list[str]:
        return list(FEATURES) + list(SCALE_FEATURES) + (list(_GENERATIVE_FEATURES) if self.config.bgnbd_features else [])

    def _plan(self, span: float) -> tuple[float, list[float]]:
        """The label window and the training anchors (days relative to the fit time, newest first).

        The label window is the horizon where the history holds it twice, else half the
        history. Anchors leave each window at least ``min(label, span / 4)`` days of history
        before it and are a label window apart; where not even two fit so, there are two,
        as far apart as the history allows.
        """
        cfg = self.config
        label = cfg.label_days if cfg.label_days is not None else min(cfg.horizon_days, span / 2.0)
        min_history = min(label, span / 4.0)
        room = span - label - min_history
        if room <= 0:
            raise InputError(
                f"the log spans {span:.3g} days, too short for a {label:g}-day label window after "
                f"{min_history:.3g} days of history",
                "leave --label-days out (it then fits the history), or use --model bgnbd",
            )
        # Label windows a window apart, as many as fit (up to cfg.windows); where not even two
        # fit, two windows as far apart as the history allows (they then overlap).
        step = cfg.window_step_days or (label if room >= label else room)
        anchors = [-label - j * step for j in range(cfg.windows)]
        anchors = [a for a in anchors if a >= -span + min_history - 1e-9]
        if len(anchors) < 2:
            raise InputError(
                f"the log spans {span:.3g} days: room for {len(anchors)} training window(s) of {label:g} days, not 2",
                "use a shorter --window-step-days, or --model bgnbd",
            )
        return label, anchors

    def _generative(self, when: datetime, horizon: float) -> np.ndarray | None:
        """``(p_alive, p_active, expected days)`` per user code as of ``when`` over ``horizon`` days; None if unfittable."""
        if self.offset_ == "none":
            return None
        key = (self.offset_, when, horizon)
        if key not in self._generative_cache:
            self._generative_cache[key] = self._fit_generative(when, horizon)
        return self._generative_cache[key]

    def _fit_generative(self, when: datetime, horizon: float) -> np.ndarray | None:
        btyd = make_lapse_model(self.offset_, horizon)
        assert isinstance(btyd, _BuyTillYouDie)
        btyd.unit_days = self.config.unit_days
        try:
            users, arrays = btyd.fit(self.events_, when).arrays()
        except InputError:  # too little history for the generative model at this time
            return None
        out = np.full((len(self.log_.users), 3), np.nan)
        out[self.log_.users.encode(users)] = arrays
        return out

    def _window(
        self, at: float, label: float, horizon: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rows, features, generative log-odds for ``horizon`` (default the label window) and labels as of ``at``."""
        feats = user_features(self.log_, at)
        when = self.fitted_at_ + timedelta(days=at)
        gen = self._generative(when, label)
        gen_h = gen if horizon is None or horizon == label else self._generative(when, horizon)
        x = np.column_stack([feats.values, scale_features(self.log_, feats.users, at, label)])
        if self.config.bgnbd_features:
            x = np.column_stack([x, gen[feats.users] if gen is not None else np.full((feats.users.size, 3), np.nan)])
        offset = self._offset(gen_h, feats.users, horizon or label)
        return feats.users, x, offset, activity_labels(self.log_, feats.users, at, label)

    def _offset(self, gen: np.ndarray | None, users: np.ndarray, horizon: float) -> np.ndarray:
        """The generative model's log-odds of activity; the training windows' base rate where it cannot run."""
        if gen is None:
            rate = 1.0 - (1.0 - self.base_rate_) ** (horizon / self.label_days_)
            p = np.full(users.size, rate)
        else:
            p = gen[users, 1]
        return np.asarray(logit(np.clip(p, 1e-6, 1 - 1e-6)), dtype=np.float64)

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
        self._generative_cache: dict[tuple[str, datetime, float], np.ndarray | None] = {}
        self.fitted_at_ = now
        span = -float(self.log_.time.min())
        if span <= 0:
            raise InputError("every event is at the fit time: no history to learn from", "pass a later --at")
        self.label_days_, anchors = self._plan(span)
        self.base_rate_ = 0.5  # read by _offset only where the generative model fails; set from the labels below
        self.offset_: str = cfg.offset
        self.offset_roc_auc_: dict[str, float] = {}
        if cfg.offset == "auto":
            self.offset_ = self._choose_offset(anchors[0])
        windows = [self._window(a, self.label_days_) for a in anchors]
        y_all = np.concatenate([w[3] for w in windows])
        self.base_rate_ = float(np.clip(y_all.mean(), 1e-4, 1 - 1e-4))
        # Windows where the generative model could not be fitted take the base rate, known only now.
        failed = [j for j, a in enumerate(anchors) if self._generative(now + timedelta(days=a), self.label_days_) is None]
        for j in failed:
            windows[j] = self._window(anchors[j], self.label_days_)
        _, cal_x, cal_off, cal_y = windows[0]
        self.anchors_, self.cal_y_ = anchors, cal_y
        x = np.vstack([w[1] for w in windows[1:]])
        off = np.concatenate([w[2] for w in windows[1:]])
        y = np.concatenate([w[3] for w in windows[1:]])
        for name, labels in (("training", y), ("calibration", cal_y)):
            if labels.size == 0 or labels.min() == labels.max():
                raise InputError(
                    f"the {name} windows hold one outcome only (all users active or all lapsed)",
                    "use a longer history or a different --horizon-days, or use --model bgnbd",
                )
        model = lgb.LGBMClassifier(
            objective="binary",
            n_estimators=cfg.n_estimators,
            learning_rate=cfg.learning_rate,
            num_leaves=cfg.num_leaves,
            min_child_samples=cfg.min_child_samples,
            **reproducible(cfg.seed, cfg.num_threads),
        )
        model.fit(
            x,
            y,
            init_score=off,
            eval_init_score=[cal_off],
            **eval_args(model, cal_x, cal_y),
            callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
        )
        self.model_ = model
        self.linear_ = _fit_linear(x, y)
        f = self._inputs(cal_x)
        trees = int(model.best_iteration_ or cfg.n_estimators)
        # The stack on the newest window: P(active) = sigmoid(a + b * offset + c * trees + d * linear),
        # by logistic regression; c = d = 0 (the generative model alone, recalibrated) is the floor.
        # Which form is kept is decided out of sample: by 2-fold cross-fitting over users where
        # the label window is the horizon, by a rehearsal of the stretch where it is shorter.
        stacked, alone = np.column_stack([cal_off, f]), cal_off[:, None]  # offset, trees, linear RFM
        stack_loss, base_loss = _cross_fit_loss(stacked, cal_y, cfg.seed), _cross_fit_loss(alone, cal_y, cfg.seed)
        self.form_ = "stack" if stack_loss < base_loss else "recalibrated"
        self.rehearsal_: dict[str, Any] | None = None
        if self.label_days_ < cfg.horizon_days and cfg.rehearse:
            self.form_, self.rehearsal_ = self._rehearse(events, now)
        if self.form_ == "stack":
            self.stack_ = _fit_stack(stacked, cal_y)[0]
        elif self.form_ == "recalibrated":
            self.stack_ = _fit_stack(alone, cal_y)[0]
        else:  # "generative": the generative model's own probabilities for the asked horizon
            self.stack_ = np.array([0.0, 1.0, 0.0, 0.0])
        margin = self._margin(cal_off, f)
        self.calibrated_ = cfg.calibration == "isotonic" and self.label_days_ == cfg.horizon_days
        if self.calibrated_:
            self._fit_calibration(expit(margin), cal_y)
        p = self._probability(margin)
        self.threshold_ = best_f1_threshold(1 - cal_y, 1 - p)  # on P(lapse), chosen on the newest window
        if cfg.refit and self.stack_[2] != 0:
            # The newest window is the closest to what is asked: refit on all of them with the
            # tree count and calibration chosen on it out of sample.
            final = lgb.LGBMClassifier(
                objective="binary",
                n_estimators=trees,
                learning_rate=cfg.learning_rate,
                num_leaves=cfg.num_leaves,
                min_child_samples=cfg.min_child_samples,
                **reproducible(cfg.seed, cfg.num_threads),
            )
            final.fit(np.vstack([cal_x, x]), np.concatenate([cal_y, y]), init_score=np.concatenate([cal_off, off]))
            self.model_ = final
            self.linear_ = _fit_linear(np.vstack([cal_x, x]), np.concatenate([cal_y, y]))
        self.training_ = {
            "label_days": self.label_days_,
            "horizon_days": cfg.horizon_days,
            "windows": [str(now + timedelta(days=a)) for a in anchors],
            "rows": int(y.size),
            "active_rate": float(y.mean()),
            "calibration_rows": int(cal_y.size),
            "offset": self.offset_,
            "offset_roc_auc": self.offset_roc_auc_,
            "trees": trees,
            "refit_on_all_windows": bool(cfg.refit and self.stack_[2] != 0),
            "stack": dict(zip(("intercept", "offset", "trees", "linear_rfm"), map(float, self.stack_))),
            "calibration_log_loss": {"generative": base_loss, "learned": min(stack_loss, base_loss)},
            "isotonic": self.calibrated_,
            "form": self.form_,
            "rehearsal": self.rehearsal_,
        }
        return self

    def _rehearse(self, events: pa.Table, now: datetime) -> tuple[str, dict[str, Any]]:
        """Which form carries a short label window to a longer horizon, tried at a smaller scale inside the history.

        The horizon is ``k`` label windows long. The rehearsal asks the same stretch one label
        window earlier: a model fitted at ``now - L`` on label windows of ``L / k`` answers
        for ``(now - L, now]``, which is known. Each form (the generative model alone, the
        generative model recalibrated, the full stack) is scored there by log loss; the
        best one is used for the real question. Where the rehearsal cannot be fitted,
        the generative model alone answers.
        """
        cfg = self.config
        label = self.label_days_
        when = now - timedelta(days=label)
        small = LapseModel(
            cfg.model_copy(
                update={
                    "horizon_days": label,
                    "label_days": label * label / cfg.horizon_days,
                    "rehearse": False,
                    "offset": self.offset_,
                }
            )
        )
        try:
            small.fit(events, when)
        except InputError as exc:
            return "generative", {"skipped": str(exc)}
        at = small.log_.days(when)
        users, x, offset, _ = small._window(at, small.label_days_, label)
        y = activity_labels(self.log_, self.log_.users.encode(small.log_.users.decode(users)), self.log_.days(when), label)
        f = small._inputs(x)
        base = _fit_stack(small._window(small.anchors_[0], small.label_days_)[2][:, None], small.cal_y_)[0]
        forms = {
            "generative": offset,
            "recalibrated": base[0] + base[1] * offset,
            "stack": small._margin(offset, f) if small.form_ == "stack" else base[0] + base[1] * offset,
        }
        losses = {name: float(np.mean(np.logaddexp(0.0, z) - y * z)) for name, z in forms.items()}
        best = min(losses, key=lambda k: losses[k])
        return best, {"fitted_at": str(when), "label_days": small.label_days_, "horizon_days": label, "log_loss": losses}

    def _choose_offset(self, at: float) -> str:
        """BG/NBD or Pareto/NBD: the better ranking (ROC-AUC) of activity in the label window on the newest window.

        Ranking, not log loss, because the stack recalibrates the offset anyway.
        """
        feats = user_features(self.log_, at)
        y = activity_labels(self.log_, feats.users, at, self.label_days_)
        when = self.fitted_at_ + timedelta(days=at)
        for name in ("bgnbd", "paretonbd"):
            self.offset_ = name
            gen = self._generative(when, self.label_days_)
            if gen is not None:
                self.offset_roc_auc_[name] = roc_auc(y, gen[feats.users, 1])
        if not self.offset_roc_auc_:
            return "none"
        return max(self.offset_roc_auc_, key=lambda k: self.offset_roc_auc_[k])

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        """The stack's learned inputs: the trees' log-odds correction (raw score without the offset) and the linear RFM log-odds."""
        trees = np.asarray(self.model_.predict(x, raw_score=True), dtype=np.float64)
        return np.column_stack([trees, _linear_logit(self.linear_, x)])

    def _fit_calibration(self, raw: np.ndarray, y: np.ndarray) -> None:
        self.calibration_ = isotonic_fit(raw, y.astype(np.float64))

    def _margin(self, offset: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        return np.asarray(self.stack_[0] + self.stack_[1] * offset + inputs @ self.stack_[2:], dtype=np.float64)

    def _probability(self, margin: np.ndarray) -> np.ndarray:
        """P(active) from the stacked log-odds, through the isotonic map where one was fitted."""
        raw = expit(margin)
        if not self.calibrated_:
            return raw
        xs, ys = self.calibration_
        # The isotonic map is a step function; a blend of 2e-6 of the raw score keeps the
        # ranking inside each step (ties would throw it away).
        return (1 - 2e-6) * np.clip(np.interp(raw, xs, ys), 0.0, 1.0) + 2e-6 * raw

    def predict(self, now: datetime | None = None) -> pa.Table:
        """Risk of every user with history at the fit time, as of ``now`` (default: the fit time).

        A later ``now`` sees no events after the fit time: it answers "if nobody came back".
        """
        self._fitted()
        now = self.fitted_at_ if now is None else as_utc(now)
        if now < self.fitted_at_:
            raise InputError("predict's time is before the fit time", "refit the model as of the earlier time")
        at = self.log_.days(now)
        horizon = self.config.horizon_days
        users, x, offset, _ = self._window(at, self.label_days_, horizon)
        inputs = self._inputs(x)
        p = self._probability(self._margin(offset, inputs))
        gen = self._generative(now, horizon)
        expected = _expected_days(p, None if gen is None else gen[users])
        feats = user_features(self.log_, at)
        table = feats.table(self.log_)
        extra = {c: table.column(c) for c in ("recency_days", "active_days", "tenure_days", "drift_30d")}
        extra["expected_active_days"] = pa.array(expected)
        return risk_table(self.log_.users.decode(users), p, extra)

    def feature_importance(self) -> dict[str, float]:
        """Total gain per feature, normalised to sum to 1."""
        self._fitted()
        gain = self.model_.booster_.feature_importance(importance_type="gain")
        total = gain.sum() or 1.0
        return {name: float(g / total) for name, g in sorted(zip(self.feature_names, gain), key=lambda t: -t[1])}

    def _fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise InputError("the lapse model is not fitted", "call fit(events, now) first")


def _fit_stack(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Logistic regression of ``y`` on the columns of ``x`` (log-odds) with an intercept: coefficients and mean log loss.

    Returned as ``(intercept, coefficient per column..., 0 padding to 3 columns)``.
    """
    design = np.column_stack([np.ones(len(y)), x])
    yf = y.astype(np.float64)

    def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ w
        loss = float(np.mean(np.logaddexp(0.0, z) - yf * z))
        return loss, design.T @ (expit(z) - yf) / len(y)

    start = np.zeros(design.shape[1])
    start[1] = 1.0  # the offset as it is
    res = minimize(nll, start, jac=True, method="L-BFGS-B")
    w = np.zeros(4)
    w[: res.x.size] = res.x
    return w, float(res.fun)


# The RFM logistic regression's inputs (as in ../shared/bench): log recency, tenure, active days, events, spend.
_RFM = tuple(FEATURES.index(c) for c in ("recency_days", "tenure_days", "active_days", "log_events", "log_spend"))
_RFM_LOG = np.array([True, True, True, False, False])


def _rfm_columns(x: np.ndarray) -> np.ndarray:
    cols = x[:, _RFM].astype(np.float64)
    cols[:, _RFM_LOG] = np.log1p(np.clip(cols[:, _RFM_LOG], 0.0, None))
    return np.nan_to_num(cols)


def _fit_linear(x: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> dict[str, np.ndarray]:
    """A logistic regression on the RFM columns, standardised, lightly L2-penalised: the simplest strong lapse model."""
    cols = _rfm_columns(x)
    mean, sd = cols.mean(axis=0), cols.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = np.column_stack([np.ones(len(y)), (cols - mean) / sd])
    yf = y.astype(np.float64)

    def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
        m = z @ w
        loss = float(np.mean(np.logaddexp(0.0, m) - yf * m)) + l2 * float(w[1:] @ w[1:])
        grad = z.T @ (expit(m) - yf) / len(y)
        grad[1:] += 2 * l2 * w[1:]
        return loss, grad

    w = minimize(nll, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B").x
    return {"mean": mean, "sd": sd, "w": w}


def _linear_logit(linear: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    z = (_rfm_columns(x) - linear["mean"]) / linear["sd"]
    return np.asarray(linear["w"][0] + z @ linear["w"][1:], dtype=np.float64)


def _cross_fit_loss(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """Mean log loss of :func:`_fit_stack` on two halves of the users, each fitted on the other half."""
    half = np.random.default_rng(seed).permutation(len(y)) % 2 == 0
    losses = []
    for train in (half, ~half):
        w = _fit_stack(x[train], y[train])[0][: x.shape[1] + 1]
        z = w[0] + x[~train] @ w[1:]
        losses.append(float(np.sum(np.logaddexp(0.0, z) - y[~train] * z)))
    return sum(losses) / len(y)


def _expected_days(p: np.ndarray, gen: np.ndarray | None) -> np.ndarray:
    """Expected active days in the horizon: P(active) x E[days | active], the latter from the generative model.

    Without one, a Poisson count with P(N > 0) = p: E[N] = -log(1 - p).
    """
    if gen is None:
        return -np.log1p(-np.clip(p, 0.0, 1 - 1e-9))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_active = np.where(gen[:, 1] > 1e-12, gen[:, 2] / gen[:, 1], 1.0)
    return p * np.where(np.isfinite(per_active), np.maximum(per_active, 1.0), 1.0)


class _BuyTillYouDie:
    """A "buy till you die" model on each user's visit summary (distinct active days, in ``unit_days`` periods)."""

    name = ""

    def __init__(self, *, horizon_days: float = 30.0, unit_days: float = 7.0, penalizer: float = 0.0):
        if horizon_days <= 0 or unit_days <= 0:
            raise InputError("horizon_days and unit_days must be positive", "pass e.g. horizon_days=30, unit_days=7")
        self.horizon_days = horizon_days
        self.unit_days = unit_days
        self.penalizer = penalizer

    def __repr__(self) -> str:
        return f"{type(self).__name__}(horizon_days={self.horizon_days:g}, unit_days={self.unit_days:g})"

    def _new_model(self) -> BetaGeoModel | ParetoNBDModel:
        raise NotImplementedError

    def fit(self, events: pa.Table, now: datetime) -> _BuyTillYouDie:
        now = as_utc(now)
        self.rfm_ = rfm_summary(events, now, unit_days=self.unit_days)
        if len(self.rfm_.users) == 0:
            raise InputError("no events at or before the fit time", "pass --at after the first event")
        self.model_ = self._new_model().fit(self.rfm_.frequency, self.rfm_.recency, self.rfm_.T)
        self.fitted_at_ = now
        return self

    def arrays(self, now: datetime | None = None) -> tuple[pa.Array, np.ndarray]:
        """Users and ``(p_alive, p_active, expected active days)`` per user as of ``now`` (default the fit time)."""
        if not hasattr(self, "model_"):
            raise InputError("the lapse model is not fitted", "call fit(events, now) first")
        now = self.fitted_at_ if now is None else as_utc(now)
        if now < self.fitted_at_:
            raise InputError("predict's time is before the fit time", "refit the model as of the earlier time")
        r = self.rfm_
        t = r.T + (now - self.fitted_at_).total_seconds() / 86400.0 / self.unit_days
        h = self.horizon_days / self.unit_days
        cols = (
            self.model_.p_alive(r.frequency, r.recency, t),
            self.model_.p_active(h, r.frequency, r.recency, t),
            self.model_.expected_purchases(h, r.frequency, r.recency, t),
        )
        return r.users, np.column_stack([np.asarray(c, dtype=np.float64) for c in cols])

    def predict(self, now: datetime | None = None) -> pa.Table:
        users, a = self.arrays(now)
        extra = {"p_alive": a[:, 0], "frequency": self.rfm_.frequency, "expected_active_days": a[:, 2]}
        return risk_table(users, a[:, 1], extra)


class BGNBDLapse(_BuyTillYouDie):
    """BG/NBD on each user's visit summary (distinct active days, in ``unit_days`` periods)."""

    name = "bgnbd"

    def _new_model(self) -> BetaGeoModel:
        return BetaGeoModel(penalizer=self.penalizer)


class ParetoNBDLapse(_BuyTillYouDie):
    """Pareto/NBD on each user's visit summary (distinct active days, in ``unit_days`` periods)."""

    name = "paretonbd"

    def _new_model(self) -> ParetoNBDModel:
        return ParetoNBDModel(penalizer=self.penalizer)


LAPSE_MODELS: dict[str, type] = {"decayrec": LapseModel, "bgnbd": BGNBDLapse, "paretonbd": ParetoNBDLapse}


def make_lapse_model(name: str, horizon_days: float = 30.0) -> LapseModel | BGNBDLapse | ParetoNBDLapse:
    """A lapse model by name (``decayrec``, ``bgnbd`` or ``paretonbd``) for the given horizon."""
    if name not in LAPSE_MODELS:
        raise InputError(f"unknown lapse model {name!r}", f"choose one of {', '.join(LAPSE_MODELS)}")
    if name == "bgnbd":
        return BGNBDLapse(horizon_days=horizon_days)
    if name == "paretonbd":
        return ParetoNBDLapse(horizon_days=horizon_days)
    return LapseModel(horizon_days=horizon_days)
