"""Batch top-k over dense and sparse score matrices, and the blend of a model's scores with a fallback (nested in ``k``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import scipy.sparse as sp

__all__ = ["blend_topk", "rank_in_group", "topk_rows", "topk_sparse_rows"]
# Cells of one dense (users x items) score block: 4M float64 = 32 MB, a few copies at most.
_CHUNK_CELLS: Final = 1 << 22
# blend_topk goes dense when more than one cell in this many holds a score.
_DENSE_SHARE: Final = 16
# Users scored together by blend_topk (bounds the sparse score block of one call to main).
_USER_BLOCK: Final = 8192


# -- top-k ----------------------------------------------------------------------------------
def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest finite entries of each row, best first, ties broken by column.

    Returns ``(row, col, value)`` sorted by row then rank; rows with fewer finite entries
    give fewer. ``np.argpartition`` finds each row's k-th value; only entries at or above
    it are sorted.
    """
    m, n = scores.shape
    k = min(k, n)
    if m == 0 or k == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    if k < n:
        part = np.argpartition(scores, n - k, axis=1)[:, n - k :]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
        mask = scores >= kth[:, None]
        mask &= scores > -np.inf
    else:
        mask = scores > -np.inf
    row, col = np.nonzero(mask)
    value = scores[row, col]
    order = np.lexsort((col, -value, row))
    row, col, value = row[order], col[order], value[order]
    keep = rank_in_group(row) < k
    return row[keep], col[keep], value[keep]


