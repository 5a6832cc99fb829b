"""blend_topk (sparse top-k with a popularity fill) against the dense reference it replaced."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from decayrec.recommend.topk import blend_topk, topk_rows


def dense_reference(codes, n_items, k, main, fill_key, exclude):
    """Every user's full row of scores, fill keys where unscored, -inf where excluded; then top k."""
    dense = np.full((codes.size, n_items), -np.inf) if fill_key is None else np.repeat(fill_key[None, :], codes.size, axis=0)
    scores = sp.coo_matrix(main(codes))
    hit = scores.data > 0
    dense[scores.row[hit], scores.col[hit]] = scores.data[hit]
    if exclude is not None:
        seen = sp.coo_matrix(exclude[codes])
        dense[seen.row, seen.col] = -np.inf
    return topk_rows(dense, k)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fill", [True, False])
@pytest.mark.parametrize("with_exclude", [True, False])
def test_blend_topk_matches_the_dense_reference(seed, fill, with_exclude):
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 40, 30, [1, 5, 12, 30, 50][seed % 5]
    scores = sp.random(n_users, n_items, density=0.15, random_state=seed, format="csr")
    scores.data = np.round(scores.data * 4) / 4 - 0.25  # ties, zeros and negatives among the stored entries
    order = rng.permutation(n_items)
    fill_key = np.empty(n_items)
    fill_key[order] = -1.0 - np.arange(1, n_items + 1) / (n_items + 1)
    exclude = sp.random(n_users, n_items, density=0.2, random_state=seed + 100, format="csr") if with_exclude else None
    codes = rng.permutation(n_users)[:25]
    main = lambda c: scores[c]  # noqa: E731
    got = blend_topk(codes, n_items, k, main, fill_key if fill else None, exclude)
    want = dense_reference(codes, n_items, k, main, fill_key if fill else None, exclude)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_blend_topk_with_no_users_or_no_items():
    main = lambda c: sp.csr_matrix((c.size, 5))  # noqa: E731
    for out in blend_topk(np.array([], dtype=np.int64), 5, 3, main, np.linspace(-1.1, -1.9, 5)):
        assert out.size == 0
    row, item, _key = blend_topk(np.array([0, 1]), 5, 3, main, np.linspace(-1.1, -1.9, 5))
    assert row.tolist() == [0, 0, 0, 1, 1, 1] and item.tolist() == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("density", [0.01, 0.5, 1.0])
def test_blend_topk_dense_and_sparse_paths_agree(density):
    rng = np.random.default_rng(3)
    n_users, n_items, k = 60, 25, 10
    scores = sp.random(n_users, n_items, density=density, random_state=7, format="csr")
    scores.data = np.round(scores.data * 8) / 8
    fill_key = -1.0 - rng.permutation(n_items) / (n_items + 1) - 1e-3
    exclude = sp.random(n_users, n_items, density=0.1, random_state=8, format="csr")
    codes = np.arange(n_users)
    got = blend_topk(codes, n_items, k, lambda c: scores[c], fill_key, exclude)
    want = dense_reference(codes, n_items, k, lambda c: scores[c], fill_key, exclude)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def sorted_topk_reference(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Sort every stored entry by (row, -value, column) and keep each row's first k."""
    coo = matrix.tocoo()
    order = np.lexsort((coo.col, -coo.data, coo.row))
    row = coo.row[order]
    first = np.r_[0, np.flatnonzero(row[1:] != row[:-1]) + 1]
    rank = np.arange(row.size) - np.repeat(first, np.diff(np.r_[first, row.size]))
    keep = order[rank < k]
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=matrix.shape)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_topk_sparse_rows_matches_sorting_every_entry(seed, k):
    from decayrec.recommend.topk import topk_sparse_rows

    rng = np.random.default_rng(seed)
    # Rows of very different lengths, with ties.
    dens = rng.choice([0.0, 0.02, 0.3, 1.0], size=50)
    mask = rng.random((50, 200)) < dens[:, None]
    values = np.round(rng.random((50, 200)) * 6) / 6 + 0.01
    matrix = sp.csr_matrix(np.where(mask, values, 0.0))
    got = topk_sparse_rows(matrix, k)
    want = sorted_topk_reference(matrix, k)
    assert (got != want).nnz == 0 and got.nnz == want.nnz
