"""Top-k ranking metrics per user, their means over users, and bootstrap intervals.

Relevance is binary: an item is relevant to a user when it is in the user's ground truth
(:attr:`TimeSplit.truth <decayrec.evaluate.splits.TimeSplit>`). A user's list is their
recommendations ordered by ``rank`` (ties by row order), cut at ``k``; an item listed twice
counts once, at its first place. With ``T`` the truth set, ``h`` the hits in the top ``k``
and ``p`` their places (1-based):

- ``ndcg``: ``sum 1/log2(p + 1)`` over hits, divided by the same sum over places
  ``1 .. min(|T|, k)`` (the best list possible);
- ``recall``: ``h / min(|T|, k)``, so a perfect list scores 1 even when ``|T| > k``;
- ``recall_full``: ``h / |T|``, the plain recall;
- ``hit_rate``: 1 when ``h > 0``;
- ``mrr``: ``1 / p`` of the first hit, 0 without one.

Every evaluated user counts in the means; a user without recommendations scores 0 on
every metric. The ``repeat`` and ``new`` variants restrict ``T`` to items the user did or
did not touch in training (the list stays whole); users whose restricted ``T`` is empty
are left out of that variant, and its user count says how many remain. Coverage is
catalogue-level: distinct recommended items (top ``k`` of evaluated users) found in the
catalogue, over the catalogue's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema

__all__ = [
    "METRICS",
    "VARIANTS",
    "MetricSummary",
    "Scores",
    "bootstrap_ci",
    "coverage",
    "per_user_metrics",
    "score",
    "summarise",
]

METRICS = ("ndcg", "recall", "recall_full", "hit_rate", "mrr")
VARIANTS = ("all", "repeat", "new")
Ids: TypeAlias = pa.Array | pa.ChunkedArray | Sequence[str]
# Bootstrap draws are made in blocks of at most this many indices, to bound memory.
_BLOCK = 1 << 21


@dataclass(frozen=True)
class MetricSummary:
    """Means over users of one variant, with percentile bootstrap intervals.

    ``ci`` maps each metric to ``(low, high)``; it is empty when no bootstrap was asked.
    """

    users: int
    mean: dict[str, float]
    ci: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class Scores:
    """Everything :func:`score` measures for one model's recommendations."""

    k: int
    summary: dict[str, MetricSummary]
    per_user: dict[str, pa.Table]
    coverage: float
    coverage_items: int
    users_with_recs: int


# ----------------------------------------------------------------------------- per user


@dataclass(frozen=True)
class _Lists:
    """Each evaluated user's first ``k`` distinct items, as parallel arrays."""

    user: np.ndarray  # index into the evaluated users
    item: np.ndarray  # code into ``items``
    position: np.ndarray  # 1-based place in the list
    items: pa.Array


@dataclass(frozen=True)
class _Truth:
    """Distinct (user, item) truth pairs, sorted by ``key = user * len(items) + item``."""

    key: np.ndarray
    user: np.ndarray
    repeat: np.ndarray | None
    items: pa.Array


def _top_k(recs: pa.Table, users: pa.Array, k: int) -> _Lists:
    u = pc.index_in(recs[schema.USER].cast(pa.string()), value_set=users)
    keep = pc.and_(pc.is_valid(u), pc.is_valid(recs[schema.ITEM]))
    u = _numpy(u.filter(keep))
    rank = recs["rank"].filter(keep).to_numpy(zero_copy_only=False).astype(np.float64)
    codes, items = _encode(recs[schema.ITEM].filter(keep))
    if len(u) and not _ordered(u, rank):
        order = np.lexsort((rank, u))  # stable: equal ranks keep their row order
        u, codes = u[order], codes[order]
    starts = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1] if len(u) else np.zeros(0, np.int64)
    position = np.arange(len(u)) - np.repeat(starts, np.diff(np.r_[starts, len(u)])) + 1
    cut = position <= k
    u, codes, position = u[cut], codes[cut], position[cut]
    # A repeated item keeps its first place; its later copies only waste slots.
    _, first = np.unique(u * max(len(items), 1) + codes, return_index=True)
    first.sort()
    return _Lists(u[first], codes[first], position[first], items)


