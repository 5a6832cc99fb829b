"""LightGBM glue shared by the ranker and the lapse model (LightGBM itself is an extra)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

__all__ = ["eval_args", "reproducible"]


def eval_args(model: Any, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The held-out set in the keywords of the installed LightGBM: ``eval_X``/``eval_y`` from 4.6, ``eval_set`` before."""
    if "eval_X" in inspect.signature(type(model).fit).parameters:
        return {"eval_X": (x,), "eval_y": (y,)}
    return {"eval_set": [(x, y)]}


def reproducible(seed: int, threads: int) -> dict[str, Any]:
    """Estimator settings that make a fit repeatable run to run: seeded, deterministic, row-wise, quiet."""
    return {"random_state": seed, "n_jobs": threads, "deterministic": True, "force_row_wise": True, "verbose": -1}
