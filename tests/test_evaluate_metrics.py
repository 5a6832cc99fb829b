"""Ranking metrics: hand-computed values, scikit-learn's NDCG, variants, coverage, bootstrap."""

from __future__ import annotations

from math import log2

import numpy as np
import pyarrow as pa
import pytest

from decayrec.evaluate import METRICS, bootstrap_ci, coverage, per_user_metrics, score


def recs_table(lists: dict[str, list[str]]) -> pa.Table:
    rows = [(u, item, r + 1) for u, items in lists.items() for r, item in enumerate(items)]
    users, items, ranks = (list(c) for c in zip(*rows)) if rows else ([], [], [])
    return pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "item_id": pa.array(items, pa.string()),
            "rank": pa.array(ranks, pa.int32()),
            "score": pa.array([0.0] * len(users)),
        }
    )


def truth_table(sets: dict[str, dict[str, bool]]) -> pa.Table:
    rows = [(u, i, rep) for u, items in sets.items() for i, rep in items.items()]
    users, items, repeat = (list(c) for c in zip(*rows))
    return pa.table({"user_id": users, "item_id": items, "repeat": pa.array(repeat, pa.bool_())})


def by_user(table: pa.Table) -> dict[str, dict]:
    return {row.pop("user_id"): row for row in table.to_pylist()}


# a: hits at places 1 and 3, two relevant. b: four relevant, k = 3, hits at 1 and 3.
# c: one relevant, hit at place 2. d: no recommendations at all.
RECS = recs_table({"a": ["x", "y", "z"], "b": ["q", "n", "r"], "c": ["n", "x"], "zz": ["x"]})
TRUTH = truth_table(
    {
        "a": {"x": True, "z": False},
        "b": {"p": True, "q": True, "r": False, "s": False},
        "c": {"x": False},
        "d": {"x": True},
    }
)
USERS = ["a", "b", "c", "d"]


def test_hand_computed_values():
    got = by_user(per_user_metrics(RECS, TRUTH, USERS, k=3)["all"])
    assert list(got) == USERS  # in the order given; the unasked "zz" is ignored
    a, b, c, d = (got[u] for u in USERS)
    assert a["ndcg"] == pytest.approx((1 + 1 / log2(4)) / (1 + 1 / log2(3)))
    assert (a["recall"], a["recall_full"], a["hit_rate"], a["mrr"]) == (1.0, 1.0, 1.0, 1.0)
    # Four relevant but k = 3: the ideal list fills three places.
    assert b["ndcg"] == pytest.approx((1 + 1 / log2(4)) / (1 + 1 / log2(3) + 1 / log2(4)))
    assert b["recall"] == pytest.approx(2 / 3) and b["recall_full"] == pytest.approx(2 / 4)
    assert b["n_relevant"] == 4 and b["n_hits"] == 2
    assert c["ndcg"] == pytest.approx(1 / log2(3)) and c["mrr"] == 0.5 and c["hit_rate"] == 1.0
    assert all(d[m] == 0.0 for m in METRICS)  # no list: zeros, still counted


