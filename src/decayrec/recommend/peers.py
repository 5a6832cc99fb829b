"""Matrix-factorisation peers from the ``implicit`` library (the ``peers`` extra), on the CPU.

The well-known implementations, wrapped in the decayrec contract so the benchmark compares
against the real thing: :class:`ImplicitALS` (Hu, Koren and Volinsky's implicit-feedback
ALS, ``implicit.als.AlternatingLeastSquares``) and :class:`ImplicitBPR` (Bayesian
personalised ranking, ``implicit.bpr.BayesianPersonalizedRanking``). Users unknown at fit
time get decayed popularity. Importing this module needs no ``implicit``; fitting does.
"""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from decayrec.errors import InputError, require
from decayrec.recommend.base import BaseRecommender
from decayrec.recommend.fallback import fallback_rows, popularity
from decayrec.recommend.interactions import Interactions
from decayrec.recommend.output import rec_table
from decayrec.recommend.params import COLD_START_HALF_LIFE_DAYS, check_positive
from decayrec.recommend.reasons import join_text, merge_reasons
from decayrec.weights import EventWeights as Weights

__all__ = ["ImplicitALS", "ImplicitBPR", "ImplicitItemKNN"]

_SIMILAR = "shoppers with similar taste like this"
# implicit marks items it filtered out of a user's list with the lowest float32.
_FILTERED = float(np.finfo(np.float32).min) / 2


class _ImplicitPeer(BaseRecommender):
    """Fit an ``implicit`` model on the user x item matrix; recommend through its batch ``recommend``."""

    # Scores at or below this are implicit's marks for filtered items (or, for neighbours, no evidence).
    _floor = _FILTERED
    _reason = _SIMILAR
    # Settings each subclass sets in __init__ (ItemKNN has no regularization: it overrides _check).
    regularization: float
    num_threads: int
    exclude_seen: bool

    def _matrix_half_life(self) -> float | None:
        return None

    def _build(self) -> Any:
        raise NotImplementedError

    def _check(self) -> None:
        for name in ("factors", "iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        check_positive("regularization", self.regularization)
        if isinstance(self.num_threads, bool) or not isinstance(self.num_threads, (int, np.integer)) or self.num_threads < 0:
            raise InputError(f"num_threads must be a non-negative integer (0 = all cores), got {self.num_threads!r}")

    def fit_interactions(self, ix: Interactions):
        self._check()
        require("implicit", "peers")
        threadpoolctl = require("threadpoolctl", "peers")  # a dependency of implicit
        self._remember(ix)
        self.history_ = ix.history
        self.fallback_ = popularity(ix, COLD_START_HALF_LIFE_DAYS)
        self.matrix_ = ix.matrix(self._matrix_half_life(), dtype=np.float32)
        self.model_ = None
        if self.matrix_.nnz:
            # implicit runs its own threads; a threaded BLAS underneath slows it badly.
            with threadpoolctl.threadpool_limits(1, "blas"), warnings.catch_warnings():
                # implicit's BM25 converts a matrix of its own to CSR and warns about it.
                warnings.filterwarnings("ignore", message="Method expects CSR input")
                model = self._build()
                model.fit(self.matrix_, show_progress=False)
            self.model_ = model
        return self

    def propose(self, codes: np.ndarray, n: int, elapsed: float = 0.0, *, exclude_seen: bool = False):
        """The ``n`` best items of each known user code: ``(row, item, score)`` by row then rank.

        ``row`` indexes ``codes``. Scores do not move with ``elapsed`` (the factors are as of
        the fit). With ``exclude_seen`` the user's own items are left out.
        """
        codes = np.asarray(codes, dtype=np.int64)
        n = min(int(n), len(self.items_))
        if self.model_ is None or codes.size == 0 or n == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, np.empty(0)
        ids, scores = self.model_.recommend(codes, self.matrix_[codes], N=n, filter_already_liked_items=exclude_seen)
        ids, scores = np.asarray(ids).reshape(-1, n), np.asarray(scores, dtype=np.float64).reshape(-1, n)
        ok = (ids >= 0) & (scores > self._floor)
        row = np.broadcast_to(np.arange(codes.size)[:, None], ids.shape)[ok]
        return row.astype(np.int64), ids[ok].astype(np.int64), scores[ok]

    def recommend(self, users, k: int, now: datetime) -> pa.Table:
        req, codes, k, elapsed = self._start(users, k, now)
        known, cold = np.flatnonzero(codes >= 0), np.flatnonzero(codes < 0)
        parts = [fallback_rows(cold, self.fallback_, k, elapsed, cold=True)]
        if known.size and self.model_ is not None:
            user = codes[known]
            row, item, score = self.propose(user, k, elapsed, exclude_seen=self.exclude_seen)
            pair = self.history_.lookup(user[row], item)
            seen = pair >= 0
            reason = merge_reasons(
                seen,
                lambda i: join_text(self.history_.phrase(pair[i], elapsed), "; shoppers with similar taste like it too"),
                lambda i: pa.repeat(pa.scalar(self._reason, pa.string()), i.size),
            )
            parts.append((known[row], item, score, reason))
        return rec_table(req, self.items_, parts)


class ImplicitALS(_ImplicitPeer):
    """Implicit-feedback ALS (``implicit.als.AlternatingLeastSquares``, CPU).

    The confidence of (user, item) is ``alpha`` times the user's event count on the item
    weighted by type and, with ``half_life_days``, decayed to the fit time.

    Parameters
    ----------
    factors, regularization, iterations, alpha
        As in implicit.
    event_weights
        Weight per event type (decayrec defaults when None; types left out count 0).
    half_life_days
        Decay the counts to the fit time (None: plain counts, the classic setup).
    exclude_seen
        Never recommend an item the user has touched (implicit's ``filter_already_liked_items``).
    random_state
        Seed of the initial factors.
    num_threads
        implicit's threads (0 = all cores). ALS results do not depend on it.
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        iterations: int = 15,
        alpha: float = 40.0,
        event_weights: Weights = None,
        half_life_days: float | None = None,
        exclude_seen: bool = False,
        random_state: int = 0,
        num_threads: int = 1,
    ):
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.event_weights = event_weights
        self.half_life_days = half_life_days
        self.exclude_seen = exclude_seen
        self.random_state = random_state
        self.num_threads = num_threads

    def _check(self) -> None:
        super()._check()
        check_positive("alpha", self.alpha)
        check_positive("half_life_days", self.half_life_days, allow_none=True)

    def _matrix_half_life(self) -> float | None:
        return self.half_life_days

    def _build(self) -> Any:
        import implicit.als

        return implicit.als.AlternatingLeastSquares(
            factors=int(self.factors),
            regularization=float(self.regularization),
            alpha=float(self.alpha),
            iterations=int(self.iterations),
            random_state=self.random_state,
            num_threads=int(self.num_threads),
            use_gpu=False,
        )


class ImplicitBPR(_ImplicitPeer):
    """Bayesian personalised ranking (``implicit.bpr.BayesianPersonalizedRanking``, CPU).

    BPR learns from which items a user touched, not how much: events of positive weight
    make a pair a positive. With more than one thread implicit's SGD is not reproducible,
    hence ``num_threads=1`` by default.

    Parameters
    ----------
    factors, learning_rate, regularization, iterations
        As in implicit.
    event_weights
        Event types with a positive weight count as interactions (decayrec defaults: all).
    exclude_seen
        Never recommend an item the user has touched.
    random_state
        Seed of the factors and of negative sampling.
    num_threads
        implicit's threads (0 = all cores).
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        event_weights: Weights = None,
        exclude_seen: bool = False,
        random_state: int = 0,
        num_threads: int = 1,
    ):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.event_weights = event_weights
        self.exclude_seen = exclude_seen
        self.random_state = random_state
        self.num_threads = num_threads

    def _check(self) -> None:
        super()._check()
        check_positive("learning_rate", self.learning_rate)

    def _build(self) -> Any:
        import implicit.bpr

        return implicit.bpr.BayesianPersonalizedRanking(
            factors=int(self.factors),
            learning_rate=float(self.learning_rate),
            regularization=float(self.regularization),
            iterations=int(self.iterations),
            random_state=self.random_state,
            num_threads=int(self.num_threads),
            use_gpu=False,
        )


