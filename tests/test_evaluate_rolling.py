"""evaluate_splits: one fresh fit per cutoff, pooled (cutoff, user) units, no peeking."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import numpy as np
import pyarrow.compute as pc
import pytest

from decayrec.errors import InputError
from decayrec.evaluate import evaluate, evaluate_splits, rolling_splits
from decayrec.recommend.baselines import DecayedPopularity, RepeatHistory
from decayrec.simulate import SimConfig, simulate


@pytest.fixture(scope="module")
def splits():
    events = simulate(SimConfig(n_users=150, n_items=80, n_categories=5, days=40, seed=2)).events
    return rolling_splits(events, n=3, horizon_days=3.0)


class Spy(RepeatHistory):
    """RepeatHistory that records the newest event it was fitted on and each fit time."""

    fits: ClassVar[list[tuple[datetime, datetime]]] = []

    def fit(self, events, now):
        Spy.fits.append((pc.max(events["timestamp"]).as_py(), now))
        return super().fit(events, now)


def test_pooled_means_are_over_cutoff_user_units(splits):
    res = evaluate_splits({"repeat": RepeatHistory, "pop": DecayedPopularity}, splits, k=10, bootstrap=30)
    assert res["protocol"]["splits"] == 3
    assert res["protocol"]["users_evaluated"] == sum(s.n_users for s in splits)
    assert [m["name"] for m in res["models"]] == ["repeat", "pop"]
    # The pooled mean is the users-weighted mean of the per-split means.
    singles = [evaluate({"repeat": RepeatHistory()}, split=s, k=10, bootstrap=0).models[0] for s in splits]
    weights = np.array([s.n_users for s in splits])
    want = np.average([m.scores.summary["all"].mean["ndcg"] for m in singles], weights=weights)
    got = res["models"][0]
    assert got["ndcg"] == pytest.approx(want, rel=1e-12)
    lo, hi = got["ci"]["ndcg"]
    assert lo <= got["ndcg"] <= hi
    assert got["repeat"]["users"] + got["new"]["users"] >= res["protocol"]["users_evaluated"]
    assert got["fit_seconds"] > 0 and got["recommend_seconds"] > 0


def test_one_fresh_fit_per_cutoff_on_its_own_past(splits):
    Spy.fits = []
    seen = []
    evaluate_splits({"spy": Spy}, splits, k=5, bootstrap=0, inspect=lambda name, model, split: seen.append((name, split.cutoff)))
    assert len(Spy.fits) == len(splits)
    for (newest, now), split in zip(Spy.fits, splits):
        assert now == split.cutoff
        assert (newest if newest.tzinfo else newest.replace(tzinfo=split.cutoff.tzinfo)) <= split.cutoff
    assert seen == [("spy", s.cutoff) for s in splits]


def test_no_splits_is_an_error():
    with pytest.raises(InputError, match="no splits"):
        evaluate_splits({"repeat": RepeatHistory}, [])