def test_means_count_users_without_recommendations():
    s = score(RECS, TRUTH, USERS, 3, catalogue=["x", "y", "z", "q", "n", "r", "p", "s"], bootstrap=0)
    main = s.summary["all"]
    assert main.users == 4 and main.ci == {}
    assert main.mean["hit_rate"] == pytest.approx(3 / 4)
    assert main.mean["mrr"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert main.mean["recall"] == pytest.approx((1 + 2 / 3 + 1 + 0) / 4)
    assert s.users_with_recs == 3
    # Distinct items in the top 3 of evaluated users: x y z q n r (the unasked "zz" does not count).
    assert (s.coverage, s.coverage_items) == (pytest.approx(6 / 8), 6)


def test_repeat_and_new_variants():
    parts = per_user_metrics(RECS, TRUTH, USERS, k=3)
    repeat, new = by_user(parts["repeat"]), by_user(parts["new"])
    assert list(repeat) == ["a", "b", "d"] and list(new) == ["a", "b", "c"]
    assert repeat["a"]["ndcg"] == 1.0  # x at place 1
    assert new["a"]["ndcg"] == pytest.approx(1 / log2(4)) and new["a"]["mrr"] == pytest.approx(1 / 3)
    # b's repeat items {p, q}: q at place 1 of 2 -> ideal 1 + 1/log2(3).
    assert repeat["b"]["ndcg"] == pytest.approx(1 / (1 + 1 / log2(3)))
    assert repeat["b"]["recall"] == 0.5 and new["b"]["recall"] == 0.5  # r at place 3 of {r, s}
    s = score(RECS, TRUTH, USERS, 3, catalogue=["x"], bootstrap=0)
    assert (s.summary["repeat"].users, s.summary["new"].users) == (3, 3)


def test_list_is_ordered_by_rank_cut_at_k_and_deduplicated():
    recs = pa.table(
        {
            "user_id": ["a"] * 5,
            "item_id": ["z", "x", "x", "y", "w"],
            "rank": [3, 1, 2, 4, 5],  # x listed twice: its copy wastes place 2
        }
    )
    truth = truth_table({"a": {"y": False, "z": False, "w": False}})
    got = by_user(per_user_metrics(recs, truth, ["a"], k=4)["all"])["a"]
    assert got["n_hits"] == 2 and got["mrr"] == pytest.approx(1 / 3)  # z at 3, y at 4, w cut
    assert got["ndcg"] == pytest.approx((1 / log2(4) + 1 / log2(5)) / (1 + 1 / log2(3) + 1 / log2(4)))
    assert coverage(recs, ["a"], 4, ["x", "y", "z", "w"]) == (pytest.approx(3 / 4), 3)


def test_truth_without_repeat_flags_gives_only_all():
    truth = TRUTH.drop_columns(["repeat"])
    assert list(per_user_metrics(RECS, truth, USERS, 3)) == ["all"]


def test_agrees_with_scikit_learn_ndcg():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    n_users, n_items, k = 60, 40, 10
    items = np.array([f"i{j:02d}" for j in range(n_items)])
    relevance = (rng.random((n_users, n_items)) < rng.uniform(0.02, 0.4, (n_users, 1))).astype(int)
    relevance[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1  # everyone has truth
    scores = rng.random((n_users, n_items))  # distinct: no ties for sklearn to average
    # Our list is the top k of the full score row, so every truth item is in sklearn's input.
    top = np.argsort(-scores, axis=1)[:, :k]
    users = [f"u{i:02d}" for i in range(n_users)]
    recs = recs_table({u: list(items[top[i]]) for i, u in enumerate(users)})
    truth = truth_table({u: dict.fromkeys(items[relevance[i] > 0], False) for i, u in enumerate(users)})
    ours = per_user_metrics(recs, truth, users, k)["all"]["ndcg"].to_numpy()
    theirs = np.array([sk.ndcg_score(relevance[i : i + 1], scores[i : i + 1], k=k) for i in range(n_users)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    assert ours.mean() == pytest.approx(sk.ndcg_score(relevance, scores, k=k))


def test_bootstrap_is_seeded_percentile_of_resampled_means():
    rng = np.random.default_rng(1)
    values = rng.random((50, 2))
    got = bootstrap_ci(values, n_boot=300, seed=4, level=0.9)
    idx = np.random.default_rng(4).integers(0, 50, size=(300, 50))
    means = values[idx].mean(axis=1)
    np.testing.assert_allclose(got, np.quantile(means, [0.05, 0.95], axis=0).T)
    assert np.array_equal(got, bootstrap_ci(values, n_boot=300, seed=4, level=0.9))
    assert np.all(got[:, 0] <= values.mean(axis=0)) and np.all(values.mean(axis=0) <= got[:, 1])
    np.testing.assert_allclose(bootstrap_ci(np.full(9, 0.25)), [0.25, 0.25])
    assert np.isnan(bootstrap_ci(np.zeros(0))).all()


def test_bootstrap_blocks_match_one_draw(monkeypatch):
    from decayrec.evaluate import metrics

    values = np.random.default_rng(2).random(40)
    whole = bootstrap_ci(values, n_boot=200, seed=0)
    monkeypatch.setattr(metrics, "_BLOCK", 40 * 7)  # resamples drawn 7 at a time
    assert bootstrap_ci(values, n_boot=200, seed=0) == pytest.approx(whole)


def test_score_intervals_are_paired_across_models():
    catalogue = ["x", "y", "z"]
    one = score(RECS, TRUTH, USERS, 3, catalogue=catalogue, bootstrap=100, seed=5)
    two = score(recs_table({"a": ["x"]}), TRUTH, USERS, 3, catalogue=catalogue, bootstrap=100, seed=5)
    for s in (one, two):
        for part in s.summary.values():
            for m in METRICS:
                lo, hi = part.ci[m]
                assert lo <= part.mean[m] <= hi
    # Same users, same seed: the same resamples, so hit-rate bounds follow the same draws.
    for bound in (0, 1):
        assert one.summary["all"].ci["hit_rate"][bound] >= two.summary["all"].ci["hit_rate"][bound]


def test_k_must_be_positive():
    with pytest.raises(ValueError):
        per_user_metrics(RECS, TRUTH, USERS, 0)