class ImplicitItemKNN(_ImplicitPeer):
    """Item-item neighbours (``implicit.nearest_neighbours``: BM25 or cosine), CPU.

    A user's score for an item is their row of (decayed) weighted counts times the item
    similarity, cut to each item's ``K`` nearest neighbours.

    Parameters
    ----------
    kind
        ``"bm25"`` (BM25-weighted co-occurrence) or ``"cosine"``.
    K
        Neighbours kept per item.
    event_weights
        Weight per event type (decayrec defaults when None; types left out count 0).
    half_life_days
        Decay the counts to the fit time (None: plain counts).
    exclude_seen
        Never recommend an item the user has touched.
    num_threads
        implicit's threads (0 = all cores).
    """

    name = "itemknn"
    _floor = 0.0
    _reason = "often engaged with alongside your items"

    def __init__(
        self,
        kind: Literal["bm25", "cosine"] = "bm25",
        K: int = 50,
        event_weights: Weights = None,
        half_life_days: float | None = None,
        exclude_seen: bool = False,
        num_threads: int = 1,
    ):
        self.kind = kind
        self.K = K
        self.event_weights = event_weights
        self.half_life_days = half_life_days
        self.exclude_seen = exclude_seen
        self.num_threads = num_threads

    def _check(self) -> None:
        if self.kind not in ("bm25", "cosine"):
            raise InputError(f"kind must be 'bm25' or 'cosine', got {self.kind!r}")
        if isinstance(self.K, bool) or not isinstance(self.K, (int, np.integer)) or self.K < 1:
            raise InputError(f"K must be a positive integer, got {self.K!r}")
        check_positive("half_life_days", self.half_life_days, allow_none=True)
        if isinstance(self.num_threads, bool) or not isinstance(self.num_threads, (int, np.integer)) or self.num_threads < 0:
            raise InputError(f"num_threads must be a non-negative integer (0 = all cores), got {self.num_threads!r}")

    def _matrix_half_life(self) -> float | None:
        return self.half_life_days

    def propose(self, codes: np.ndarray, n: int, elapsed: float = 0.0, *, exclude_seen: bool = False):
        """As :meth:`_ImplicitPeer.propose`: the user's row times implicit's item similarity, in one sparse product
        (implicit's own ``recommend`` loops over users in Python)."""
        from decayrec.recommend.candidates import sparse_top

        codes = np.asarray(codes, dtype=np.int64)
        if self.model_ is None or codes.size == 0 or n < 1:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, np.empty(0)
        rows = self.matrix_[codes]
        block = sp.csr_matrix(rows @ self.model_.similarity, dtype=np.float64)
        if exclude_seen:
            block = block - block.multiply(rows > 0)
            block.eliminate_zeros()
        return sparse_top(block, int(n))

    def _build(self) -> Any:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        if self.kind == "bm25":
            return BM25Recommender(K=int(self.K), num_threads=int(self.num_threads))
        return CosineRecommender(K=int(self.K), num_threads=int(self.num_threads))
