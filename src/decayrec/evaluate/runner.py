"""The benchmark runner: fit each model at a cutoff, score its lists, write RESULTS.json.

Models see only ``split.train`` (events at or before the cutoff) and are asked at the
cutoff, for the split's evaluated users; nothing after the cutoff reaches them. The result
object is CONTRACT.md section 3's ``RESULTS.json``: ``protocol`` then ``models``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.table import Table

from decayrec import schema
from decayrec.errors import InputError
from decayrec.evaluate.metrics import METRICS, MetricSummary, Scores, score
from decayrec.evaluate.splits import TimeSplit, _naive, _naive_us, time_split
from decayrec.recommend.base import Recommender
from decayrec.timeparse import iso

__all__ = ["ModelResult", "Results", "evaluate"]

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class ModelResult:
    """One model's scores and timings."""

    name: str
    scores: Scores
    fit_seconds: float
    recommend_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The model's object in RESULTS.json (contract fields first, then extras)."""
        main = self.scores.summary["all"]
        out: dict[str, Any] = {
            "name": self.name,
            "ndcg": main.mean["ndcg"],
            "recall": main.mean["recall"],
            "hit_rate": main.mean["hit_rate"],
            "mrr": main.mean["mrr"],
            "coverage": self.scores.coverage,
            "fit_seconds": self.fit_seconds,
            "recommend_seconds": self.recommend_seconds,
            "recall_full": main.mean["recall_full"],
            "ci": _ci(main),
            "users_with_recs": self.scores.users_with_recs,
            "coverage_items": self.scores.coverage_items,
        }
        for variant in ("repeat", "new"):
            if variant in self.scores.summary:
                part = self.scores.summary[variant]
                out[variant] = {"users": part.users, **part.mean, "ci": _ci(part)}
        return out


@dataclass(frozen=True)
class Results:
    """Scores of several models on one split; :meth:`to_json` writes RESULTS.json."""

    split: TimeSplit
    k: int
    bootstrap: int
    seed: int
    level: float
    models: tuple[ModelResult, ...]

    def protocol(self) -> dict[str, Any]:
        """How the numbers were made: the contract's four fields, then the rest."""
        split = self.split
        n_repeat = pc.count_distinct(split.truth.filter(split.truth["repeat"])[schema.USER]).as_py()
        n_new = pc.count_distinct(split.truth.filter(pc.invert(split.truth["repeat"]))[schema.USER]).as_py()
        return {
            "cutoff": iso(split.cutoff),
            "horizon": split.horizon_days,  # CONTRACT.md: the test window's length, in days
            "horizon_days": split.horizon_days,
            "k": self.k,
            "users_evaluated": split.n_users,
            "window_end": iso(split.window_end),
            "users_repeat": n_repeat,
            "users_new": n_new,
            **split.summary(),
            "bootstrap": self.bootstrap,
            "ci_level": self.level,
            "seed": self.seed,
            "recall_denominator": "min(|truth|, k); recall_full divides by |truth|",
            "users_without_recs": "count as 0 on every metric",
        }

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol(), "models": [m.to_dict() for m in self.models]}

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        """RESULTS.json as text (NaN written as null); also written to ``path`` when given."""
        text = json.dumps(_finite(self.to_dict()), indent=indent) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def table(self) -> Table:
        """A rich table: means with bootstrap intervals, repeat/new NDCG, coverage and timings."""
        k = self.k
        table = Table(
            title=f"cutoff {iso(self.split.cutoff)}, {self.split.horizon_days:g} days, "
            f"{self.split.n_users} users, k={k}",
            title_justify="left",
        )
        heads = [f"NDCG@{k}", f"Recall@{k}", f"HitRate@{k}", f"MRR@{k}", "repeat NDCG", "new NDCG", "coverage", "fit s", "rec s"]
        table.add_column("model")
        for head in heads:
            table.add_column(head, justify="right")
        for m in self.models:
            main = m.scores.summary["all"]
            cells = [_cell(main, name) for name in ("ndcg", "recall", "hit_rate", "mrr")]
            parts = [_cell(m.scores.summary[v], "ndcg") if v in m.scores.summary else "-" for v in ("repeat", "new")]
            timing = [f"{m.scores.coverage:.3f}", f"{m.fit_seconds:.2f}", f"{m.recommend_seconds:.2f}"]
            table.add_row(m.name, *cells, *parts, *timing)
        return table


