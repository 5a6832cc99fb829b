"""Lapse models compared on one time split: fit as of ``cutoff``, score ``(cutoff, cutoff + horizon]``.

Evaluated users are every user with an event at or before the cutoff (the population a
shop would score); the outcome is "lapsed" = no event of any kind in the window. Scores
use ``y = lapsed`` and ``p = 1 - p_active``: ROC-AUC, PR-AUC, Brier, log loss, a
calibration table, the decision at a threshold, and the mean absolute error of each
model's expected active days in the window against the actual ones. The focus model
(``decayrec`` where it is evaluated) is compared with every other one by paired bootstrap
intervals over users of the differences in ROC-AUC, Brier and log loss.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.decay.strength import as_utc
from decayrec.errors import InputError
from decayrec.lapse.metrics import brier, log_loss, roc_auc, scores
from decayrec.lapse.models import make_lapse_model

__all__ = ["active_days", "evaluate_lapse", "lapse_labels"]


def lapse_labels(events: pa.Table, users: pa.Array, cutoff: datetime, horizon_days: float) -> np.ndarray:
    """1 where the user has no event in ``(cutoff, cutoff + horizon]``."""
    ts = events.column(schema.TIMESTAMP)
    end = cutoff + timedelta(days=horizon_days)
    lo, hi = (pa.scalar(t if ts.type.tz else t.replace(tzinfo=None), type=ts.type) for t in (cutoff, end))
    inside = pc.and_(pc.greater(ts, lo), pc.less_equal(ts, hi))
    active = pc.unique(events.column(schema.USER).filter(inside))
    return (~pc.is_in(users, value_set=active.cast(users.type)).to_numpy(zero_copy_only=False)).astype(np.int8)


def active_days(events: pa.Table, users: pa.Array, cutoff: datetime, horizon_days: float) -> np.ndarray:
    """Distinct UTC days with an event in ``(cutoff, cutoff + horizon]``, per user (the "transactions" of BG/NBD)."""
    ts = events.column(schema.TIMESTAMP)
    end = cutoff + timedelta(days=horizon_days)
    lo, hi = (pa.scalar(t if ts.type.tz else t.replace(tzinfo=None), type=ts.type) for t in (cutoff, end))
    inside = events.filter(pc.and_(pc.greater(ts, lo), pc.less_equal(ts, hi)))
    day = pc.cast(inside.column(schema.TIMESTAMP), pa.timestamp("us", tz=ts.type.tz), safe=False).cast(pa.int64()).to_numpy()
    day = day // 86_400_000_000
    pairs = (
        pa.table({"u": inside.column(schema.USER).cast(users.type), "d": day}).group_by("u").aggregate([("d", "count_distinct")])
    )
    out = np.zeros(len(users))
    where = pc.index_in(pairs.column("u"), value_set=users).fill_null(-1).to_numpy()
    known = where >= 0  # users active in the window only, with no history, are not scored
    out[where[known]] = pairs.column("d_count_distinct").to_numpy()[known]
    return out


def _paired_ci(y: np.ndarray, p_ref: np.ndarray, p: np.ndarray, metric, rounds: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        i = rng.integers(0, y.size, y.size)
        diffs.append(metric(y[i], p[i]) - metric(y[i], p_ref[i]))
    lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
    return [float(lo), float(hi)]


def _mae(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.mean(np.abs(actual - expected)))


def evaluate_lapse(
    events: pa.Table,
    cutoff: datetime,
    horizon_days: float = 30.0,
    models: Sequence[str] = ("bgnbd", "paretonbd", "decayrec"),
    *,
    threshold: float = 0.5,
    bootstrap: int = 300,
    seed: int = 0,
    focus: str = "decayrec",
    make=make_lapse_model,
) -> dict[str, Any]:
    """Fit each model as of ``cutoff`` and score its lapse risk on the following window.

    ``threshold`` is the operating point on P(lapse) for precision / recall / F1 (0.5:
    flag users more likely than not to lapse; the same rule for every model). ``make``
    builds a model from ``(name, horizon_days)``: a caller can add its own baselines.
    A model that cannot be fitted on this split is reported with its one-line reason.
    """
    cutoff = as_utc(cutoff)
    if not models:
        raise InputError("no lapse models to evaluate", "pass e.g. models=('bgnbd', 'decayrec')")
    results: list[dict[str, Any]] = []
    p_by: dict[str, np.ndarray] = {}
    users: pa.Array | None = None
    y: np.ndarray | None = None
    actual: np.ndarray | None = None
    for name in models:
        model = make(name, horizon_days)
        start = time.perf_counter()
        try:
            model.fit(events, cutoff)
        except InputError as exc:
            results.append({"name": name, "error": str(exc)})
            continue
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        risk = model.predict().sort_by(schema.USER)
        predict_s = time.perf_counter() - start
        ids = risk.column(schema.USER).combine_chunks()
        if users is None:
            users, y = ids, lapse_labels(events, ids, cutoff, horizon_days)
            actual = active_days(events, ids, cutoff, horizon_days)
        elif not ids.equals(users):
            raise InputError(f"model {name!r} scored a different set of users", "every model must score all users")
        assert y is not None and actual is not None  # set along with users by the first model
        p_lapse = 1.0 - risk.column("p_active").to_numpy()
        row = {"name": name, "fit_seconds": fit_s, "predict_seconds": predict_s, **scores(y, p_lapse, threshold)}
        if "expected_active_days" in risk.column_names:
            row["active_days_mae"] = _mae(actual, risk.column("expected_active_days").to_numpy())
        if hasattr(model, "threshold_"):
            row["validation_threshold"] = float(model.threshold_)
        if hasattr(model, "training_"):
            row["training"] = model.training_
        p_by[name] = p_lapse
        results.append(row)
    if focus not in p_by and p_by:
        focus = list(p_by)[-1]
    comparisons = []
    if bootstrap and y is not None:
        for name, p in p_by.items():
            if name == focus:
                continue
            comparison: dict[str, Any] = {"model": focus, "baseline": name}
            for metric_name, metric in (("roc_auc", roc_auc), ("brier", brier), ("log_loss", log_loss)):
                comparison[f"{metric_name}_diff"] = metric(y, p_by[focus]) - metric(y, p)
                comparison[f"{metric_name}_diff_ci"] = _paired_ci(y, p, p_by[focus], metric, bootstrap, seed)
            comparisons.append(comparison)
    return {
        "protocol": {
            "cutoff": cutoff.isoformat(),
            "horizon_days": horizon_days,
            "users": len(users) if users is not None else 0,
            "lapsed_share": float(y.mean()) if y is not None and y.size else float("nan"),
            "actual_active_days": float(actual.sum()) if actual is not None else float("nan"),
            "outcome": "lapsed = no event of any kind in (cutoff, cutoff + horizon]",
            "threshold": threshold,
        },
        "models": results,
        "comparisons": comparisons,
    }