def _truth_sets(truth: pa.Table, users: pa.Array) -> _Truth:
    u = pc.index_in(truth[schema.USER].cast(pa.string()), value_set=users)
    keep = pc.is_valid(u)
    u = _numpy(u.filter(keep))
    codes, items = _encode(truth[schema.ITEM].filter(keep))
    key, first = np.unique(u * max(len(items), 1) + codes, return_index=True)  # a set per user
    repeat = None
    if "repeat" in truth.column_names:
        repeat = truth["repeat"].filter(keep).to_numpy(zero_copy_only=False).astype(bool)[first]
    return _Truth(key, u[first], repeat, items)


def _hits(lists: _Lists, truth: _Truth) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``lists`` of the items in the user's truth, and into ``truth`` of their pair."""
    to_truth = _numpy(pc.fill_null(pc.index_in(lists.items, value_set=truth.items), -1))
    code = to_truth[lists.item] if len(lists.item) else np.zeros(0, np.int64)
    key = lists.user * max(len(truth.items), 1) + code
    at = np.minimum(np.searchsorted(truth.key, key), max(len(truth.key) - 1, 0))
    found = (code >= 0) & (truth.key[at] == key) if len(truth.key) else np.zeros(len(key), bool)
    return np.flatnonzero(found), at[found]


