"""Lapse models compared on one time split: fit as of ``cutoff``, score ``(cutoff, cutoff + horizon]``.

Evaluated users are every user with an event at or before the cutoff (the population a
shop would score); the outcome is "lapsed" = no event of any kind in the window. Scores
use ``y = lapsed`` and ``p = 1 - p_active``. Differences to the reference model (the first
one, BG/NBD by default) carry paired bootstrap intervals over users.
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
from decayrec.lapse.metrics import brier, roc_auc, scores
from decayrec.lapse.models import make_lapse_model

__all__ = ["evaluate_lapse", "lapse_labels"]


def lapse_labels(events: pa.Table, users: pa.Array, cutoff: datetime, horizon_days: float) -> np.ndarray:
    """1 where the user has no event in ``(cutoff, cutoff + horizon]``."""
    ts = events.column(schema.TIMESTAMP)
    end = cutoff + timedelta(days=horizon_days)
    lo, hi = (pa.scalar(t if ts.type.tz else t.replace(tzinfo=None), type=ts.type) for t in (cutoff, end))
    inside = pc.and_(pc.greater(ts, lo), pc.less_equal(ts, hi))
    active = pc.unique(events.column(schema.USER).filter(inside))
    return (~pc.is_in(users, value_set=active.cast(users.type)).to_numpy(zero_copy_only=False)).astype(np.int8)


def _paired_ci(y: np.ndarray, p_ref: np.ndarray, p: np.ndarray, metric, rounds: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        i = rng.integers(0, y.size, y.size)
        diffs.append(metric(y[i], p[i]) - metric(y[i], p_ref[i]))
    lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
    return [float(lo), float(hi)]


def evaluate_lapse(
    events: pa.Table,
    cutoff: datetime,
    horizon_days: float = 30.0,
    models: Sequence[str] = ("bgnbd", "decayrec"),
    *,
    threshold: float = 0.5,
    bootstrap: int = 300,
    seed: int = 0,
    make=make_lapse_model,
) -> dict[str, Any]:
    """Fit each model as of ``cutoff`` and score its lapse risk on the following window.

    ``threshold`` is the operating point on P(lapse) for precision / recall / F1 (0.5:
    flag users more likely than not to lapse; the same rule for every model).
    """
    cutoff = as_utc(cutoff)
    if not models:
        raise InputError("no lapse models to evaluate", "pass e.g. models=('bgnbd', 'decayrec')")
    results: list[dict[str, Any]] = []
    ref_p: np.ndarray | None = None
    users: pa.Array | None = None
    y: np.ndarray | None = None
    for name in models:
        model = make(name, horizon_days)
        start = time.perf_counter()
        model.fit(events, cutoff)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        risk = model.predict().sort_by(schema.USER)
        predict_s = time.perf_counter() - start
        ids = risk.column(schema.USER).combine_chunks()
        if users is None:
            users, y = ids, lapse_labels(events, ids, cutoff, horizon_days)
        elif not ids.equals(users):
            raise InputError(f"model {name!r} scored a different set of users", "every model must score all users")
        assert y is not None  # set along with users by the first model
        p_lapse = 1.0 - risk.column("p_active").to_numpy()
        row = {"name": name, "fit_seconds": fit_s, "predict_seconds": predict_s, **scores(y, p_lapse, threshold)}
        if hasattr(model, "threshold_"):
            row["validation_threshold"] = float(model.threshold_)
        if ref_p is None:
            ref_p = p_lapse
        elif bootstrap:
            row["vs_reference"] = {
                "reference": models[0],
                "roc_auc_diff": row["roc_auc"] - results[0]["roc_auc"],
                "roc_auc_diff_ci": _paired_ci(y, ref_p, p_lapse, roc_auc, bootstrap, seed),
                "brier_diff": row["brier"] - results[0]["brier"],
                "brier_diff_ci": _paired_ci(y, ref_p, p_lapse, brier, bootstrap, seed),
            }
        results.append(row)
    return {
        "protocol": {
            "cutoff": cutoff.isoformat(),
            "horizon_days": horizon_days,
            "users": len(users) if users is not None else 0,
            "lapsed_share": float(y.mean()) if y is not None and y.size else float("nan"),
            "outcome": "lapsed = no event of any kind in (cutoff, cutoff + horizon]",
            "threshold": threshold,
        },
        "models": results,
    }
