"""Models by name, for the CLI, the benchmark and the service: the baselines, the peers, the sequence model and decayrec.

The peers (implicit's models), the sequence model (torch) and decayrec are imported only when built: they need extras.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from decayrec.errors import InputError
from decayrec.recommend.base import Recommender
from decayrec.recommend.baselines import CoVisitation, DecayedPopularity, Popularity, RepeatHistory, UserKNN

__all__ = ["BASELINES", "MAIN", "MODEL_NAMES", "make_model"]

MAIN = "decayrec"


def _peer(class_name: str) -> Callable[..., Recommender]:
    """A factory that imports :mod:`decayrec.recommend.peers` only when called (implicit is an extra)."""

    def build(**params: Any) -> Recommender:
        from decayrec.recommend import peers

        return getattr(peers, class_name)(**params)

    build.__name__ = build.__qualname__ = class_name
    build.__doc__ = f"Build :class:`decayrec.recommend.peers.{class_name}` (needs the 'peers' extra)."
    return build


def _sequence(**params: Any) -> Recommender:
    """Build :class:`decayrec.sequence.SequenceRecommender` (needs the 'torch' extra: checked here, before any work)."""
    from decayrec.errors import require

    require("torch", "torch")
    from decayrec.sequence import SequenceRecommender

    return SequenceRecommender(**params)


BASELINES: Final[Mapping[str, Callable[..., Recommender]]] = {
    "popularity": Popularity,
    "decayed_popularity": DecayedPopularity,
    "repeat": RepeatHistory,
    "covisit": CoVisitation,
    "userknn": UserKNN,
    "als": _peer("ImplicitALS"),
    "bpr": _peer("ImplicitBPR"),
    "itemknn": _peer("ImplicitItemKNN"),
    "sequence": _sequence,
}


def _make_baseline(name: str, **params: Any) -> Recommender:
    """A baseline or peer built with ``params`` (its defaults otherwise)."""
    try:
        factory = BASELINES[name]
    except KeyError:
        raise InputError(f"no model named {name!r}", f"choose one of {sorted(BASELINES)}") from None
    try:
        return factory(**params)
    except TypeError as exc:
        raise InputError(f"bad parameters for model {name!r} ({exc})", "see the model's docstring for its parameters") from None


MODEL_NAMES = (MAIN, *BASELINES)


def make_model(name: str, **params: Any) -> Recommender:
    """The model registered as ``name``, with ``params`` or its defaults."""
    if name not in MODEL_NAMES:
        raise InputError(f"no model named {name!r}", f"choose one of {', '.join(MODEL_NAMES)}")
    if name == MAIN:
        from decayrec.recommend.ranker import DecayRanker

        try:
            return DecayRanker(**params)
        except TypeError as exc:
            raise InputError(f"bad parameters for model {name!r} ({exc})", "see DecayRanker's docstring") from None
    return _make_baseline(name, **params)