def _encode(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Integer codes and the distinct strings they index."""
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    if isinstance(encoded, pa.ChunkedArray):
        if encoded.num_chunks == 0:
            return np.zeros(0, np.int64), pa.array([], pa.string())
        encoded = encoded.unify_dictionaries().combine_chunks()
    return _numpy(encoded.indices), encoded.dictionary


def _numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return cast(np.ndarray, values.to_numpy(zero_copy_only=False).astype(np.int64))  # pyarrow has no stubs


def _ordered(user: np.ndarray, rank: np.ndarray) -> bool:
    """Whether rows already run by user, then by rank (the usual output of a model)."""
    du, dr = np.diff(user), np.diff(rank)
    return bool(np.all((du > 0) | ((du == 0) & (dr >= 0))))


def _variant(n_users: int, k: int, t_user: np.ndarray, h_user: np.ndarray, h_pos: np.ndarray) -> dict[str, np.ndarray]:
    """Metric arrays over all users (rows with no truth are dropped by the caller)."""
    n_rel = np.bincount(t_user, minlength=n_users)
    n_hit = np.bincount(h_user, minlength=n_users)
    dcg = np.bincount(h_user, weights=1.0 / np.log2(h_pos + 1.0), minlength=n_users)
    ideal = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))]
    first = np.full(n_users, np.inf)
    np.minimum.at(first, h_user, h_pos.astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "n_relevant": n_rel,
            "n_hits": n_hit,
            "ndcg": dcg / ideal[np.minimum(n_rel, k)],
            "recall": n_hit / np.minimum(n_rel, k),
            "recall_full": n_hit / n_rel,
            "hit_rate": (n_hit > 0).astype(np.float64),
            "mrr": 1.0 / first,
        }


def per_user_metrics(recs: pa.Table, truth: pa.Table, users: Ids, k: int) -> dict[str, pa.Table]:
    """Per-user metrics for each variant (see the module docstring).

    Parameters
    ----------
    recs
        ``user_id, item_id, rank`` (further columns ignored); rows of other users ignored.
    truth
        ``user_id, item_id`` and optionally ``repeat``; without it only ``"all"`` is made.
    users
        The evaluated users (distinct strings); each one with truth gets a row in ``"all"``.
    k
        List length.

    Returns
    -------
    dict
        Variant name to a table ``user_id, n_relevant, n_hits, ndcg, recall, recall_full,
        hit_rate, mrr`` in the order of ``users``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    users = _strings(users)
    return _per_user(_top_k(recs, users, k), _truth_sets(truth, users), users, k)


def _per_user(lists: _Lists, truth: _Truth, users: pa.Array, k: int) -> dict[str, pa.Table]:
    in_list, in_truth = _hits(lists, truth)
    variants = {"all": np.ones(len(truth.key), bool)}
    if truth.repeat is not None:
        variants |= {"repeat": truth.repeat, "new": ~truth.repeat}
    out = {}
    for name, mask in variants.items():
        hit = mask[in_truth]
        arrays = _variant(len(users), k, truth.user[mask], lists.user[in_list[hit]], lists.position[in_list[hit]])
        keep = arrays["n_relevant"] > 0
        cols = {schema.USER: users.filter(pa.array(keep))} | {c: a[keep] for c, a in arrays.items()}
        out[name] = pa.table(cols)
    return out


def _strings(values: Ids) -> pa.Array:
    """Ids as one string array (from a list, an array or a chunked array)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.cast(pa.string()) if isinstance(values, pa.Array) else pa.array(list(values), pa.string())


# ----------------------------------------------------------------------------- summaries


def bootstrap_ci(values: np.ndarray, n_boot: int = 200, seed: int = 0, level: float = 0.95) -> np.ndarray:
    """Percentile bootstrap intervals of column means, resampling rows (users).

    Parameters
    ----------
    values
        ``(n,)`` or ``(n, m)``: one row per user.
    n_boot
        Number of resamples ``B``.
    seed
        The resamples depend only on ``seed``, ``n`` and ``B``: two models scored on the
        same users get the same resamples, so their intervals are paired.
    level
        Coverage of the interval.

    Returns
    -------
    numpy.ndarray
        ``(m, 2)`` (or ``(2,)`` for 1-d input) of ``(low, high)``; NaN when ``n == 0``.
    """
    v = np.asarray(values, dtype=np.float64)
    flat = v.ndim == 1
    v = v[:, None] if flat else v
    n, m = v.shape
    if n == 0 or n_boot < 1:
        out = np.full((m, 2), np.nan)
        return out[0] if flat else out
    rng = np.random.default_rng(seed)
    means = np.empty((n_boot, m))
    block = max(1, _BLOCK // n)
    for start in range(0, n_boot, block):  # blocks of resamples, never a loop over users
        size = min(block, n_boot - start)
        idx = rng.integers(0, n, size=(size, n))
        # How often each user is drawn in each resample; the means are then one product.
        counts = np.bincount((idx + n * np.arange(size)[:, None]).ravel(), minlength=size * n)
        means[start : start + size] = counts.reshape(size, n) @ v / n
    alpha = (1.0 - level) / 2.0
    out = np.quantile(means, [alpha, 1.0 - alpha], axis=0).T
    return out[0] if flat else out


def coverage(recs: pa.Table, users: Ids, k: int, catalogue: Ids) -> tuple[float, int]:
    """Share of the catalogue in the top ``k`` of the given users, and the item count."""
    return _coverage(_top_k(recs, _strings(users), k), catalogue)


def _coverage(lists: _Lists, catalogue: Ids) -> tuple[float, int]:
    catalogue = pc.unique(_strings(catalogue))
    items = lists.items.take(pa.array(np.unique(lists.item)))
    n = int(pc.sum(pc.is_in(items, value_set=catalogue)).as_py() or 0)
    return (n / len(catalogue) if len(catalogue) else float("nan")), n


def summarise(table: pa.Table, n_boot: int = 200, seed: int = 0, level: float = 0.95) -> MetricSummary:
    """Means of a per-user metric table (:func:`per_user_metrics`) with bootstrap intervals."""
    return _summarise(table, n_boot, seed, level)


def _summarise(table: pa.Table, n_boot: int, seed: int, level: float) -> MetricSummary:
    values = np.column_stack([table[m].to_numpy() for m in METRICS]) if table.num_rows else np.zeros((0, len(METRICS)))
    mean = values.mean(axis=0) if len(values) else np.full(len(METRICS), np.nan)
    ci = {}
    if n_boot > 0:
        bounds = bootstrap_ci(values, n_boot, seed, level)
        ci = {m: (float(lo), float(hi)) for m, (lo, hi) in zip(METRICS, bounds)}
    return MetricSummary(table.num_rows, {m: float(x) for m, x in zip(METRICS, mean)}, ci)


def score(
    recs: pa.Table,
    truth: pa.Table,
    users: Ids,
    k: int,
    *,
    catalogue: Ids,
    bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> Scores:
    """Per-user metrics, their means with bootstrap intervals, and coverage.

    Parameters
    ----------
    recs, truth, users, k
        As in :func:`per_user_metrics`.
    catalogue
        Items that could be recommended (the distinct items of the training events).
    bootstrap, seed, level
        Resamples, seed and level of the intervals (:func:`bootstrap_ci`); 0 for none.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    users = _strings(users)
    lists = _top_k(recs, users, k)
    per_user = _per_user(lists, _truth_sets(truth, users), users, k)
    summary = {name: _summarise(table, bootstrap, seed, level) for name, table in per_user.items()}
    cov, n_items = _coverage(lists, catalogue)
    with_recs = len(np.unique(lists.user))
    return Scores(k, summary, per_user, cov, n_items, with_recs)