def evaluate(
    models: Mapping[str, Recommender] | Sequence[Recommender],
    events: pa.Table | None = None,
    split: TimeSplit | None = None,
    *,
    k: int = 20,
    bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
    horizon_days: float = 7.0,
    progress: ProgressFn | None = None,
) -> Results:
    """Fit, recommend and score each model on one time split.

    Parameters
    ----------
    models
        Name to model, or a list of models named by their ``name``.
    events
        Canonical events; used only to make the default split (:func:`time_split` with
        ``horizon_days``) when ``split`` is not given.
    split
        The split to score on; its ``train`` is all a model sees.
    k, bootstrap, seed, level
        List length, and the bootstrap intervals (resamples, seed, level) of every mean.
    progress
        Called with a short line before each step.
    """
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}", "pass --k 20 or similar")
    if split is None:
        if events is None:
            raise InputError("nothing to evaluate on", "pass events or a split")
        split = time_split(events, horizon_days=horizon_days)
    _check_no_leak(split)
    named = _named(models)
    catalogue = pc.unique(split.train[schema.ITEM].cast(pa.string()))
    users = split.users.to_pylist()
    results = []
    for name, model in named.items():
        if progress:
            progress(f"{name}: fit on {split.train.num_rows} events")
        start = time.perf_counter()
        model.fit(split.train, split.cutoff)
        fitted = time.perf_counter()
        if progress:
            progress(f"{name}: recommend for {len(users)} users")
        recs = model.recommend(users, k, split.cutoff)
        done = time.perf_counter()
        _check_recs(name, recs)
        scores = score(recs, split.truth, split.users, k, catalogue=catalogue, bootstrap=bootstrap, seed=seed, level=level)
        results.append(ModelResult(name, scores, fitted - start, done - fitted))
    return Results(split, k, bootstrap, seed, level, tuple(results))


# ----------------------------------------------------------------------------- helpers


def _named(models: Mapping[str, Recommender] | Sequence[Recommender]) -> dict[str, Recommender]:
    if isinstance(models, Mapping):
        named = dict(models)
    else:
        named = {}
        for model in models:
            name = getattr(model, "name", type(model).__name__)
            if name in named:
                raise InputError(f"two models are named {name!r}", "pass a dict of distinct names to models")
            named[name] = model
    if not named:
        raise InputError("no models to evaluate", "name at least one model, e.g. --models popularity")
    for name, model in named.items():
        if not (callable(getattr(model, "fit", None)) and callable(getattr(model, "recommend", None))):
            raise TypeError(f"model {name!r} has no fit(events, now) and recommend(users, k, now)")
    return named


def _check_no_leak(split: TimeSplit) -> None:
    """A hand-built split must not hand the future to the models."""
    if split.train.num_rows == 0:
        return
    newest = pc.max(_naive_us(split.train[schema.TIMESTAMP])).as_py()
    if newest > _naive(split.cutoff):
        raise ValueError(f"split.train holds events after the cutoff (up to {newest}); make splits with time_split")


def _check_recs(name: str, recs: pa.Table) -> None:
    missing = {schema.USER, schema.ITEM, "rank"} - set(recs.column_names)
    if missing:
        raise ValueError(f"model {name!r} returned recommendations without {sorted(missing)}")


def _ci(summary: MetricSummary) -> dict[str, list[float]]:
    return {m: list(summary.ci[m]) for m in METRICS if m in summary.ci}


def _cell(summary: MetricSummary, metric: str) -> str:
    mean = summary.mean[metric]
    if metric not in summary.ci:
        return f"{mean:.4f}"
    lo, hi = summary.ci[metric]
    return f"{mean:.4f} [{lo:.4f}, {hi:.4f}]"


def _finite(value: Any) -> Any:
    """NaN and infinities become None: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
