"""The main recommender: candidates from several sources, LightGBM LambdaRank over decay features,
configured per shop by temporal validation, with a floor.

:class:`DecayRanker` follows :mod:`decayrec.recommend.base`. In ``fit(events, now)`` it

1. chooses every setting the caller left as ``None`` (the use horizon, the label window,
   how many label windows to stack, which candidate sources run and their settings, their
   budget, whether to leave out the user's own items, the tree size) on validation
   windows inside the training period (:mod:`decayrec.recommend.autoconfig`);
2. trains LambdaRank on the label windows ``(now - w L, now - (w - 1) L]``: features and
   candidates as of each window's start, each candidate graded by the user's engagement in
   the window (purchase 3, cart or fav 2, view or click 1);
3. fits the sources and the features on every event at or before ``now``, for serving;
   or, when no ranker setting beat the best single source on validation, serves that
   source (the floor) and says so in the model card (:meth:`DecayRanker.card`).

``recommend`` scores all requested users' candidates in one LightGBM call, fills short
lists with popular items, optionally re-mixes the lists of faded or drifted users
(:mod:`decayrec.recommend.policy`), and words a reason from the strongest evidence of
each row. A list's first rows never depend on ``k``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from decayrec.decay.model import DecayModel
from decayrec.decay.strength import StrengthModel, as_utc
from decayrec.errors import InputError
from decayrec.recommend.autoconfig import SearchResult, Workspace, configure, fixed_settings
from decayrec.recommend.base import BaseRecommender
from decayrec.recommend.candidates import SOURCES, Candidates
from decayrec.recommend.fallback import fallback_rows, popularity
from decayrec.recommend.features import DEFAULT_SCALES, FeatureState
from decayrec.recommend.output import rec_table
from decayrec.recommend.params import COLD_START_HALF_LIFE_DAYS, check_positive
from decayrec.recommend.policy import ReengagePolicy
from decayrec.recommend.reasons import join_text, merge_reasons
from decayrec.recommend.topk import blend_topk
from decayrec.recommend.training import TrainedRanker, feature_names, fit_lambdarank, source_columns, window_rows
from decayrec.timeparse import iso
from decayrec.weights import EventWeights as Weights

__all__ = ["SOURCES", "DecayRanker"]

_COL = {name: j for j, name in enumerate(SOURCES)}
# The sequence source trains twice per fit (for the search, and at the fit time): a shorter budget than alone.
SEQUENCE_DEFAULTS: Mapping[str, Any] = {"budget_seconds": 120.0}


class DecayRanker(BaseRecommender):
    """Decay-aware candidates re-ranked by LightGBM LambdaRank (the ``"decayrec"`` model), self-configuring.

    Every parameter that defaults to ``None`` is chosen on validation windows inside the
    training period (:mod:`decayrec.recommend.autoconfig`); give a value to fix it. With
    all of them fixed, nothing is searched.

    Parameters
    ----------
    horizon_days
        The use horizon: what the lists are for (next visit, next basket, next month).
        None: inferred from the log (the median gap between a user's active days).
    label_days
        Length of each training label window (None: the horizon or twice it).
    train_windows
        Label windows stacked for training, back from the fit time (None: 1, 2 or 4).
    sources
        Candidate sources on, among :data:`~decayrec.recommend.candidates.SOURCES`
        (None: all that are installed, then any whose removal improves validation is dropped).
    n_per_source
        Candidates each source proposes per user (None: 20, 40 or 80).
    exclude_seen
        Leave the user's own items out of the lists (None: when under 1% of what users
        did next in validation repeated an earlier item).
    num_leaves
        Leaves per LightGBM tree (None: 7, 31 or 63).
    source_params
        Settings per model source (``repeat``, ``covisit``, ``itemknn``, ``als``), merged over
        the tuned ones (None: each tuned as a single source on validation).
    serve
        ``"auto"``: serve the best single source when no ranker setting beats it on
        validation (the floor); ``"ranker"``: always serve the ranker.
    budget_seconds
        Wall-clock bound of the search; trials that would start later are skipped.
    n_popular
        Popular candidates per user (lists shorter than ``k`` are filled with more).
    new_item_days
        Items first seen this recently count as new.
    event_weights
        Weight per event type (decayrec defaults when None).
    scales
        Half-lives of the interest features (days).
    decay, strength
        Optional fitted :class:`~decayrec.decay.DecayModel` and category-level
        :class:`~decayrec.decay.StrengthModel`, as extra features.
    reengage, policy
        Re-mix the lists of faded or drifted users (:class:`~decayrec.recommend.policy.ReengagePolicy`).
    n_estimators, learning_rate, min_child_samples, early_stopping_rounds
        LightGBM settings; early stopping on a seeded fifth of the training groups.
    max_train_users
        LambdaRank groups of the final fit, at most (a seeded sample).
    max_window_users
        Users kept per label window (a seeded sample).
    max_negatives
        Ungraded candidates kept per training group (a seeded sample; None keeps all):
        LambdaRank learns as well from a sample and trains several times faster.
    search_users
        On a shop with more users, the search runs on a seeded sample of this many (the
        chosen settings are then fitted on everyone).
    use_sequence
        Offer the search the ``sequence`` source: True (needs torch), None (when torch is
        installed) or False (the default: on the benchmarks so far it multiplied the fit
        time by 3 to 5 without reliably better lists; see the README).
    sequence_params
        Settings of the ``sequence`` source's network (:class:`~decayrec.sequence.SequenceConfig`
        fields), over :data:`SEQUENCE_DEFAULTS`. The source is on when torch is installed
        and the search keeps it; it is trained before the search's oldest label window and
        again at ``now`` for serving.
    seed, num_threads
        Seed of every sample and of LightGBM (deterministic mode), and its threads. One
        thread by default: on a small shared machine LightGBM's threads spin.
    log
        Called with each line of the search's report (the CLI prints them on stderr).
    """

    name = "decayrec"

    def __init__(
        self,
        horizon_days: float | None = None,
        label_days: float | None = None,
        train_windows: int | None = None,
        sources: Sequence[str] | None = None,
        n_per_source: int | None = None,
        exclude_seen: bool | None = None,
        num_leaves: int | None = None,
        source_params: Mapping[str, Mapping[str, Any]] | None = None,
        serve: Literal["auto", "ranker"] = "auto",
        budget_seconds: float = 600.0,
        n_popular: int = 20,
        new_item_days: float = 14.0,
        event_weights: Weights = None,
        scales: tuple[float, ...] = DEFAULT_SCALES,
        decay: DecayModel | None = None,
        strength: StrengthModel | None = None,
        reengage: bool = False,
        policy: ReengagePolicy | None = None,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        min_child_samples: int = 20,
        early_stopping_rounds: int | None = 20,
        max_train_users: int = 20_000,
        max_window_users: int = 8_000,
        max_negatives: int | None = 50,
        search_users: int = 25_000,
        use_sequence: bool | None = False,
        sequence_params: Mapping[str, Any] | None = None,
        seed: int = 0,
        num_threads: int = 1,
        log: Callable[[str], None] | None = None,
    ):
        self.horizon_days = horizon_days
        self.label_days = label_days
        self.train_windows = train_windows
        self.sources = sources
        self.n_per_source = n_per_source
        self.exclude_seen = exclude_seen
        self.num_leaves = num_leaves
        self.source_params = source_params
        self.serve = serve
        self.budget_seconds = budget_seconds
        self.n_popular = n_popular
        self.new_item_days = new_item_days
        self.event_weights = event_weights
        self.scales = scales
        self.decay = decay
        self.strength = strength
        self.reengage = reengage
        self.policy = policy
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.max_train_users = max_train_users
        self.max_window_users = max_window_users
        self.max_negatives = max_negatives
        self.search_users = search_users
        self.use_sequence = use_sequence
        self.sequence_params = sequence_params
        self.seed = seed
        self.num_threads = num_threads
        self.log = log

    # -- fitting ------------------------------------------------------------------------
    def _check(self) -> None:
        for name in ("horizon_days", "label_days"):
            check_positive(name, getattr(self, name), allow_none=True)
        for name in ("new_item_days", "learning_rate", "budget_seconds"):
            check_positive(name, getattr(self, name))
        optional = ("train_windows", "n_per_source", "num_leaves", "early_stopping_rounds")
        required = (
            "n_popular",
            "n_estimators",
            "min_child_samples",
            "max_train_users",
            "max_window_users",
            "search_users",
            "num_threads",
        )
        for name in (*optional, *required):
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer{' or None' if name in optional else ''}, got {value!r}")
        if self.serve not in ("auto", "ranker"):
            raise InputError(f"serve must be 'auto' or 'ranker', got {self.serve!r}")
        if self.use_sequence is not None and not isinstance(self.use_sequence, (bool, np.bool_)):
            raise InputError(f"use_sequence must be True, False or None, got {self.use_sequence!r}")
        if self.exclude_seen is not None and not isinstance(self.exclude_seen, (bool, np.bool_)):
            raise InputError(f"exclude_seen must be True, False or None, got {self.exclude_seen!r}")
        if self.sources is not None:
            if isinstance(self.sources, str):
                raise InputError("sources must be a list of source names, not one string", f"pass e.g. [{self.sources!r}]")
            unknown = sorted(set(self.sources) - set(SOURCES))
            if unknown or not self.sources:
                raise InputError(f"sources must name some of {SOURCES}, got {list(self.sources)}")

    def sequence_settings(self) -> dict[str, Any]:
        """The sequence source's network settings: :data:`SEQUENCE_DEFAULTS` with ``sequence_params`` over them."""
        return dict(SEQUENCE_DEFAULTS) | {"seed": self.seed, "num_threads": self.num_threads} | dict(self.sequence_params or {})

    def _state(self, events: pa.Table, now: datetime) -> FeatureState:
        return FeatureState.build(
            events, now, event_weights=self.event_weights, scales=self.scales, decay=self.decay, strength=self.strength
        )

    def fit(self, events: pa.Table, now: datetime) -> DecayRanker:
        """Choose the settings left free, train the ranker on label windows before ``now``, refit the sources at ``now``."""
        from decayrec.errors import require

        self._check()
        require("lightgbm", "ranker")
        if self.use_sequence:
            require("torch", "torch")
        now = as_utc(now)
        log = self.log or (lambda line: None)
        settings = fixed_settings(self, events, now)
        if settings is None:
            result, space = configure(self, events, now, log)
        else:
            space = Workspace(events, self)
            result = SearchResult(settings, "ranker", None, "given", {"note": "every setting given: nothing searched"})
        self.search_ = result
        self.space_sequence_ = space.sequence
        self.settings_ = result.settings
        self.served_ = result.served
        self.state_ = space.state(now)
        self._remember(self.state_.ix)
        self.fallback_ = popularity(self.state_.ix, COLD_START_HALF_LIFE_DAYS)
        self.policy_ = (self.policy or ReengagePolicy()) if self.reengage else None
        self.model_: Any = None
        self.single_ = None
        self.trees_ = self.train_groups_ = self.train_rows_ = 0
        if result.single is not None:
            name, params = result.single
            if name == "sequence":
                space.sequence.fit(now)
            self.single_ = space.model(now, name, params, single=True)
            self.sources_ = None
            return self
        if "sequence" in self.settings_.sources:
            s = self.settings_
            if space.sequence.models == {}:  # a fresh workspace (the search ran on a sample): one for the label windows
                space.sequence.fit(now - timedelta(days=s.train_windows * s.label_days))
            space.sequence.fit(now)
        self.sources_ = space.sources(now, self.settings_.source_params)
        trained = self._train(space, now)
        if trained is not None:
            self.model_ = trained.model
            self.trees_, self.train_groups_, self.train_rows_ = trained.trees, trained.groups, trained.rows
        log(
            f"decayrec: trained on {self.train_groups_:,} users in {self.settings_.train_windows} label window(s) of "
            f"{self.settings_.label_days:g} days ({self.trees_} trees)"
        )
        return self

    def _train(self, space: Workspace, now: datetime) -> TrainedRanker | None:
        s = self.settings_
        parts = []
        for w in range(1, s.train_windows + 1):
            cutoff = now - timedelta(days=w * s.label_days)
            if space.state(cutoff).ix.n_users == 0:
                break
            window = space.window(cutoff, s.label_days, s.source_params)
            if window is None:
                continue
            cand, x, y, _ = window_rows(
                window, s.sources, s.budget, s.exclude_seen, max_negatives=self.max_negatives, seed=self.seed
            )
            parts.append((x, y, cand.row))
        if not parts:
            return None
        return fit_lambdarank(
            parts,
            self.feature_names_,
            num_leaves=s.num_leaves,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            min_child_samples=self.min_child_samples,
            early_stopping_rounds=self.early_stopping_rounds,
            max_groups=self.max_train_users,
            seed=self.seed,
            num_threads=self.num_threads,
            max_negatives=self.max_negatives,
        )

    @property
    def feature_names_(self) -> list[str]:
        return feature_names(self.state_)

    # -- the model card -------------------------------------------------------------------
    def card(self) -> dict[str, Any]:
        """What was chosen and why (CONTRACT.md section 3, ``CARD.json``): JSON-ready."""
        if not hasattr(self, "search_"):
            raise InputError("DecayRanker is not fitted; call fit(events, now) first")
        r = self.search_
        chosen = self.settings_.to_json()
        if r.single is not None:
            chosen = {"horizon_days": self.settings_.horizon_days, "source": r.single[0], "settings": r.single[1]}
        return {
            "model": "decayrec",
            "fitted_at": iso(self.fitted_at_),
            "horizon_days": self.settings_.horizon_days,
            "horizon_note": r.horizon_note,
            "served": r.served,
            "chosen": chosen,
            "ranker_settings": self.settings_.to_json(),
            "validation": r.validation,
            "floor": r.floor,
            "tried": r.tried,
            "search_seconds": round(r.seconds, 2),
            "budget_seconds": self.budget_seconds,
            "budget_hit": r.budget_hit,
            "trees": self.trees_,
            "train_groups": self.train_groups_,
            "sequence_networks": [{"trained_at": iso(t), **m.report_} for t, m in sorted(self.space_sequence_.models.items())],
        }

    def save_card(self, path: str | Path) -> None:
        """Write :meth:`card` as JSON."""
        from decayrec.io.outputs import json_safe, write_text

        write_text(json.dumps(json_safe(self.card()), indent=2) + "\n", path)

    # -- serving ------------------------------------------------------------------------
    def score_candidates(self, users: np.ndarray, elapsed: float) -> tuple[Candidates, np.ndarray]:
        """Candidates of user codes ``users`` under the chosen settings, and their ranker scores."""
        s = self.settings_
        assert self.sources_ is not None  # None only when a single model serves, and recommend hands over to it
        full = self.sources_.generate(users, s.budget, self.n_popular, elapsed, exclude_seen=s.exclude_seen)
        cand, _ = full.restrict(s.sources, s.budget)
        x = source_columns(self.state_, cand, users, elapsed)
        if self.model_ is not None:
            score = self.model_.booster_.predict(x, num_threads=self.num_threads)
        else:  # nothing to learn from (a log shorter than the horizon): sources in order
            score = -cand.rank.min(axis=1) + cand.score.sum(axis=1) * 1e-3
        return cand, np.asarray(score, dtype=np.float64)

    def recommend(self, users, k: int, now: datetime) -> pa.Table:
        if self.single_ is not None and hasattr(self, "fitted_at_"):
            return self.single_.recommend(users, k, now)
        req, codes, k, elapsed = self._start(users, k, now)
        known, cold = np.flatnonzero(codes >= 0), np.flatnonzero(codes < 0)
        parts = [fallback_rows(cold, self.fallback_, k, elapsed, cold=True)]
        if known.size:
            ucodes = codes[known].astype(np.int64)
            cand, score = self.score_candidates(ucodes, elapsed)
            if self.policy_ is not None:
                row, item, out_score, discovery, src_score, src_rank = self.policy_.apply(
                    self.state_, self.new_item_days, ucodes, cand, score, k, elapsed
                )
                reason = self.reasons(ucodes[row], item, src_score, src_rank, elapsed, discovery)
            else:
                row, item, out_score, reason = self._lists(ucodes, cand, score, k, elapsed)
            parts.append((known[row], item, out_score, reason))
        return rec_table(req, self.items_, parts)

    def _lists(self, users: np.ndarray, cand: Candidates, score: np.ndarray, k: int, elapsed: float):
        """Top ``k`` candidates per user by score, then popular items the user has no row for (nested in ``k``)."""
        n_items = len(self.items_)
        low = float(score.min(initial=0.0))
        shifted = score - low + 1.0  # positive, same order: the blend's fill sits below every candidate
        block = sp.csr_matrix((shifted, (users[cand.row], cand.item)), shape=(len(self.users_), n_items))
        exclude = None
        if self.settings_.exclude_seen:
            exclude = self.state_.history.seen(self.state_.ix.n_users, n_items)
        row, item, key = blend_topk(users, n_items, k, lambda codes: block[codes], self.fallback_.fill_key(), exclude)
        own = key > 0
        out_score = np.where(own, key + low - 1.0, 0.0)
        # Source scores of the rows that came from the candidates, for the reasons.
        ckey = cand.row * n_items + cand.item
        at = np.minimum(np.searchsorted(ckey, row * n_items + item), max(ckey.size - 1, 0))
        src_score = np.where(own[:, None], cand.score[at] if ckey.size else 0.0, 0.0)
        src_rank = np.where(own[:, None], cand.rank[at] if ckey.size else cand.absent, cand.absent)
        reason = merge_reasons(
            own,
            lambda i: self.reasons(users[row[i]], item[i], src_score[i], src_rank[i], elapsed),
            lambda i: self.fallback_.reason.take(pa.array(item[i])),
        )
        return row, item, out_score, reason

    # -- reasons ------------------------------------------------------------------------
    def reasons(
        self,
        user: np.ndarray,
        item: np.ndarray,
        src_score: np.ndarray,
        src_rank: np.ndarray,
        elapsed: float,
        discovery: np.ndarray | None = None,
    ) -> pa.Array:
        """One sentence per row from its strongest evidence (vectorised).

        In order: a due re-buy; the user's own history; co-visitation with one of the
        user's items; item or user neighbours; shoppers with similar taste (ALS); the
        sequence model; a new item in a category the user shops; several items viewed in the category this
        week; trending in the category; popular now.
        """
        s = self.state_
        n = user.size
        hist = s.history
        pair = hist.lookup(user, item)
        seen = pair >= 0
        since_buy = elapsed - np.where(seen, s.pair_last_purchase[np.maximum(pair, 0)], -np.inf)
        cycle = s.item_cycle[item]
        due = seen & np.isfinite(since_buy) & np.isfinite(cycle) & (since_buy >= 0.8 * np.nan_to_num(cycle, nan=np.inf))
        cat = s.item_cat[item]
        known_cat = cat < s.n_categories
        uc = s.ucat.encode(user, cat) if len(s.ucat) else np.full(n, -1, dtype=np.int32)
        week = np.where(uc >= 0, s.ucat_week_items[np.maximum(uc, 0)], 0.0)
        shops = uc >= 0
        assert self.sources_ is not None  # None only when a single model serves, and recommend hands over to it
        covisit_model = self.sources_.models.get("covisit")
        proposed = src_score > 0
        covisit = proposed[:, _COL["covisit"]] & (covisit_model is not None)
        itemknn = proposed[:, _COL["itemknn"]] | proposed[:, _COL["userknn"]]
        als = proposed[:, _COL["als"]]
        sequence = proposed[:, _COL["sequence"]]
        new = proposed[:, _COL["new"]] & known_cat & shops
        if discovery is not None:
            new |= discovery & known_cat & (s.item_first[item] >= -self.new_item_days)
        busy = known_cat & (week >= 2)
        trend = (proposed[:, _COL["trend"]] | (discovery if discovery is not None else False)) & known_cat
        kind = np.select([due, seen, covisit, itemknn, als, sequence, new, busy, trend], [0, 1, 2, 3, 4, 9, 5, 6, 7], default=8)

        cat_name = pa.concat_arrays([s.categories.ids, pa.array([""], pa.string())])
        texts: list[tuple[np.ndarray, pa.Array]] = []

        def part(k_: int, make) -> None:
            idx = np.flatnonzero(kind == k_)
            if idx.size:
                texts.append((idx, make(idx)))

        def constant(text: str):
            return lambda i: pa.repeat(pa.scalar(text, pa.string()), i.size)

        part(0, lambda i: join_text("you bought this before; due again (", hist.phrase(pair[i], elapsed), ")"))
        part(1, lambda i: hist.phrase(pair[i], elapsed))

        def covisit_reason(i: np.ndarray) -> pa.Array:
            assert covisit_model is not None  # rows of kind 2 are covisit proposals, made only with a covisit model
            return covisit_model._reason(user[i], item[i], elapsed)

        part(2, covisit_reason)
        part(3, constant("often engaged with alongside your items"))
        part(4, constant("shoppers with similar taste like this"))
        part(9, constant("fits the sequence of what you did lately"))
        cname = lambda i: cat_name.take(pa.array(cat[i]))  # noqa: E731
        part(5, lambda i: join_text("new in ", cname(i), ", a category you shop"))
        part(
            6,
            lambda i: join_text(
                "you viewed ", pa.array(week[i].astype(np.int64)).cast(pa.string()), " items in ", cname(i), " this week"
            ),
        )
        part(7, lambda i: join_text("trending in ", cname(i)))
        part(8, constant("popular now"))
        if not texts:
            return pa.array([], pa.string())
        idx = np.concatenate([t[0] for t in texts])
        arr = pa.concat_arrays([t[1] if isinstance(t[1], pa.Array) else t[1].combine_chunks() for t in texts])
        where = np.empty(n, dtype=np.int64)
        where[idx] = np.arange(n)
        return arr.take(pa.array(where))
