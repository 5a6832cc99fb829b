"""Training the sequence network: early stopping on a temporal validation window, then a refit on everything.

Pure of I/O: arrays in, a trained :class:`~decayrec.sequence.network.SequenceNet` and a
report out. Seeded (torch and numpy), so one machine gives one result; a wall-clock budget
bounds the work and the report says when it cut an epoch count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from decayrec.recommend.training import group_ndcg
from decayrec.sequence.config import SequenceConfig
from decayrec.sequence.data import Batch, TrainingRows
from decayrec.sequence.network import SequenceNet

__all__ = ["Report", "Truth", "fit_network", "tensors", "top_items", "user_vectors"]

K_VALIDATION = 20
PREDICT_ROWS = 512


@dataclass
class Report:
    """What training did: the epochs chosen and run, the validation curve, the times."""

    epochs: int = 0
    best_epoch: int = 0
    validation_ndcg: list[float] = field(default_factory=list)
    validation_users: int = 0
    loss: str = ""
    train_rows: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "validation_ndcg": [round(v, 6) for v in self.validation_ndcg],
            "validation_users": self.validation_users,
            "loss": self.loss,
            "train_rows": self.train_rows,
            "seconds": round(self.seconds, 2),
            "notes": list(self.notes),
        }


@contextmanager
def threads(n: int):
    """torch's intra-op threads set for the block, then restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tensors(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(batch.item),
        torch.from_numpy(batch.etype),
        torch.from_numpy(batch.gap),
        torch.from_numpy(batch.time),
    )


def _loss(net: SequenceNet, batch: Batch, n_items: int, config: SequenceConfig, gen: torch.Generator) -> torch.Tensor:
    assert batch.target is not None
    item, etype, gap, when = tensors(batch)
    hidden = net.encode(item, etype, gap, when)
    target = torch.from_numpy(batch.target)
    mask = target > 0
    vec = net.query(hidden, torch.from_numpy(batch.query))[mask]
    tgt = target[mask]
    recency = net.recency(item, etype, when, torch.from_numpy(batch.qtime))
    n = item.shape[1]
    history = item[:, None, :].expand(-1, n, -1)[mask]
    weight = recency[mask]
    if n_items <= config.full_softmax_items:
        return F.cross_entropy(net.all_scores(vec, history, weight), tgt - 1)
    neg = torch.randint(1, n_items + 1, (config.negatives,), generator=gen)
    logits = net.sampled_scores(vec, tgt, neg, history, weight, recency, item, mask)
    return F.cross_entropy(logits, torch.zeros(tgt.size(0), dtype=torch.long))


@torch.no_grad()
def user_vectors(net: SequenceNet, batch: Batch) -> np.ndarray:
    """Each row's user vector at its last column (the prediction for the time queried)."""
    net.eval()
    out = []
    for lo in range(0, len(batch), PREDICT_ROWS):
        part = batch.take(np.arange(lo, min(lo + PREDICT_ROWS, len(batch))))
        hidden = net.encode(*tensors(part))[:, -1]
        out.append(net.query(hidden, torch.from_numpy(part.query[:, -1])).numpy())
    return np.concatenate(out) if out else np.zeros((0, net.config.dim), dtype=np.float32)


@torch.no_grad()
def top_items(net: SequenceNet, batch: Batch, n: int, banned: Callable[[int, int], Any] | None = None):
    """``(row, item code >= 1, probability)`` of each row's ``n`` best items at its last column, by row then rank.

    Probabilities are the softmax over the whole catalogue. ``banned(lo, hi)`` may give a
    boolean ``(hi - lo, n_items)`` mask of items each row must not get.
    """
    net.eval()
    rows, items, probs = [], [], []
    n = min(n, net.item.weight.shape[0] - 1)
    for lo in range(0, len(batch), PREDICT_ROWS):
        hi = min(lo + PREDICT_ROWS, len(batch))
        part = batch.take(np.arange(lo, hi))
        item, etype, gap, when = tensors(part)
        vec = net.query(net.encode(item, etype, gap, when)[:, -1], torch.from_numpy(part.query[:, -1]))
        weight = net.recency(item, etype, when, torch.from_numpy(part.qtime))[:, -1]
        logits = net.all_scores(vec, item, weight)
        logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        if banned is not None:
            mask = banned(lo, hi)
            if mask is not None:
                logp = logp.masked_fill(torch.from_numpy(np.asarray(mask)), float("-inf"))
        val, idx = torch.topk(logp, n, dim=1)
        ok = torch.isfinite(val)
        r = torch.arange(lo, hi)[:, None].expand_as(idx)
        rows.append(r[ok].numpy())
        items.append(idx[ok].numpy() + 1)
        probs.append(val[ok].exp().numpy())
    if not rows:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    return np.concatenate(rows).astype(np.int64), np.concatenate(items).astype(np.int64), np.concatenate(probs).astype(np.float64)


