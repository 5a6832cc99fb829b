"""Recommenders: baselines, peers, candidate sources, the ranker; one contract in base.py.

Build any of them by name with :func:`decayrec.recommend.registry.make_model`.
"""

from decayrec.recommend.base import REC_COLUMNS, REC_SCHEMA, Recommender
from decayrec.recommend.baselines import CoVisitation, DecayedPopularity, Popularity, RepeatHistory
from decayrec.recommend.registry import MODEL_NAMES, make_model

__all__ = [
    "REC_COLUMNS",
    "REC_SCHEMA",
    "CoVisitation",
    "DecayedPopularity",
    "MODEL_NAMES",
    "Popularity",
    "Recommender",
    "RepeatHistory",
    "make_model",
]
