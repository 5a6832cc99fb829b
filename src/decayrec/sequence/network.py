"""The network: a time-aware SASRec encoder (or a GRU, the ablation) with tied item embeddings.

Needs torch (the ``torch`` extra); only :mod:`decayrec.sequence.train` and
:mod:`decayrec.sequence.recommender` import this module, and only when a model is fitted
or loaded.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from decayrec.schema import EVENT_TYPES
from decayrec.sequence.config import SequenceConfig

__all__ = ["SequenceNet"]


def _bucket(minutes: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """The log2 gap buckets of :func:`decayrec.sequence.data.gap_bucket`, in torch."""
    return torch.clamp(2 + torch.floor(torch.log2(1.0 + minutes.clamp_min(0.0))).long(), 2, n_buckets - 1)


class _Block(nn.Module):
    """Pre-norm causal self-attention and a feed-forward layer, each with a residual."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)
        self.p = dropout

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.ff(self.norm2(x)))


class SequenceNet(nn.Module):
    """Item, category, event type, position and gap embeddings -> encoder -> "now" gap shift -> item scores.

    An item's score is the dot product of the user vector with its embedding plus a
    learned repeat term, ``w * log(1 + sum over the user's earlier events e on the item of
    c[type(e)] * 2 ** (-age(e) / h))``, the age counted to the time predicted for: the
    decay-model form of "people come back to what they engaged with lately", with the type
    weights ``c``, the half-life ``h`` and ``w`` learned with the rest.
    ``item_cat`` maps model item codes (0 pads) to category codes (0: none).
    """

    item_cat: torch.Tensor

    def __init__(self, n_items: int, n_categories: int, item_cat: torch.Tensor, config: SequenceConfig):
        super().__init__()
        c = config
        self.config = c
        d = c.dim
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.category = nn.Embedding(n_categories + 1, d, padding_idx=0)
        self.etype = nn.Embedding(len(EVENT_TYPES) + 1, d, padding_idx=0)
        self.gap = nn.Embedding(c.gap_buckets, d, padding_idx=0)
        self.position = nn.Embedding(c.max_len, d)
        self.query_gap = nn.Embedding(c.gap_buckets, d, padding_idx=0)
        self.register_buffer("item_cat", item_cat.long(), persistent=True)
        self.drop = nn.Dropout(c.dropout)
        if c.architecture == "sasrec":
            self.gap_bias = nn.Embedding(c.gap_buckets, c.heads)
            nn.init.zeros_(self.gap_bias.weight)
            self.blocks = nn.ModuleList(_Block(d, c.heads, c.dropout) for _ in range(c.blocks))
        else:
            self.gru = nn.GRU(d, d, num_layers=c.blocks, batch_first=True, dropout=c.dropout if c.blocks > 1 else 0.0)
        self.norm = nn.LayerNorm(d)
        self.repeat_type = nn.Parameter(torch.zeros(len(EVENT_TYPES) + 1))
        self.repeat_log_half_life = nn.Parameter(torch.tensor(math.log(7.0)))
        self.repeat_weight = nn.Parameter(torch.tensor(0.5))
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        nn.init.normal_(self.item.weight, std=d**-0.5)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def encode(self, item: torch.Tensor, etype: torch.Tensor, gap: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(rows, max_len, dim)``: position ``j`` has read the events up to ``j``."""
        n = item.shape[1]
        pos = torch.arange(n, device=item.device)
        x = (
            self.item(item) * math.sqrt(self.config.dim)
            + self.category(self.item_cat[item])
            + self.etype(etype)
            + self.gap(gap)
            + self.position(pos)[None]
        )
        x = self.drop(x)
        if self.config.architecture == "gru":
            h, _ = self.gru(x)
            return self.norm(h)
        pad = item == 0
        minutes = (time[:, :, None] - time[:, None, :]).abs() * 1440.0
        bias = self.gap_bias(_bucket(minutes, self.config.gap_buckets)).permute(0, 3, 1, 2)  # rows, heads, n, n
        blocked = torch.triu(torch.ones(n, n, dtype=torch.bool, device=item.device), diagonal=1)[None] | pad[:, None, :]
        blocked = blocked & ~torch.eye(n, dtype=torch.bool, device=item.device)[None]  # a row always sees itself
        bias = bias.masked_fill(blocked[:, None], float("-inf"))
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x)

    def query(self, hidden: torch.Tensor, query_gap: torch.Tensor) -> torch.Tensor:
        """The user vector at each position, shifted by how long ago its last event is at the time asked."""
        return hidden + self.head(hidden + self.query_gap(query_gap))

    def recency(self, item: torch.Tensor, etype: torch.Tensor, time: torch.Tensor, qtime: torch.Tensor) -> torch.Tensor:
        """``(rows, n, n)``: the decayed weight of event ``j`` as seen from position ``i`` (0 unless ``j <= i``)."""
        n = item.shape[1]
        age = (qtime[:, :, None] - time[:, None, :]).clamp_min(0.0)
        half_life = self.repeat_log_half_life.exp()
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool, device=item.device))[None] & (item > 0)[:, None, :]
        weight = F.softplus(self.repeat_type)[etype][:, None, :] * torch.exp2(-age / half_life)
        return weight * causal

    def repeat_bonus(self, history: torch.Tensor, weight: torch.Tensor, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse repeat terms of rows with ``history`` items and ``weight`` (both ``(m, n)``):
        ``(flat index row * n_items + item - 1, bonus)`` of every (row, item) with history."""
        m, n = history.shape
        ok = (history > 0) & (weight > 0)
        row = torch.arange(m, device=history.device)[:, None].expand(m, n)[ok]
        key = row * n_items + history[ok] - 1
        uniq, inv = torch.unique(key, return_inverse=True)
        total = torch.zeros(uniq.numel(), dtype=weight.dtype, device=weight.device).index_add(0, inv, weight[ok])
        return uniq, F.softplus(self.repeat_weight) * torch.log1p(total)

    def all_scores(self, vectors: torch.Tensor, history: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Scores of every item (column ``j`` = item code ``j + 1``) for rows with their history and its weights."""
        logits = vectors @ self.item.weight[1:].T
        n_items = logits.shape[1]
        key, bonus = self.repeat_bonus(history, weight, n_items)
        return logits.flatten().index_add(0, key, bonus).view_as(logits)

    def sampled_scores(
        self,
        vectors: torch.Tensor,
        target: torch.Tensor,
        negatives: torch.Tensor,
        history: torch.Tensor,
        weight: torch.Tensor,
        batch_weight: torch.Tensor,
        batch_items: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """``(m, 1 + K)`` scores of each row's target and of the shared negatives (sampled softmax).

        The negatives' repeat terms come per batch row (``batch_weight``: ``(B, n, n)``,
        ``batch_items``: ``(B, n)``), then are cut to the ``mask``ed positions.
        """
        w = F.softplus(self.repeat_weight)
        pos = (vectors * self.item.weight[target]).sum(-1) + w * torch.log1p((weight * (history == target[:, None])).sum(-1))
        same = (batch_items[:, :, None] == negatives[None, None, :]).to(batch_weight.dtype)
        neg_bonus = w * torch.log1p(torch.einsum("bij,bjk->bik", batch_weight, same)[mask])
        neg = vectors @ self.item.weight[negatives].T + neg_bonus
        neg = neg.masked_fill(negatives[None, :] == target[:, None], float("-inf"))
        return torch.cat([pos[:, None], neg], dim=1)