def topk_sparse_rows(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's ``k`` largest stored entries (ties by column), as a CSR of the same shape.

    Rows with more than ``k`` entries are padded into dense blocks of rows of similar
    length (within a factor of two) and cut with ``np.argpartition`` (:func:`topk_rows`):
    linear in the stored entries, where sorting all of them was the ranker's bottleneck.
    """
    matrix = sp.csr_matrix(matrix, copy=True)
    if matrix.nnz == 0:
        return matrix
    matrix.sort_indices()  # position within a row = column order, for the ties
    length = np.diff(matrix.indptr)
    if length.max() <= k:
        return matrix
    keep = np.repeat(length <= k, length)
    long_rows = np.flatnonzero(length > k)
    bucket = np.ceil(np.log2(length[long_rows])).astype(np.int64)
    for b in np.unique(bucket):
        rows = long_rows[bucket == b]
        width = int(length[rows].max())
        step = max(1, _CHUNK_CELLS // width)
        for lo in range(0, rows.size, step):
            block = rows[lo : lo + step]
            pos = matrix.indptr[block][:, None] + np.arange(width)[None, :]
            inside = pos < matrix.indptr[block + 1][:, None]
            dense = np.where(inside, matrix.data[np.minimum(pos, matrix.nnz - 1)], -np.inf)
            r, c, _ = topk_rows(dense, k)
            keep[pos[r, c]] = True
    row = np.repeat(np.arange(matrix.shape[0]), length)
    out = sp.csr_matrix((matrix.data[keep], (row[keep], matrix.indices[keep])), shape=matrix.shape)
    out.sort_indices()
    return out


def rank_in_group(sorted_groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted array."""
    n = sorted_groups.size
    if n == 0:
        return np.empty(0, dtype=np.int64)
    start = np.ones(n, dtype=bool)
    np.not_equal(sorted_groups[1:], sorted_groups[:-1], out=start[1:])
    first = np.flatnonzero(start)
    return np.arange(n) - np.repeat(first, np.diff(np.append(first, n)))


def blend_topk(
    user_codes: np.ndarray,
    n_items: int,
    k: int,
    main: Callable[[np.ndarray], sp.spmatrix],
    fill_key: np.ndarray | None,
    exclude: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` per user of the model's positive scores, then fallback items, batched.

    ``main(codes)`` gives a sparse ``(len(codes), n_items)`` block of positive scores;
    ``fill_key`` (:meth:`Fallback.fill_key`, negative) orders the rest, or None to leave
    lists short; ``exclude`` (user x item, nonzero = never recommend) removes items.
    Sparse score blocks stay sparse: each user's stored scores are sorted, and the fill
    walks the fallback order past the user's scored and excluded items, so time and
    memory grow with the stored entries and ``k``, not with the catalogue (a dense users x
    items block was 20x slower on a 65,000-item shop). Nearly dense blocks (small
    catalogues) are scored as dense rows with ``np.argpartition``; both give the same lists.

    Returns ``(row, item, key)`` by row then rank: ``row`` indexes ``user_codes``; a
    positive ``key`` is a model score, a negative one marks a fallback item.
    """
    rows, items, keys = [], [], []
    for lo in range(0, user_codes.size, _USER_BLOCK):
        r, c, v = _blend_block(user_codes[lo : lo + _USER_BLOCK], n_items, k, main, fill_key, exclude)
        rows.append(r + lo)
        items.append(c)
        keys.append(v)
    if not rows:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    return np.concatenate(rows), np.concatenate(items), np.concatenate(keys)


def _blend_dense(
    user_codes: np.ndarray,
    n_items: int,
    k: int,
    scores: sp.csr_matrix,
    fill_key: np.ndarray | None,
    exclude: sp.csr_matrix | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`blend_topk` over dense rows (fill keys, then positive scores, then excluded as -inf)."""
    rows, items, keys = [], [], []
    step = max(1, _CHUNK_CELLS // max(n_items, 1))
    for lo in range(0, user_codes.size, step):
        block = scores[lo : lo + step].tocoo()
        size = min(step, user_codes.size - lo)
        if fill_key is None:
            dense = np.full((size, n_items), -np.inf)
        else:
            dense = np.repeat(fill_key[None, :], size, axis=0)
        hit = block.data > 0
        dense[block.row[hit], block.col[hit]] = block.data[hit]
        if exclude is not None:
            seen = sp.coo_matrix(exclude[user_codes[lo : lo + step]])
            dense[seen.row, seen.col] = -np.inf
        r, c, v = topk_rows(dense, k)
        rows.append(r + lo)
        items.append(c)
        keys.append(v)
    return np.concatenate(rows), np.concatenate(items), np.concatenate(keys)


def _blend_block(
    user_codes: np.ndarray,
    n_items: int,
    k: int,
    main: Callable[[np.ndarray], sp.spmatrix],
    fill_key: np.ndarray | None,
    exclude: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`blend_topk` for one block of users."""
    m = user_codes.size
    empty = np.empty(0, dtype=np.int64)
    k = min(k, n_items)
    if m == 0 or k == 0:
        return empty, empty, np.empty(0)
    scores = sp.csr_matrix(main(user_codes))
    scores.sum_duplicates()
    if scores.nnz * _DENSE_SHARE > m * n_items:  # nearly dense: argpartition over full rows is faster
        return _blend_dense(user_codes, n_items, k, scores, fill_key, exclude)
    row = np.repeat(np.arange(m, dtype=np.int64), np.diff(scores.indptr))
    col, val = scores.indices.astype(np.int64), scores.data.astype(np.float64)
    ok = val > 0
    blocked_row, blocked_col = row[ok], col[ok]
    if exclude is not None:
        seen = sp.csr_matrix(exclude[user_codes])
        seen.eliminate_zeros()
        s_row = np.repeat(np.arange(m, dtype=np.int64), np.diff(seen.indptr))
        s_col = seen.indices.astype(np.int64)
        drop = np.isin(row * n_items + col, s_row * n_items + s_col)
        ok &= ~drop
        blocked_row, blocked_col = np.concatenate([row[ok], s_row]), np.concatenate([col[ok], s_col])
    row, col, val = row[ok], col[ok], val[ok]
    order = np.lexsort((col, -val, row))
    order = order[rank_in_group(row[order]) < k]
    row, col, val = row[order], col[order], val[order]
    if fill_key is None:
        return row, col, val
    need = k - np.bincount(row, minlength=m)
    users = np.flatnonzero(need > 0)
    if users.size == 0:
        return row, col, val
    # Walk the fallback order: each user needs at most need + |blocked| of its first items.
    blocked_key = np.unique(blocked_row * n_items + blocked_col)
    n_blocked = np.bincount(blocked_key // n_items, minlength=m) if blocked_key.size else np.zeros(m, dtype=np.int64)
    fill_order = np.argsort(-fill_key, kind="stable")
    length = np.minimum(need[users] + n_blocked[users], n_items)
    f_row = np.repeat(users, length)
    f_pos = np.arange(f_row.size) - np.repeat(np.cumsum(length) - length, length)
    f_col = fill_order[f_pos].astype(np.int64)
    if blocked_key.size:
        f_key = f_row * n_items + f_col
        at = np.minimum(np.searchsorted(blocked_key, f_key), blocked_key.size - 1)
        free = blocked_key[at] != f_key
        f_row, f_col = f_row[free], f_col[free]
    take = rank_in_group(f_row) < need[f_row]
    f_row, f_col = f_row[take], f_col[take]
    row = np.concatenate([row, f_row])
    col = np.concatenate([col, f_col])
    val = np.concatenate([val, fill_key[f_col]])
    order = np.argsort(row, kind="stable")  # model rows first within a user, then the fill in order
    return row[order], col[order], val[order]
