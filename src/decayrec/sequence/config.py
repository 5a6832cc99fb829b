"""The settings of the sequence model, typed and checked in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from decayrec.errors import InputError

__all__ = ["SequenceConfig"]


@dataclass(frozen=True)
class SequenceConfig:
    """Architecture and training of :class:`~decayrec.sequence.SequenceRecommender`.

    Architecture (SASRec, Kang and McAuley 2018, made aware of time): ``blocks`` causal
    self-attention blocks of ``dim`` dimensions and ``heads`` heads over the user's last
    ``max_len`` events, each embedded as item + category + event type + position + the
    log-bucketed gap since the previous event; every head adds a learned bias per log-gap
    bucket between the two events it relates; the output is shifted by an embedding of the
    gap from the last event to the time of the prediction ("now"), then scored against the
    item embeddings (tied). ``architecture="gru"`` swaps the attention blocks for a GRU
    (an ablation).

    Training: cross-entropy over the whole catalogue when it has at most
    ``full_softmax_items`` items, else sampled softmax against ``negatives`` uniform
    negatives shared by a batch; Adam; early stopping on NDCG@20 over the events after a
    temporal validation cutoff (the ``1 - validation_share`` quantile of event times), then
    a refit on every event for the chosen number of epochs. ``budget_seconds`` bounds the
    whole fit: both phases stop early when they would run past it.
    """

    architecture: Literal["sasrec", "gru"] = "sasrec"
    max_len: int = 50
    dim: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    gap_buckets: int = 24
    batch_size: int = 64
    learning_rate: float = 2e-3
    max_epochs: int = 30
    patience: int = 3
    full_softmax_items: int = 20_000
    negatives: int = 400
    validation_share: float = 0.1
    max_validation_users: int = 2_000
    budget_seconds: float = 300.0
    seed: int = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        if self.architecture not in ("sasrec", "gru"):
            raise InputError(f"architecture must be 'sasrec' or 'gru', got {self.architecture!r}")
        for name in ("max_len", "dim", "blocks", "heads", "batch_size", "max_epochs", "patience", "negatives"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if self.dim % self.heads:
            raise InputError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if self.gap_buckets < 4:
            raise InputError(f"gap_buckets must be at least 4, got {self.gap_buckets!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if not 0.0 < self.validation_share < 0.5:
            raise InputError(f"validation_share must lie in (0, 0.5), got {self.validation_share!r}")
        for name in ("learning_rate", "budget_seconds"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SequenceConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"the sequence model's config has unknown settings {unknown}", "save it again with this version")
        return cls(**data)
