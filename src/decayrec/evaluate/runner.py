"""The benchmark runner: fit each model at a cutoff, score its lists, write RESULTS.json.

Models see only ``split.train`` (events at or before the cutoff) and are asked at the
cutoff, for the split's evaluated users; nothing after the cutoff reaches them. The result
object is CONTRACT.md section 3's ``RESULTS.json``: ``protocol`` then ``models``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from rich.table import Table

from decayrec import schema
from decayrec.errors import InputError
from decayrec.evaluate.metrics import METRICS, MetricSummary, Scores, _summarise, score
from decayrec.evaluate.splits import TimeSplit, _naive, _naive_us, time_split
from decayrec.io.outputs import json_safe
from decayrec.recommend.base import Recommender
from decayrec.timeparse import iso

__all__ = ["ModelResult", "Results", "evaluate", "evaluate_splits", "result_entry"]

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
        s = self.scores
        return result_entry(
            self.name, s.summary, s.coverage, self.fit_seconds, self.recommend_seconds, s.users_with_recs, s.coverage_items
        )


def result_entry(
    name: str,
    summary: Mapping[str, MetricSummary],
    coverage: float,
    fit_seconds: float,
    recommend_seconds: float,
    users_with_recs: int,
    coverage_items: int,
) -> dict[str, Any]:
    """One model's object in RESULTS.json: the contract's fields, then CIs and the repeat/new split."""
    main = summary["all"]
    out: dict[str, Any] = {
        "name": name,
        "ndcg": main.mean["ndcg"],
        "recall": main.mean["recall"],
        "hit_rate": main.mean["hit_rate"],
        "mrr": main.mean["mrr"],
        "coverage": coverage,
        "fit_seconds": fit_seconds,
        "recommend_seconds": recommend_seconds,
        "recall_full": main.mean["recall_full"],
        "ci": _ci(main),
        "users_with_recs": users_with_recs,
        "coverage_items": coverage_items,
    }
    for variant in ("repeat", "new"):
        if variant in summary:
            part = summary[variant]
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
        text = json.dumps(json_safe(self.to_dict()), indent=indent) + "\n"
        if path is not None:
            from decayrec.io.outputs import write_text

            write_text(text, path)
        return text

    def table(self) -> Table:
        """A rich table: means with bootstrap intervals, repeat/new NDCG, coverage and timings."""
        k = self.k
        table = Table(
            title=f"cutoff {iso(self.split.cutoff)}, {self.split.horizon_days:g} days, {self.split.n_users} users, k={k}",
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


# ----------------------------------------------------------------------------- many cutoffs


def evaluate_splits(
    models: Mapping[str, Callable[[], Recommender]],
    splits: Sequence[TimeSplit],
    *,
    k: int = 20,
    bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
    progress: ProgressFn | None = None,
    inspect: Callable[[str, Recommender, TimeSplit], None] | None = None,
) -> dict[str, Any]:
    """Fit a fresh model at each cutoff, score each split, pool the evaluated units.

    For logs where one cutoff leaves few users to score (sessions that rarely span a
    given instant): each ``(cutoff, user)`` with truth is one unit; means and bootstrap
    intervals are over the pooled units. Each split is as leak-free as in :func:`evaluate`:
    the model built for a cutoff sees only that split's ``train``.

    Parameters
    ----------
    models
        Name to a factory returning an unfitted model (one per split).
    splits
        The splits, e.g. from :func:`~decayrec.evaluate.splits.rolling_splits`.
    k, bootstrap, seed, level, progress
        As for :func:`evaluate`.
    inspect
        Called as ``inspect(name, fitted_model, split)`` after each split is scored
        (diagnostics such as candidate recall; its return value is ignored).

    Returns
    -------
    dict
        RESULTS.json's shape: ``protocol`` (the cutoffs, the horizon, ``k``, the units
        evaluated) and ``models`` (``name, ndcg, recall, hit_rate, mrr, coverage,
        fit_seconds, recommend_seconds`` and the extras of :meth:`ModelResult.to_dict`);
        coverage is the mean over splits, seconds are sums over splits.
    """
    if not splits:
        raise InputError("no splits to evaluate on", "pass at least one split")
    for split in splits:
        _check_no_leak(split)
    pooled: dict[str, dict[str, list[pa.Table]]] = {name: {} for name in models}
    covers: dict[str, list[float]] = {name: [] for name in models}
    items: dict[str, list[int]] = {name: [] for name in models}
    seconds: dict[str, list[float]] = {name: [0.0, 0.0] for name in models}
    with_recs = dict.fromkeys(models, 0)
    for s, split in enumerate(splits):
        built = {name: make() for name, make in models.items()}
        res = evaluate(built, split=split, k=k, bootstrap=0, seed=seed)
        if inspect is not None:
            for name, model in built.items():
                inspect(name, model, split)
        if progress:
            progress(f"split {s + 1}/{len(splits)} at {iso(split.cutoff)}: {split.n_users} users")
        for m in res.models:
            for variant, table in m.scores.per_user.items():
                unit = pc.binary_join_element_wise(f"{s}|", table[schema.USER].cast(pa.string()), "")
                pooled[m.name].setdefault(variant, []).append(table.set_column(0, schema.USER, unit))
            covers[m.name].append(m.scores.coverage)
            items[m.name].append(m.scores.coverage_items)
            seconds[m.name][0] += m.fit_seconds
            seconds[m.name][1] += m.recommend_seconds
            with_recs[m.name] += m.scores.users_with_recs
    out_models = []
    for name in models:
        summary = {v: _summarise(pa.concat_tables(t), bootstrap, seed, level) for v, t in pooled[name].items()}
        coverage = sum(covers[name]) / len(covers[name])
        fit_s, rec_s = seconds[name]
        out_models.append(result_entry(name, summary, coverage, fit_s, rec_s, with_recs[name], max(items[name])))
    truth = pa.concat_tables([s.truth for s in splits])
    n_truth = truth.num_rows
    protocol = {
        "cutoff": [iso(s.cutoff) for s in splits],
        "horizon": splits[0].horizon_days,
        "horizon_days": splits[0].horizon_days,
        "k": k,
        "users_evaluated": sum(s.n_users for s in splits),
        "splits": len(splits),
        "units": "(cutoff, user) pairs: a user evaluated at two cutoffs counts twice",
        "truth_pairs": n_truth,
        "repeat_share": (pc.sum(truth["repeat"]).as_py() or 0) / n_truth if n_truth else float("nan"),
        "relevant_events": list(splits[0].relevant),
        "bootstrap": bootstrap,
        "ci_level": level,
        "seed": seed,
        "recall_denominator": "min(|truth|, k); recall_full divides by |truth|",
        "users_without_recs": "count as 0 on every metric",
    }
    return cast(dict[str, Any], json_safe({"protocol": protocol, "models": out_models}))  # json_safe keeps a dict a dict