@dataclass(frozen=True)
class Truth:
    """What each validation row did after the cutoff: distinct ``(row, item code)`` pairs as sorted keys."""

    keys: np.ndarray
    n_items: int
    n_truth: np.ndarray

    @classmethod
    def build(cls, row: np.ndarray, item: np.ndarray, n_rows: int, n_items: int) -> Truth:
        keys = np.unique(row.astype(np.int64) * (n_items + 1) + item)
        return cls(keys, n_items, np.bincount(keys // (n_items + 1), minlength=n_rows))

    def ndcg(self, row: np.ndarray, item: np.ndarray, score: np.ndarray, k: int = K_VALIDATION) -> float:
        """Mean NDCG@k of ranked ``(row, item, score)`` lists (:func:`~decayrec.recommend.training.group_ndcg`)."""
        hit = np.isin(row * (self.n_items + 1) + item, self.keys, assume_unique=False)
        return group_ndcg(row, item, score, hit, self.n_truth, k)


def _epoch(net, opt, rows: TrainingRows, n_items, config, rng, gen, deadline: float) -> tuple[float, bool]:
    """One pass over the rows in a seeded order; the mean loss, and whether the deadline cut it short."""
    net.train()
    order = rng.permutation(len(rows.batch))
    total, seen = 0.0, 0
    for lo in range(0, order.size, config.batch_size):
        if time.perf_counter() > deadline:
            return total / max(seen, 1), True
        part = rows.batch.take(order[lo : lo + config.batch_size])
        loss = _loss(net, part, n_items, config, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        total += float(loss.detach()) * len(part)
        seen += len(part)
    return total / max(seen, 1), False


def _new(n_items: int, n_categories: int, item_cat: np.ndarray, config: SequenceConfig):
    torch.manual_seed(config.seed)
    net = SequenceNet(n_items, n_categories, torch.from_numpy(item_cat), config)
    return net, torch.optim.Adam(net.parameters(), lr=config.learning_rate)


def fit_network(
    train: TrainingRows,
    full: TrainingRows,
    validation: tuple[Batch, Truth] | None,
    n_items: int,
    n_categories: int,
    item_cat: np.ndarray,
    config: SequenceConfig,
    log: Callable[[str], None] = lambda line: None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[SequenceNet, Report]:
    """Early stopping on ``validation`` (rows as of the cutoff, and what each did after it) with ``train``,
    then a fresh network fitted on ``full`` for the best epoch count.

    Without validation rows the network trains on ``full`` for ``min(10, max_epochs)`` epochs.
    """
    c = config
    report = Report(loss="full softmax" if n_items <= c.full_softmax_items else f"sampled softmax ({c.negatives} negatives)")
    started = time.perf_counter()
    deadline = started + c.budget_seconds
    rng = np.random.default_rng(c.seed)
    gen = torch.Generator().manual_seed(c.seed)
    with threads(c.num_threads):
        epochs = min(10, c.max_epochs)
        if validation is not None and len(train.batch):
            vbatch, truth = validation
            report.validation_users = len(vbatch)
            net, opt = _new(n_items, n_categories, item_cat, c)
            best, since = -np.inf, 0
            # The budget is shared in proportion to the rows each phase trains on.
            half = started + c.budget_seconds * len(train.batch) / max(len(train.batch) + len(full.batch), 1)
            for epoch in range(1, c.max_epochs + 1):
                t = time.perf_counter()
                loss, cut = _epoch(net, opt, train, n_items, c, rng, gen, half)
                score = truth.ndcg(*top_items(net, vbatch, K_VALIDATION))
                report.validation_ndcg.append(score)
                t_epoch = time.perf_counter() - t
                log(f"sequence: epoch {epoch} loss {loss:.4f} validation NDCG@{K_VALIDATION} {score:.4f} ({t_epoch:.1f} s)")
                if progress is not None:
                    progress("validate", epoch, c.max_epochs)
                if score > best:
                    best, since, report.best_epoch = score, 0, epoch
                else:
                    since += 1
                if cut:
                    report.notes.append(f"validation stopped by the time budget after {epoch} epoch(s)")
                    break
                if since >= c.patience:
                    break
            epochs = max(report.best_epoch, 1)
        else:
            report.notes.append(f"no users to validate on: trained for {epochs} epochs")
        net, opt = _new(n_items, n_categories, item_cat, c)
        report.train_rows = len(full.batch)
        for epoch in range(1, epochs + 1):
            loss, cut = _epoch(net, opt, full, n_items, c, rng, gen, deadline)
            report.epochs = epoch
            log(f"sequence: refit epoch {epoch}/{epochs} loss {loss:.4f}")
            if progress is not None:
                progress("fit", epoch, epochs)
            if cut:
                report.notes.append(f"the refit was stopped by the time budget in epoch {epoch} of {epochs}")
                break
    net.eval()
    report.seconds = time.perf_counter() - started
    return net, report
