"""Self-configuration of the main recommender by temporal validation inside its training period.

A shop runs ``decayrec recommend`` once, with its defaults; those defaults have to be right
for that shop and not for the logs decayrec was developed on. So :class:`DecayRanker`
chooses its settings the way one would by hand, on the shop's own past, reading nothing
after the fit time ``now``:

1. **The use horizon** ``H`` (``--horizon-days``; by default inferred by
   :func:`infer_horizon` from the typical gap between a user's active days).
2. **Validation cutoffs** ``V_i = now - i * H``: one where the window after it holds enough
   users, more (pooled) where it does not, as on session logs where few users span any one
   instant. Every model tried is fitted on the events up to a cutoff and scored by NDCG@20
   on what the users did in the ``H`` days after it.
3. **Single sources** (repeat, co-visitation, item neighbours, ALS, the sequence model,
   decayed popularity), each over a small grid: they are the floor, and their best settings feed the ranker's
   candidate sources.
4. **The ranker**: a fixed sequence of coordinate steps (stacked label windows, label
   window length, which sources are on, their budget, tree size), each keeping the best
   setting so far. Every trial trains on label windows that end at or before the oldest
   validation cutoff.
5. **The floor**: when no ranker setting beats the best single source on validation, that
   source is served instead, and the card says so.

Everything fitted at one cutoff (feature state, sources, candidate windows) is built once
and shared by the settings tried (:class:`Workspace`). The search is deterministic: a fixed
order of trials, seeded samples, single-threaded LightGBM. ``budget_seconds`` bounds it: a
trial that would start after the budget is skipped, and the card lists it as skipped (then,
and only then, the result depends on the machine's speed).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa

from decayrec.errors import InputError
from decayrec.recommend.candidates import IMPLICIT_SOURCES, MODEL_SOURCES, SOURCES, TORCH_SOURCES, SourceSet, build_source
from decayrec.recommend.features import FeatureState
from decayrec.recommend.interactions import Interactions, interactions
from decayrec.recommend.sequence_source import SequenceSources
from decayrec.recommend.training import (
    Window,
    WindowTruth,
    build_window,
    feature_names,
    fit_lambdarank,
    group_ndcg,
    window_rows,
    window_truth,
)
from decayrec.timeparse import iso

if TYPE_CHECKING:  # pragma: no cover
    from decayrec.recommend.ranker import DecayRanker

__all__ = ["RankerSettings", "SearchResult", "Workspace", "configure", "infer_horizon"]

K_VALIDATION: Final = 20
# A validation cutoff with fewer users than this gets company (earlier cutoffs, pooled).
MIN_VALIDATION_USERS: Final = 300
MAX_VALIDATION_CUTOFFS: Final = 16
# Users scored per validation cutoff, at most (a seeded sample).
MAX_VALIDATION_USERS: Final = 4000
# Users kept per label window (a seeded sample) and LambdaRank groups per search trial.
MAX_WINDOW_USERS: Final = 8000
SEARCH_GROUPS: Final = 4000
# Users per label window of a search that runs on a sample of a large shop.
SEARCH_WINDOW_USERS: Final = 4000
# Label windows stacked for training, at most, and the groups a search aims the first guess at.
MAX_TRAIN_WINDOWS: Final = 32
TARGET_GROUPS: Final = 4000
# Candidates each source proposes, at most: the largest budget tried.
MAX_BUDGET: Final = 80
DEFAULT_BUDGET: Final = 40
# Below this share of repeats in the validation truth, lists leave out the user's own items.
REPEAT_SHARE_TO_KEEP_SEEN: Final = 0.01
# A session log: fewer users than this come back on another day.
SESSION_RETURN_SHARE: Final = 0.05


@dataclass(frozen=True)
class RankerSettings:
    """One complete configuration of the ranker: what the self-configuration chooses.

    ``source_params`` holds the keyword arguments of each model source that is available
    (:data:`~decayrec.recommend.candidates.MODEL_SOURCES`); ``sources`` says which
    sources propose candidates.
    """

    horizon_days: float
    label_days: float
    train_windows: int
    sources: tuple[str, ...]
    budget: int
    exclude_seen: bool
    num_leaves: int
    source_params: Mapping[str, Mapping[str, Any]]

    def replace(self, **changes: Any) -> RankerSettings:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "horizon_days": self.horizon_days,
            "label_days": self.label_days,
            "train_windows": self.train_windows,
            "sources": list(self.sources),
            "budget": self.budget,
            "exclude_seen": self.exclude_seen,
            "num_leaves": self.num_leaves,
            "source_params": {k: dict(v) for k, v in self.source_params.items() if k in self.sources},
        }


# -- the use horizon ------------------------------------------------------------------------
def infer_horizon(ix: Interactions) -> tuple[float, str]:
    """A use horizon in days from the log, and a sentence saying how it was found.

    The median, over users active on at least two days, of each user's median gap between
    active days (days with an event), kept between 1 hour and a quarter of the log's span.
    Where almost nobody comes back on another day (a session log), the horizon is the
    typical length of a visit instead (the median span, first to last event, of users
    with more than one event), between 10 minutes and a day.
    """
    if ix.user.size == 0:
        return 7.0, "no events: 7 days"
    span = float(-ix.time.min())
    day = np.floor(ix.time).astype(np.int64)
    offset = int(-day.min()) + 1
    key = np.unique(ix.user.astype(np.int64) * (offset + 1) + (day + offset))
    user, active = key // (offset + 1), key % (offset + 1)
    same = user[1:] == user[:-1]
    gap_user, gap = user[1:][same], np.diff(active)[same].astype(np.float64)
    returning = np.unique(gap_user).size / max(ix.n_users, 1)
    if returning < SESSION_RETURN_SHARE:
        first = np.full(ix.n_users, np.inf)
        last = np.full(ix.n_users, -np.inf)
        np.minimum.at(first, ix.user, ix.time)
        np.maximum.at(last, ix.user, ix.time)
        length = (last - first)[last > first]
        visit = float(np.median(length)) if length.size else 1.0 / 24
        h = float(np.clip(visit * 2, 10 / 1440, 1.0))
        return h, (
            f"{returning:.1%} of users come back on another day (a session log): the horizon is about a visit, "
            f"twice the median visit of {visit * 1440:.0f} minutes"
        )
    order = np.lexsort((gap, gap_user))
    gap_user, gap = gap_user[order], gap[order]
    starts = np.flatnonzero(np.r_[True, gap_user[1:] != gap_user[:-1]])
    counts = np.diff(np.r_[starts, gap_user.size])
    med = 0.5 * (gap[starts + (counts - 1) // 2] + gap[starts + counts // 2])
    typical = float(np.median(med))
    h = float(np.clip(typical, 1.0 / 24, max(span / 4, 1.0 / 24)))
    return h, f"the median gap between a user's active days is {typical:g} days ({returning:.0%} of users come back)"


# -- everything fitted at one cutoff, built once ---------------------------------------------
def _frozen(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


class Workspace:
    """Feature states, fitted sources and label windows per cutoff, each built once.

    Parameters
    ----------
    events
        All events the ranker was given (each cutoff reads only those at or before it).
    ranker
        The :class:`~decayrec.recommend.ranker.DecayRanker` whose fixed parameters (event
        weights, scales, decay, seed) every piece is built with.
    """

    def __init__(self, events: pa.Table, ranker: DecayRanker, max_window_users: int | None = None):
        self.events = events
        self.ranker = ranker
        self.max_window_users = max_window_users or ranker.max_window_users
        self._states: dict[datetime, FeatureState] = {}
        self._models: dict[tuple, Any] = {}
        self._sources: dict[tuple, SourceSet] = {}
        self._truths: dict[tuple, WindowTruth | None] = {}
        self._windows: dict[tuple, Window | None] = {}
        self.sequence = SequenceSources(events, ranker.sequence_settings(), ranker.log or (lambda line: None))

    def state(self, cutoff: datetime) -> FeatureState:
        if cutoff not in self._states:
            self._states[cutoff] = self.ranker._state(self.events, cutoff)
        return self._states[cutoff]

    def model(self, cutoff: datetime, name: str, params: Mapping[str, Any], single: bool = False):
        """A fitted model source (``single``: the recommender served on its own, with its fill)."""
        key = (cutoff, name, single, _frozen(params))
        if key not in self._models:
            w = self.ranker.event_weights
            if name == "sequence":  # trained once (self.sequence), read at this cutoff
                view = self.sequence.view(self.state(cutoff).ix, exclude_seen=bool(params.get("exclude_seen", False)))
                self._models[key] = view
                return view
            if single:
                model = single_source(name, params, w)
            else:
                model = build_source(name, params, w)
            # Every piece fitted at one cutoff shares the feature state's condensed events.
            self._models[key] = model.fit_interactions(self.state(cutoff).ix)
        return self._models[key]

    def sources(self, cutoff: datetime, source_params: Mapping[str, Mapping[str, Any]]) -> SourceSet:
        key = (cutoff, tuple((n, _frozen(p)) for n, p in sorted(source_params.items())))
        if key not in self._sources:
            fitted = {n: self.model(cutoff, n, p) for n, p in source_params.items()}
            source_set = SourceSet(source_params, self.ranker.event_weights, self.ranker.new_item_days)
            self._sources[key] = source_set.fit(self.events, cutoff, self.state(cutoff), fitted)
        return self._sources[key]

    def truth(self, cutoff: datetime, days: float) -> WindowTruth | None:
        key = (cutoff, days)
        if key not in self._truths:
            state = self.state(cutoff)
            self._truths[key] = (
                None
                if state.ix.n_users == 0
                else window_truth(self.events, state, cutoff, days, max_users=self.max_window_users, seed=self.ranker.seed)
            )
        return self._truths[key]

    def window(self, cutoff: datetime, days: float, source_params: Mapping[str, Mapping[str, Any]]) -> Window | None:
        key = (cutoff, days, tuple((n, _frozen(p)) for n, p in sorted(source_params.items())))
        if key not in self._windows:
            truth = self.truth(cutoff, days)
            self._windows[key] = (
                None
                if truth is None
                else build_window(truth, self.sources(cutoff, source_params), budget=MAX_BUDGET, n_popular=self.ranker.n_popular)
            )
        return self._windows[key]


def single_source(name: str, params: Mapping[str, Any], event_weights):
    """An unfitted single-source recommender: a model source with its popularity fill, or decayed popularity."""
    from decayrec.recommend.baselines import DecayedPopularity, RepeatHistory

    params = dict(params)
    if name == "decayed_popularity":
        return DecayedPopularity(event_weights=event_weights, **params)
    if name == "repeat":
        return RepeatHistory(event_weights=event_weights, **params)
    return build_source(name, params, event_weights)


# -- the search -------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """What the search chose, and everything it tried (the model card's body)."""

    settings: RankerSettings
    served: str
    single: tuple[str, dict[str, Any]] | None
    horizon_note: str
    validation: dict[str, Any]
    tried: list[dict[str, Any]] = field(default_factory=list)
    floor: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    budget_hit: bool = False


class _Validation:
    """The validation cutoffs and their truths; lists are scored pooled over (cutoff, user) units."""

    def __init__(self, space: Workspace, now: datetime, horizon: float, seed: int):
        self.space, self.horizon = space, horizon
        self.cutoffs: list[datetime] = []
        self.truths: list[WindowTruth] = []
        self.picks: list[np.ndarray] = []
        n = 0
        for i in range(1, MAX_VALIDATION_CUTOFFS + 1):
            cutoff = now - timedelta(days=i * horizon)
            if space.state(cutoff).ix.n_users == 0:
                break
            truth = space.truth(cutoff, horizon)
            if truth is None:
                continue
            size = truth.users.size
            pick = np.arange(size)
            if size > MAX_VALIDATION_USERS:
                rng = np.random.default_rng([seed, i])
                pick = np.sort(rng.choice(size, MAX_VALIDATION_USERS, replace=False))
            self.cutoffs.append(cutoff)
            self.truths.append(truth)
            self.picks.append(pick)
            n += pick.size
            if n >= MIN_VALIDATION_USERS:
                break
        self.users = n

    def windows(self, source_params) -> list[Window]:
        out: list[Window] = []
        for c in self.cutoffs:
            window = self.space.window(c, self.horizon, source_params)
            assert window is not None  # every cutoff kept has a truth (see __init__), so it has a window
            out.append(window)
        return out

    @property
    def repeat_share(self) -> float:
        return _pooled([(t.repeat_share, int(t.n_truth.sum())) for t in self.truths]) if self.truths else 0.0

    def describe(self) -> dict[str, Any]:
        return {"cutoffs": [iso(c) for c in self.cutoffs], "users": self.users, "horizon_days": self.horizon}


def _pooled(parts: list[tuple[float, int]]) -> float:
    total = sum(n for _, n in parts)
    return float(sum(v * n for v, n in parts) / total) if total else float("nan")


class _Search:
    def __init__(
        self,
        ranker: DecayRanker,
        events: pa.Table,
        now: datetime,
        log: Callable[[str], None],
        max_window_users: int | None = None,
    ):
        self.r, self.now, self.log = ranker, now, log
        self.space = Workspace(events, ranker, max_window_users)
        self.t0 = time.perf_counter()
        self.tried: list[dict[str, Any]] = []
        self.budget_hit = False

    # -- bookkeeping --------------------------------------------------------------------------
    def over_budget(self) -> bool:
        if time.perf_counter() - self.t0 > self.r.budget_seconds:
            self.budget_hit = True
        return self.budget_hit

    def record(self, step: str, what: Mapping[str, Any], score: float | None, seconds: float, note: str = "") -> None:
        entry = {
            "step": step,
            "settings": dict(what),
            "score": None if score is None or not np.isfinite(score) else round(score, 6),
        }
        entry["seconds"] = round(seconds, 2)
        if note:
            entry["note"] = note
        self.tried.append(entry)
        shown = ", ".join(f"{k}={v}" for k, v in what.items())
        value = "skipped" if score is None else f"NDCG@{K_VALIDATION} {score:.4f}"
        self.log(f"  {step:<8} {shown:<60} {value}  ({seconds:.1f} s){'  ' + note if note else ''}")

    # -- single sources -----------------------------------------------------------------------
    def score_single(self, val: _Validation, name: str, params: Mapping[str, Any]) -> float:
        parts = []
        for cutoff, truth, pick in zip(val.cutoffs, val.truths, val.picks):
            model = self.space.model(cutoff, name, params, single=True)
            ix = truth.state.ix
            recs = model.recommend(ix.users.decode(truth.users[pick]), K_VALIDATION, cutoff)
            row = np.searchsorted(pick, np.searchsorted(truth.users, ix.users.encode(recs["user_id"])))
            item = ix.items.encode(recs["item_id"]).astype(np.int64)
            rank = recs["rank"].to_numpy().astype(np.float64)
            hit = truth.hits(pick[row], item)
            parts.append((group_ndcg(row, item, -rank, hit, truth.n_truth[pick], K_VALIDATION), pick.size))
        return _pooled(parts)

    def tune_single(self, val: _Validation, name: str, grids: Sequence[Sequence[dict[str, Any]]], fixed: dict[str, Any]):
        """Coordinate search over ``grids`` (each a list of settings to try, in order); the best settings and score."""
        best: dict[str, Any] = dict(fixed)
        best_score = -np.inf
        for grid in grids:
            round_best = None
            for option in grid:
                params = best | option
                if self.over_budget():
                    self.record(name, option, None, 0.0, "over the time budget")
                    continue
                t = time.perf_counter()
                try:
                    score = self.score_single(val, name, params)
                except InputError as exc:  # e.g. too little data for this source
                    self.record(name, option, None, time.perf_counter() - t, f"cannot run: {exc}")
                    continue
                self.record(name, option, score, time.perf_counter() - t)
                if score > best_score:
                    best_score, round_best = score, params
            if round_best is not None:
                best = round_best
        return best, best_score

    # -- the ranker ---------------------------------------------------------------------------
    def train(self, settings: RankerSettings, oldest: datetime, max_groups: int):
        parts = []
        names = None
        for j in range(1, settings.train_windows + 1):
            cutoff = oldest - timedelta(days=j * settings.label_days)
            if self.space.state(cutoff).ix.n_users == 0:
                break
            window = self.space.window(cutoff, settings.label_days, settings.source_params)
            if window is None:
                continue
            cand, x, y, _ = window_rows(
                window,
                settings.sources,
                settings.budget,
                settings.exclude_seen,
                max_negatives=self.r.max_negatives,
                seed=self.r.seed,
            )
            parts.append((x, y, cand.row))
            names = feature_names(window.truth.state)
        if not parts:
            return None
        assert names is not None  # set along with every part
        r = self.r
        return fit_lambdarank(
            parts,
            names,
            num_leaves=settings.num_leaves,
            n_estimators=r.n_estimators,
            learning_rate=r.learning_rate,
            min_child_samples=r.min_child_samples,
            early_stopping_rounds=r.early_stopping_rounds,
            max_groups=max_groups,
            seed=r.seed,
            num_threads=r.num_threads,
            max_negatives=r.max_negatives,
        )

    def score_ranker(self, val: _Validation, settings: RankerSettings) -> tuple[float, int]:
        trained = self.train(settings, val.cutoffs[-1], SEARCH_GROUPS)
        parts = []
        for window, pick in zip(val.windows(settings.source_params), val.picks):
            cand, x, y, _ = window_rows(window, settings.sources, settings.budget, settings.exclude_seen, users=pick)
            if trained is None:
                score = -cand.rank.min(axis=1)
            else:
                score = trained.model.booster_.predict(x, num_threads=self.r.num_threads)
            row = np.searchsorted(pick, cand.row)
            parts.append((group_ndcg(row, cand.item, score, y > 0, window.truth.n_truth[pick], K_VALIDATION), pick.size))
        return _pooled(parts), (trained.trees if trained is not None else 0)

    def ranker_steps(self, val: _Validation, base: RankerSettings) -> tuple[RankerSettings, float]:
        r = self.r
        h = base.horizon_days
        steps: list[tuple[str, str, list[Any]]] = []
        if r.train_windows is None:
            w0 = base.train_windows
            steps.append(("windows", "train_windows", [w0, max(1, w0 // 2), min(MAX_TRAIN_WINDOWS, 2 * w0)]))
        if r.label_days is None:
            steps.append(("label", "label_days", [h, 2 * h]))
        if r.sources is None:
            steps.append(("sources", "sources", []))  # backward elimination, built below
        if r.n_per_source is None:
            steps.append(("budget", "budget", [DEFAULT_BUDGET, 20, MAX_BUDGET]))
        if r.num_leaves is None:
            steps.append(("leaves", "num_leaves", [31, 7, 63]))
        best, best_score = base, -np.inf
        tried: set[str] = set()

        def run(step: str, settings: RankerSettings) -> float:
            nonlocal best, best_score
            key = json.dumps(settings.to_json(), sort_keys=True, default=str)
            if key in tried:
                return -np.inf
            tried.add(key)
            shown = {
                "label_days": round(settings.label_days, 4),
                "train_windows": settings.train_windows,
                "sources": ",".join(settings.sources),
                "budget": settings.budget,
                "num_leaves": settings.num_leaves,
            }
            if self.over_budget():
                self.record(step, shown, None, 0.0, "over the time budget")
                return -np.inf
            t = time.perf_counter()
            score, trees = self.score_ranker(val, settings)
            self.record(step, shown | {"trees": trees}, score, time.perf_counter() - t)
            if score > best_score:
                best, best_score = settings, score
            return score

        if not steps:
            run("fixed", base)
            return best, best_score
        for step, attr, values in steps:
            if attr == "sources":  # backward elimination: drop a source when the lists get better without it
                for name in [s for s in best.sources if s != "popular"]:
                    if len([s for s in best.sources if s != "popular"]) > 1:
                        run(step, best.replace(sources=tuple(s for s in best.sources if s != name)))
                continue
            for value in values:
                run(step, best.replace(**{attr: value}))
        return best, best_score

    # -- the whole search -----------------------------------------------------------------------
    def run(self) -> SearchResult:
        r, now = self.r, self.now
        ix = self.space.state(now).ix
        if r.horizon_days is None:
            horizon, note = infer_horizon(ix)
        else:
            horizon, note = float(r.horizon_days), "given"
        self.log(f"decayrec: use horizon {horizon:g} days ({note})")
        scales = sorted({round(horizon * f, 6) for f in (0.25, 1.0, 4.0, 16.0)})
        # Popularity is cheap to try: fixed half-lives from an hour to a year, and the horizon's multiples.
        pop_scales = sorted({*scales, round(horizon / 16, 6), 1 / 24, 1.0, 3.0, 7.0, 30.0, 90.0, 365.0})
        available = _available_sources(r.use_sequence)
        self.base_params = self.source_params(horizon, available)
        val = _Validation(self.space, now, horizon, r.seed)
        repeat_share = val.repeat_share
        exclude = r.exclude_seen if r.exclude_seen is not None else bool(repeat_share < REPEAT_SHARE_TO_KEEP_SEEN)
        validation = val.describe() | {"repeat_share": round(repeat_share, 4), "exclude_seen": exclude}
        base = RankerSettings(
            horizon_days=horizon,
            label_days=float(r.label_days) if r.label_days is not None else horizon,
            train_windows=int(r.train_windows) if r.train_windows is not None else _windows_for(val),
            sources=tuple(
                s for s in (r.sources or SOURCES) if s in SOURCES and s in available and not (s == "repeat" and exclude)
            ),
            budget=int(r.n_per_source) if r.n_per_source is not None else DEFAULT_BUDGET,
            exclude_seen=exclude,
            num_leaves=int(r.num_leaves) if r.num_leaves is not None else 31,
            source_params=self.base_params,
        )
        if val.users < 50:
            self.log(f"decayrec: only {val.users} users to validate on: keeping the default settings, serving the ranker")
            return SearchResult(
                base,
                "ranker",
                None,
                note,
                validation | {"note": "too few users to validate: defaults"},
                self.tried,
                {},
                time.perf_counter() - self.t0,
                self.budget_hit,
            )
        self.log(
            f"decayrec: validating on {val.users:,} users after {len(val.cutoffs)} cutoff(s) from {iso(val.cutoffs[0])}; "
            f"{repeat_share:.1%} of what they did next repeats an earlier item"
            + ("; lists leave out each user's own items" if exclude else "")
        )

        if "sequence" in base.sources:
            # One network for the whole search, trained before the base setting's oldest label window.
            trained_at = val.cutoffs[-1] - timedelta(days=base.train_windows * base.label_days)
            if not self.space.sequence.fit(trained_at):
                base = base.replace(sources=tuple(s for s in base.sources if s != "sequence"))

        # Single sources: the floor, and the settings of the ranker's sources.
        ex = {"exclude_seen": exclude}
        pop, pop_score = self.tune_single(val, "decayed_popularity", [[{"half_life_days": s} for s in pop_scales]], {})
        singles: dict[str, tuple[dict[str, Any], float]] = {"decayed_popularity": (pop, pop_score)}
        params = dict(self.base_params)
        w = _mean_weight(ix)
        grids: dict[str, list[list[dict[str, Any]]]] = {
            "repeat": [[{"half_life_days": s} for s in scales]],
            "covisit": [[{"window_hours": h} for h in (24.0, 24.0 * max(30.0, 4 * horizon), max(1.0, 24 * horizon / 4))]],
            "userknn": [[{"alpha": a} for a in (0.7, 0.9, 0.4)], [{"neighbours": n} for n in (50, 200)]],
            "itemknn": [[{"K": k} for k in (50, 10, 200)]],
            "als": [[{"alpha": round(c / w, 6)} for c in (16.0, 4.0, 64.0)], [{"factors": f} for f in (64, 128)]],
            "sequence": [[{}]],  # early-stopped on its own validation window when trained
        }
        for name in [s for s in MODEL_SOURCES if s in base.sources]:
            if name == "repeat":
                extra = {"fill": "decayed_popularity", "fill_half_life_days": pop["half_life_days"]}
            else:
                extra = ex
            grid = grids[name] if r.source_params is None else [[{}]]  # given settings are scored, not tuned
            best, score = self.tune_single(val, name, grid, params[name] | extra)
            singles[name] = (best, score)
            params[name] = {k: v for k, v in best.items() if k not in extra}
            if name == "repeat" and r.source_params is None and "userknn" in params:
                params["userknn"] = params["userknn"] | {"half_life_days": best["half_life_days"]}
        base = base.replace(source_params={k: v for k, v in params.items() if k in base.sources})

        # The ranker.
        chosen, ranker_score = self.ranker_steps(val, base)
        served, single, floor = choose_served(ranker_score, singles, r.serve)
        if served == "ranker":
            self.log(
                f"decayrec: serving the ranker ({ranker_score:.4f} on validation; best single source "
                f"{floor.get('best_single')} {floor.get('single_score', float('nan')):.4f})"
            )
        else:
            self.log(
                f"decayrec: the ranker ({ranker_score:.4f}) does not beat {served} ({floor['single_score']:.4f}) "
                f"on validation: serving {served}"
            )
        return SearchResult(
            chosen, served, single, note, validation, self.tried, floor, time.perf_counter() - self.t0, self.budget_hit
        )

    def source_params(self, horizon: float, available: Sequence[str]) -> dict[str, dict[str, Any]]:
        ix = self.space.state(self.now).ix
        return default_source_params(horizon, _mean_weight(ix), available, self.r.source_params)


def default_source_params(
    horizon: float, mean_weight: float, available: Sequence[str], given: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Starting settings of every available model source, scaled to the horizon, with ``given`` merged over them.

    ``mean_weight`` is the mean event weight: ALS's confidence per event starts at 16.
    """
    out: dict[str, dict[str, Any]] = {
        "repeat": {"half_life_days": 4 * horizon},
        "covisit": {"window_hours": 24.0 * max(30.0, 4 * horizon), "recency_half_life_days": max(horizon, 1 / 144)},
        "userknn": {"half_life_days": 4 * horizon, "neighbours": 50, "alpha": 0.7},
    }
    if "itemknn" in available:
        out["itemknn"] = {"kind": "bm25", "K": 50}
    if "als" in available:
        out["als"] = {"factors": 64, "regularization": 0.05, "iterations": 15, "alpha": round(16.0 / mean_weight, 6)}
    if "sequence" in available:
        out["sequence"] = {}
    for name, params in (given or {}).items():
        if name not in MODEL_SOURCES:
            raise InputError(f"source_params names {name!r}, which is not a model source", f"use some of {MODEL_SOURCES}")
        out[name] = dict(out.get(name, {})) | dict(params)
    return out


def choose_served(
    ranker_score: float, singles: Mapping[str, tuple[dict[str, Any], float]], serve: str = "auto"
) -> tuple[str, tuple[str, dict[str, Any]] | None, dict[str, Any]]:
    """The floor: serve the ranker only when it beats every single source on validation.

    ``singles`` maps a source to its best settings and validation score. Returns the name
    served (``"ranker"`` or a source), the source's ``(name, settings)`` when one is
    served, and the comparison for the card. A tie goes to the single source (the simpler
    model); with ``serve="ranker"``, or when no single source could be scored, the ranker
    is served.
    """
    scored = {n: v for n, v in singles.items() if np.isfinite(v[1])}
    floor: dict[str, Any] = {
        "ranker_score": round(ranker_score, 6) if np.isfinite(ranker_score) else None,
        "singles": {n: {"settings": v[0], "score": round(v[1], 6)} for n, v in scored.items()},
    }
    if not scored:
        return "ranker", None, floor
    best = max(scored, key=lambda n: scored[n][1])
    floor |= {"best_single": best, "single_score": round(scored[best][1], 6)}
    if serve == "auto" and not ranker_score > scored[best][1]:
        floor["note"] = f"the ranker did not beat {best} on validation, so {best} is served"
        return best, (best, dict(scored[best][0])), floor
    return "ranker", None, floor


def _windows_for(val: _Validation) -> int:
    """The first guess of stacked label windows: 2, or as many as give the search about
    :data:`TARGET_GROUPS` users where one window holds few (session logs)."""
    per_window = val.users / max(len(val.cutoffs), 1)
    return int(np.clip(np.ceil(TARGET_GROUPS / max(per_window, 1.0)), 2, MAX_TRAIN_WINDOWS // 2))


def _available_sources(use_sequence: bool | None = None) -> tuple[str, ...]:
    """The sources whose libraries are installed (``implicit`` for item neighbours and ALS, torch for the
    sequence model, which ``use_sequence=False`` leaves out)."""
    import importlib.util

    missing: set[str] = set() if use_sequence is not False else set(TORCH_SOURCES)
    if importlib.util.find_spec("implicit") is None:
        missing |= set(IMPLICIT_SOURCES)
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("safetensors") is None:
        missing |= set(TORCH_SOURCES)
    return tuple(s for s in SOURCES if s not in missing)


def _mean_weight(ix: Interactions) -> float:
    return float(ix.weight.mean()) if ix.weight.size else 1.0


def fixed_settings(ranker: DecayRanker, events: pa.Table, now: datetime) -> RankerSettings | None:
    """The settings when the caller fixed every choice (nothing to search), else None.

    ``source_params={}`` fixes the sources at their defaults; ``None`` asks for them to be tuned.
    """
    r = ranker
    free = [
        r.horizon_days,
        r.label_days,
        r.train_windows,
        r.sources,
        r.n_per_source,
        r.exclude_seen,
        r.num_leaves,
        r.source_params,
    ]
    if any(v is None for v in free):
        return None
    # None of them is None (checked above); spelled out for the type checker.
    assert r.horizon_days is not None and r.label_days is not None and r.train_windows is not None
    assert r.sources is not None and r.n_per_source is not None and r.num_leaves is not None
    available = _available_sources(r.use_sequence)
    sources = tuple(s for s in SOURCES if s in r.sources and s in available)
    ix = interactions(events, now, r.event_weights)
    params = default_source_params(float(r.horizon_days), _mean_weight(ix), available, r.source_params)
    return RankerSettings(
        horizon_days=float(r.horizon_days),
        label_days=float(r.label_days),
        train_windows=int(r.train_windows),
        sources=sources,
        budget=int(r.n_per_source),
        exclude_seen=bool(r.exclude_seen),
        num_leaves=int(r.num_leaves),
        source_params={k: v for k, v in params.items() if k in sources},
    )


def search_sample(events: pa.Table, now: datetime, max_users: int, seed: int) -> tuple[pa.Table, int, int]:
    """The events of at most ``max_users`` users known at ``now`` (a seeded sample), and how many there were.

    The search compares settings with each other, which a sample of users answers as well
    as the whole shop at a fraction of the cost; the chosen settings are then fitted on
    everything.
    """
    import pyarrow.compute as pc

    from decayrec import schema

    users = interactions(events, now, None).users
    n = len(users)
    if n <= max_users:
        return events, n, n
    rng = np.random.default_rng([seed, n])
    keep = users.decode(np.sort(rng.choice(n, max_users, replace=False)))
    return events.filter(pc.is_in(events.column(schema.USER).cast(pa.string()), value_set=keep)), max_users, n


def configure(ranker: DecayRanker, events: pa.Table, now: datetime, log: Callable[[str], None]) -> tuple[SearchResult, Workspace]:
    """Run the search (see the module docstring); the result, and a workspace on all the events for the final fit.

    On a shop of more than ``ranker.search_users`` users the search runs on a seeded sample of them.
    """
    sample, kept, total = search_sample(events, now, ranker.search_users, ranker.seed)
    if kept < total:
        log(f"decayrec: searching on a sample of {kept:,} of the {total:,} users; the chosen settings are then fitted on all")
    # A sampled search also scores smaller windows: it compares settings, the final fit uses full ones.
    search = _Search(ranker, sample, now, log, None if kept == total else min(SEARCH_WINDOW_USERS, ranker.max_window_users))
    result = search.run()
    result.validation["search_users"] = {"sampled": kept, "of": total}
    space = search.space if kept == total else Workspace(events, ranker)
    return result, space
