"""Leak-free evaluation: time splits, metrics with confidence intervals, the benchmark runner."""

from decayrec.evaluate.metrics import (
    METRICS,
    VARIANTS,
    MetricSummary,
    Scores,
    bootstrap_ci,
    coverage,
    per_user_metrics,
    score,
)
from decayrec.evaluate.runner import ModelResult, Results, evaluate, evaluate_splits
from decayrec.evaluate.splits import TRUTH_SCHEMA, TimeSplit, quantile_split, rolling_splits, time_split, validation_split

__all__ = [
    "METRICS",
    "TRUTH_SCHEMA",
    "VARIANTS",
    "MetricSummary",
    "ModelResult",
    "Results",
    "Scores",
    "TimeSplit",
    "bootstrap_ci",
    "coverage",
    "evaluate",
    "evaluate_splits",
    "per_user_metrics",
    "quantile_split",
    "rolling_splits",
    "score",
    "time_split",
    "validation_split",
]
