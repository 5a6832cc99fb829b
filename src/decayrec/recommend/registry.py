"""Models by name, for the CLI, the benchmark and the service: the baselines, the peers, and decayrec."""

from __future__ import annotations

from typing import Any

from decayrec.recommend.base import Recommender
from decayrec.recommend.baselines import MODELS as BASELINES
from decayrec.recommend.baselines import make_model as make_baseline

MAIN = "decayrec"
MODEL_NAMES = (MAIN, *BASELINES)


def make_model(name: str, **params: Any) -> Recommender:
    """The model registered as ``name``, with ``params`` or its defaults."""
    from decayrec.errors import InputError

    if name not in MODEL_NAMES:
        raise InputError(f"no model named {name!r}", f"choose one of {', '.join(MODEL_NAMES)}")
    if name == MAIN:
        from decayrec.recommend.ranker import DecayRanker

        try:
            return DecayRanker(**params)
        except TypeError as exc:
            raise InputError(f"bad parameters for model {name!r} ({exc})", "see DecayRanker's docstring") from None
    return make_baseline(name, **params)
