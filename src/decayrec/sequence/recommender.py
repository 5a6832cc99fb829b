"""The sequence model as a recommender, a candidate source for the main model, and a user vector.

:class:`SequenceRecommender` follows :mod:`decayrec.recommend.base`. ``fit(events, now)``
trains the time-aware SASRec network of :mod:`decayrec.sequence.network` on every user's
event sequence at or before ``now`` (early stopping on the last tenth of that time, then
a refit on all of it); ``recommend(users, k, now)`` reads each user's last events and how
long ago the last one was at ``now``, and ranks the catalogue. :meth:`propose` does the same
for the user codes of the events served (the main model's candidate source, at its cutoffs:
:meth:`at`); :meth:`vectors` and :meth:`drift` give each user's learned interest vector and
how far it moved between two times. Saved as safetensors weights plus a JSON document.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from decayrec import schema
from decayrec.decay.ids import IdMap
from decayrec.decay.kernels import to_days
from decayrec.decay.strength import as_utc
from decayrec.errors import InputError, require
from decayrec.recommend.base import BaseRecommender
from decayrec.recommend.fallback import popularity
from decayrec.recommend.features import item_categories
from decayrec.recommend.interactions import Interactions, interactions
from decayrec.recommend.output import personal_table
from decayrec.recommend.params import COLD_START_HALF_LIFE_DAYS
from decayrec.recommend.reasons import join_text
from decayrec.sequence.config import SequenceConfig
from decayrec.sequence.data import Batch, last_events, training_rows

if TYPE_CHECKING:  # pragma: no cover
    from decayrec.sequence.train import Truth
from decayrec.timeparse import iso, parse_time

__all__ = ["FORMAT", "VERSION", "SequenceRecommender"]

FORMAT: Final = "decayrec.sequence"
VERSION: Final = 1
WEIGHTS: Final = "weights.safetensors"
DOCUMENT: Final = "model.json"


def _torch():
    return require("torch", "torch")


class SequenceRecommender(BaseRecommender):
    """A time-aware SASRec over each user's last events (the ``"sequence"`` model; needs the ``torch`` extra).

    Parameters
    ----------
    config
        Architecture and training (:class:`~decayrec.sequence.SequenceConfig`); its fields
        may also be given as keywords (``SequenceRecommender(budget_seconds=60)``).
    exclude_seen
        Never recommend an item the user has touched.
    log
        Called with a line per epoch.
    progress
        Called as ``progress(phase, epoch, epochs)`` after each epoch (the CLI's bar).
    """

    name = "sequence"

    def __init__(
        self,
        config: SequenceConfig | None = None,
        exclude_seen: bool = False,
        log: Callable[[str], None] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        **settings: Any,
    ):
        try:
            self.config = SequenceConfig(**((config.to_json() if config else {}) | settings))
        except TypeError as exc:
            raise InputError(f"bad settings for the sequence model ({exc})", "see SequenceConfig for its fields") from None
        self.exclude_seen = exclude_seen
        self.log = log
        self.progress = progress

    def __repr__(self) -> str:
        return f"SequenceRecommender(config={self.config!r}, exclude_seen={self.exclude_seen!r})"

    # -- fitting -------------------------------------------------------------------------
    def fit(self, events: pa.Table, now: datetime) -> SequenceRecommender:
        """Train on the events at or before ``now`` (later rows are dropped unread)."""
        _torch()
        from decayrec.sequence.train import fit_network

        now = as_utc(now)
        ix = interactions(events, now, None)
        if ix.user.size < 2:
            raise InputError("the sequence model needs at least 2 events at or before the fit time", "give more events")
        c = self.config
        self.vocab_ = ix.items
        self.trained_at_ = ix.now
        self.categories_, item_cat = _categories(events, now, ix)
        self.item_cat_ = np.r_[0, item_cat].astype(np.int64)
        self._attach(ix)
        user, item, etype, t = self._codes(ix)
        cut = float(np.quantile(t, 1.0 - c.validation_share))
        early = t <= cut
        train = training_rows(user[early], item[early], etype[early], t[early], c.max_len, c.gap_buckets)
        full = training_rows(user, item, etype, t, c.max_len, c.gap_buckets)
        validation = self._validation(user, item, etype, t, early, cut)
        self.net_, report = fit_network(
            train,
            full,
            validation,
            len(self.vocab_),
            len(self.categories_),
            self.item_cat_,
            c,
            log=self.log or (lambda line: None),
            progress=self.progress,
        )
        self.report_ = report.to_json() | {"validation_cutoff_days": round(cut, 4)}
        return self

    def fit_interactions(self, ix: Interactions):
        raise InputError("the sequence model fits on events (it reads their categories)", "call fit(events, now)")

    def _validation(self, user, item, etype, t, early, cut) -> tuple[Batch, Truth] | None:
        """Rows as of the validation cutoff for (a seeded sample of) the users active on both sides, and what they did next."""
        from decayrec.sequence.train import Truth

        c = self.config
        users = np.intersect1d(np.unique(user[early]), user[~early])
        if users.size < 20:
            return None
        if users.size > c.max_validation_users:
            users = np.sort(np.random.default_rng([c.seed, 1]).choice(users, c.max_validation_users, replace=False))
        batch = last_events(user[early], item[early], etype[early], t[early], users, cut, c.max_len, c.gap_buckets)
        late = ~early & np.isin(user, users)
        return batch, Truth.build(np.searchsorted(users, user[late]), item[late], users.size, len(self.vocab_))

    def _attach(self, ix: Interactions) -> None:
        """Keep what serving needs: the fit time, the id maps, each user's events, the fallback."""
        self._remember(ix)
        self.ix_ = ix
        self.history_ = ix.history
        self.fallback_ = popularity(ix, COLD_START_HALF_LIFE_DAYS)
        self.seen_ = self.history_.seen(ix.n_users, ix.n_items) if self.exclude_seen else None
        order = np.lexsort((ix.time, ix.user))
        self.last_item_ = np.full(ix.n_users, -1, dtype=np.int64)
        self.last_item_[ix.user[order]] = ix.item[order]

    def _codes(self, ix: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``ix``'s events in model codes (items the model does not know are dropped)."""
        code = self.vocab_.encode(ix.items.ids) + 1  # 0: unknown to the model
        item = code[ix.item] if ix.item.size else np.empty(0, dtype=np.int64)
        keep = item > 0
        return ix.user[keep], item[keep].astype(np.int64), ix.etype[keep].astype(np.int64) + 1, ix.time[keep]

    def attach(self, events: pa.Table, now: datetime) -> SequenceRecommender:
        """Read the users' histories as of ``now`` without training (for a loaded model)."""
        self._net()
        now = as_utc(now)
        self._check_time(now)
        self._attach(interactions(events, now, None))
        return self

    def _net(self):
        if not hasattr(self, "net_"):
            raise InputError("the sequence model is not fitted", "call fit(events, now), or load(path) then attach(events, now)")
        return self.net_

    # -- scoring -------------------------------------------------------------------------
    def _vectors(self, ix: Interactions, users: np.ndarray, elapsed: float) -> np.ndarray:
        from decayrec.sequence.train import threads, user_vectors

        c = self.config
        user, item, etype, t = self._codes(ix)
        batch = last_events(user, item, etype, t, users, elapsed, c.max_len, c.gap_buckets)
        with threads(c.num_threads):
            return user_vectors(self._net(), batch)

    def _top(self, ix: Interactions, users: np.ndarray, n: int, elapsed: float, exclude: sp.csr_matrix | None):
        """``(row, item code in ix, probability)`` of the ``n`` best items for user codes of ``ix``."""
        from decayrec.sequence.train import threads, top_items

        to_ix = np.full(len(self.vocab_) + 1, -1, dtype=np.int64)
        code = self.vocab_.encode(ix.items.ids) + 1
        known = code > 0
        to_ix[code[known]] = np.flatnonzero(known)
        c = self.config
        user, item, etype, t = self._codes(ix)
        batch = last_events(user, item, etype, t, users, elapsed, c.max_len, c.gap_buckets)
        banned = None
        if exclude is not None:
            to_model = np.where(known, code, 0)
            block = exclude[users]

            def banned(lo: int, hi: int) -> np.ndarray:
                mask = np.zeros((hi - lo, len(self.vocab_) + 1), dtype=bool)
                part = sp.coo_matrix(block[lo:hi])
                mask[part.row, to_model[part.col]] = True
                return mask[:, 1:]

        with threads(self.config.num_threads):
            row, item, prob = top_items(self._net(), batch, n, banned)
        ok = to_ix[item] >= 0
        return row[ok], to_ix[item[ok]], prob[ok]

    def propose_for(
        self, ix: Interactions, users: np.ndarray, n: int, elapsed: float = 0.0, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``n`` best items for user codes ``users`` of another event table ``ix`` (read as of its ``now``
        plus ``elapsed`` days): ``(row, item code of ix, probability)``, by row then rank.

        ``ix`` must end at or after this model's fit time, or the model has seen its future.
        """
        self._check_time(ix.now)
        return self._top(ix, np.asarray(users, dtype=np.int64), n, elapsed, exclude)

    def propose(self, users: np.ndarray, n: int, elapsed: float = 0.0, exclude_seen: bool = False):
        """The candidate-source form (as the peers'): the ``n`` best items for user codes of the events served."""
        ix = self.ix_
        seen = ix.history.seen(ix.n_users, ix.n_items) if exclude_seen else None
        return self._top(ix, np.asarray(users, dtype=np.int64), n, elapsed, seen)

    def _check_time(self, now: datetime) -> None:
        if now < self.trained_at_:
            raise InputError(
                f"the sequence model was trained on events up to {iso(self.trained_at_)}, after {iso(now)}: it would see the future",
                "use it at or after its training time",
            )

    def at(self, ix: Interactions, exclude_seen: bool | None = None) -> SequenceRecommender:
        """A copy serving the events of ``ix`` (as of its ``now``, at or after the training time), weights shared."""
        self._check_time(ix.now)
        view = copy.copy(self)
        if exclude_seen is not None:
            view.exclude_seen = bool(exclude_seen)
        view._attach(ix)
        return view

    def recommend(self, users, k: int, now: datetime) -> pa.Table:
        req, codes, k, elapsed = self._start(users, k, now)

        def main(c: np.ndarray) -> sp.csr_matrix:
            row, item, prob = self._top(self.ix_, c, k, elapsed, self.seen_)
            return sp.csr_matrix((prob, (row, item)), shape=(c.size, len(self.items_)))

        return personal_table(
            req,
            codes,
            self.items_,
            k,
            elapsed,
            main=main,
            main_reason=lambda u, i: self._reason(u, elapsed),
            fallback=self.fallback_,
            exclude=self.seen_,
        )

    def _reason(self, users: np.ndarray, elapsed: float) -> pa.Array:
        """``"fits the sequence of what you did lately (last: i0042, viewed 2 days ago)"``."""
        item = self.last_item_[users]
        done = self.history_.participle(self.history_.lookup(users, item), elapsed)
        return join_text("fits the sequence of what you did lately (last: ", self.items_.decode(item), ", ", done, ")")

    # -- user vectors --------------------------------------------------------------------
    def vectors(self, events: pa.Table, users, at: datetime) -> np.ndarray:
        """Each user's learned interest vector as of ``at`` (rows in the order of ``users``; zeros for unknown users)."""
        self._net()
        at = as_utc(at)
        ix = interactions(events, at, None)
        codes = ix.users.encode(pa.array(list(users), pa.string()) if not isinstance(users, pa.Array) else users)
        out = np.zeros((codes.size, self.config.dim), dtype=np.float32)
        known = np.flatnonzero(codes >= 0)
        if known.size:
            out[known] = self._vectors(ix, codes[known], 0.0)
        return out

    def drift(self, events: pa.Table, users, now: datetime, lag_days: float = 30.0) -> np.ndarray:
        """``1 - cos`` between each user's interest vector at ``now`` and ``lag_days`` earlier (nan when the user
        has no event by either time), as the category drift of profiles."""
        from datetime import timedelta

        now = as_utc(now)
        a = self.vectors(events, users, now)
        b = self.vectors(events, users, now - timedelta(days=lag_days))
        norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cos = np.divide((a * b).sum(axis=1), norm, out=np.full(norm.size, np.nan, dtype=np.float32), where=norm > 0)
        return np.clip(1.0 - cos.astype(np.float64), 0.0, 2.0)

    # -- save and load -------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the weights (safetensors) and the configuration, vocabulary and report (JSON) into folder ``path``."""
        torch = _torch()
        from safetensors.torch import save_file

        net = self._net()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / WEIGHTS))
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "torch": torch.__version__,
            "config": self.config.to_json(),
            "exclude_seen": self.exclude_seen,
            "trained_at": iso(self.trained_at_),
            "items": self.vocab_.ids.to_pylist(),
            "categories": self.categories_.ids.to_pylist(),
            "item_category": self.item_cat_.tolist(),
            "report": self.report_,
        }
        (folder / DOCUMENT).write_text(json.dumps(doc) + "\n")
        return folder

    @classmethod
    def load(cls, path: str | Path) -> SequenceRecommender:
        """A model saved by :meth:`save`; call :meth:`attach` with the events before recommending."""
        _torch()
        from safetensors.torch import load_file

        from decayrec.sequence.network import SequenceNet

        folder = Path(path)
        try:
            doc = json.loads((folder / DOCUMENT).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(
                f"cannot read a sequence model from {folder} ({exc})", "give the folder SequenceRecommender.save wrote"
            ) from None
        if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
            raise InputError(
                f"{folder / DOCUMENT} is not a decayrec sequence model", "give the folder SequenceRecommender.save wrote"
            )
        if doc.get("version") != VERSION:
            raise InputError(
                f"{folder} holds a sequence model of format version {doc.get('version')}; this decayrec reads version {VERSION}",
                "refit the model with this version",
            )
        model = cls(SequenceConfig.from_json(doc["config"]), exclude_seen=bool(doc["exclude_seen"]))
        model.vocab_ = IdMap(pa.array(doc["items"], pa.string()))
        model.categories_ = IdMap(pa.array(doc["categories"], pa.string()))
        model.item_cat_ = np.asarray(doc["item_category"], dtype=np.int64)
        import torch

        net = SequenceNet(len(model.vocab_), len(model.categories_), torch.from_numpy(model.item_cat_), model.config)
        try:
            net.load_state_dict(load_file(str(folder / WEIGHTS)))
        except (OSError, RuntimeError) as exc:
            raise InputError(f"the weights in {folder / WEIGHTS} do not fit the model ({exc})", "save the model again") from None
        net.eval()
        model.net_ = net
        model.report_ = doc.get("report", {})
        model.trained_at_ = parse_time(doc["trained_at"])
        return model


def _categories(events: pa.Table, now: datetime, ix: Interactions) -> tuple[IdMap, np.ndarray]:
    """Each item's category as of ``now`` (its latest event naming one): model codes, 0 for none."""
    time = to_days(events.column(schema.TIMESTAMP), now)
    items = ix.items.encode(events.column(schema.ITEM))
    keep = (time <= 0.0) & (items >= 0)
    cats, item_cat = item_categories(events, keep, items[keep], time[keep], ix.n_items)
    return cats, np.where(item_cat < len(cats), item_cat + 1, 0)
