"""Recommenders: baselines, peers, candidate sources, the ranker; one contract in base.py.

Build any of them by name with :func:`decayrec.recommend.registry.make_model`.
"""

from decayrec.recommend.base import REC_COLUMNS, REC_SCHEMA, Recommender
from decayrec.recommend.baselines import CoVisitation, DecayedPopularity, Popularity, RepeatHistory
from decayrec.recommend.registry import MODEL_NAMES, make_model

__all__ = [
    "MODEL_NAMES",
    "REC_COLUMNS",
    "REC_SCHEMA",
    "CoVisitation",
    "DecayRanker",
    "DecayedPopularity",
    "Popularity",
    "Recommender",
    "RepeatHistory",
    "make_model",
]


def __getattr__(name: str):
    """``DecayRanker`` on first use: it needs the ``ranker`` extra (LightGBM), the baselines do not."""
    if name == "DecayRanker":
        from decayrec.recommend.ranker import DecayRanker

        return DecayRanker
    raise AttributeError(f"module 'decayrec.recommend' has no attribute {name!r}")
