"""Scores of probability forecasts of a binary outcome: ranking, calibration, decisions.

Conventions: ``y`` is 0/1 and ``p`` the predicted probability that ``y == 1``. For lapse
risk the caller passes ``y = lapsed`` and ``p = 1 - p_active`` so that precision, recall
and PR-AUC describe the users the shop wants to find.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

from decayrec.errors import InputError

__all__ = [
    "average_precision",
    "best_f1_threshold",
    "brier",
    "calibration_table",
    "log_loss",
    "roc_auc",
    "scores",
    "threshold_metrics",
]


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise InputError(f"labels and probabilities differ in length ({y.size} vs {p.size})", "pass one per user")
    if not np.isin(y, (0.0, 1.0)).all():
        raise InputError("labels must be 0 or 1", "binarise the outcome before scoring")
    return y, p


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney; ties count one half); NaN with one class."""
    y, p = _check(y, p)
    n_pos = y.sum()
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """PR-AUC as average precision: sum over thresholds of (recall step) x precision."""
    y, p = _check(y, p)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    last = np.r_[ps[1:] != ps[:-1], True]  # the last row of each tied score
    tp = np.cumsum(ys)[last]
    seen = (np.flatnonzero(last) + 1).astype(np.float64)
    recall = tp / y.sum()
    precision = tp / seen
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    y, p = _check(y, p)
    return float(np.mean((p - y) ** 2))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-12) -> float:
    y, p = _check(y, p)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-count bins of ``p``: mean prediction vs observed rate, per bin."""
    y, p = _check(y, p)
    order = np.argsort(p, kind="stable")
    parts = [part for part in np.array_split(order, min(bins, max(1, p.size))) if part.size]
    rows = [
        {
            "n": int(part.size),
            "p_min": float(p[part].min()),
            "p_max": float(p[part].max()),
            "predicted": float(p[part].mean()),
            "observed": float(y[part].mean()),
        }
        for part in parts
    ]
    return rows


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of the decision ``p >= threshold``."""
    y, p = _check(y, p)
    flag = p >= threshold
    tp = float(np.sum(flag & (y == 1)))
    precision = tp / flag.sum() if flag.any() else float("nan")
    recall = tp / y.sum() if y.sum() else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1, "flagged": int(flag.sum())}


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold on ``p`` with the highest F1 (choose it on validation data, not test)."""
    y, p = _check(y, p)
    if y.sum() == 0:
        return 1.0
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    last = np.r_[ps[1:] != ps[:-1], True]
    tp = np.cumsum(ys)[last]
    flagged = np.flatnonzero(last) + 1.0
    f1 = 2 * tp / (flagged + y.sum())
    return float(ps[last][int(np.argmax(f1))])


def scores(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Every score at once: ROC-AUC, PR-AUC, Brier, log loss, base rate, the decision at ``threshold``."""
    y, p = _check(y, p)
    return {
        "n": int(y.size),
        "positive_rate": float(y.mean()) if y.size else float("nan"),
        "roc_auc": roc_auc(y, p),
        "pr_auc": average_precision(y, p),
        "brier": brier(y, p),
        "log_loss": log_loss(y, p),
        "at_threshold": threshold_metrics(y, p, threshold),
        "calibration": calibration_table(y, p),
    }
