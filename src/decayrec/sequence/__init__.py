"""A neural sequence interest model: a time-aware SASRec (``torch`` extra).

- :class:`SequenceConfig` (:mod:`.config`): architecture and training settings.
- :mod:`.data`: behaviour sequences as padded arrays (numpy only).
- :mod:`.network`: the torch network (SASRec with gap embeddings and a per-gap attention
  bias; a GRU variant as the ablation).
- :mod:`.train`: early stopping on a temporal validation window, then the refit.
- :class:`SequenceRecommender` (:mod:`.recommender`): the ``"sequence"`` model, the main
  model's ``sequence`` candidate source, user interest vectors and their drift; saved as
  safetensors plus JSON.

Importing this package needs no torch; fitting or loading a model does, and says so in
one line when it is missing.
"""

from decayrec.sequence.config import SequenceConfig
from decayrec.sequence.recommender import SequenceRecommender

__all__ = ["SequenceConfig", "SequenceRecommender"]
