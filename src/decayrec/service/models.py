"""The fitted models the service reads from, built in one piece and swapped in whole.

A :class:`Snapshot` is immutable once built: the decay fit and strength calibration (for
profiles), item-to-item co-visitation (the recommendations' neighbours), lapse risk for every
known user, and category and item trends, all fitted from the store as of one time. A part
that the data cannot support yet (too few events, no categories, no repeat customers) is left
out with its reason in ``missing``; any other failure fails the whole refit, and the service
keeps serving the snapshot it had (:class:`ModelHolder`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from decayrec.errors import InputError

__all__ = ["ModelHolder", "Snapshot", "fit_snapshot"]


@dataclass(frozen=True)
class Risk:
    """Lapse risk of every user known at the fit, by user id."""

    horizon_days: float
    model: str
    rows: dict[str, tuple[float, int, float]]  # user -> (p_active, risk_rank, expected_active_days)

    def without(self, user_id: str) -> Risk:
        return Risk(self.horizon_days, self.model, {u: r for u, r in self.rows.items() if u != user_id})


@dataclass(frozen=True)
class Snapshot:
    """Models fitted from the store as of ``fitted_at``."""

    fitted_at: datetime | None
    events: int
    fit_seconds: float
    decay: Any = None  # DecayModel
    strength_item: Any = None  # StrengthModel
    strength_cat: Any = None
    covisit: Any = None  # CoVisitation
    risk: Risk | None = None
    trends: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(None, 0, 0.0, missing={"all": "no model has been fitted yet"})

    def without_user(self, user_id: str) -> Snapshot:
        """The same models with the user's own derived values removed (per-user decay multiplier, risk row)."""
        from dataclasses import replace

        return replace(
            self,
            decay=self.decay.without_user(user_id) if self.decay is not None else None,
            risk=self.risk.without(user_id) if self.risk is not None else None,
        )

    def similar(self, item_id: str, k: int) -> list[tuple[str, float]] | None:
        """The ``k`` items most often engaged with together with ``item_id``, or None for an unknown item."""
        cv = self.covisit
        if cv is None:
            return None
        code = int(cv.items_.encode(pa.array([item_id]))[0])
        if code < 0:
            return None
        row = cv.similar_.getrow(code)
        order = np.lexsort((row.indices, -row.data))[:k]
        names = cv.items_.ids.take(pa.array(row.indices[order])).to_pylist()
        return list(zip(names, row.data[order].tolist()))


def fit_snapshot(events: pa.Table, now: datetime, horizon_days: float = 30.0) -> Snapshot:
    """Fit every serving model on ``events`` (at or before ``now``)."""
    from decayrec.decay.config import FitConfig
    from decayrec.decay.fit import fit_decay
    from decayrec.decay.strength import StrengthModel
    from decayrec.recommend.baselines import CoVisitation
    from decayrec.trends import trends

    started = time.perf_counter()
    missing: dict[str, str] = {}
    parts: dict[str, Any] = {}
    if events.num_rows == 0:
        return Snapshot(now, 0, 0.0, missing={"all": "the store holds no events yet"})

    def part(name: str, build) -> None:
        try:
            parts[name] = build()
        except InputError as exc:  # the data cannot support this part yet: say why, serve the rest
            missing[name] = str(exc)

    part("decay", lambda: fit_decay(events, now, FitConfig()))
    if "decay" in parts:
        part("strength_item", lambda: StrengthModel(level="item").fit(events, parts["decay"], now))
        has_categories = events["category_id"].null_count < events.num_rows
        if has_categories:
            part("strength_cat", lambda: StrengthModel(level="category", faded_threshold=0.10).fit(events, parts["decay"], now))
    part("covisit", lambda: CoVisitation().fit(events, now))
    part("risk", lambda: _risk(events, now, horizon_days))
    trend_tables: dict[str, list[dict[str, Any]]] = {}
    for level in ("category", "item"):
        try:
            trend_tables[level] = trends(events, now, level=level).to_pylist()
        except InputError as exc:
            missing[f"trends_{level}"] = str(exc)
    return Snapshot(
        fitted_at=now,
        events=events.num_rows,
        fit_seconds=time.perf_counter() - started,
        decay=parts.get("decay"),
        strength_item=parts.get("strength_item"),
        strength_cat=parts.get("strength_cat"),
        covisit=parts.get("covisit"),
        risk=parts.get("risk"),
        trends=trend_tables,
        missing=missing,
    )


def _risk(events: pa.Table, now: datetime, horizon_days: float) -> Risk:
    """The learned lapse model, falling back to BG/NBD where the history cannot train it."""
    from decayrec.lapse import make_lapse_model

    try:
        table = make_lapse_model("decayrec", horizon_days).fit(events, now).predict()
        name = "decayrec"
    except InputError:
        table = make_lapse_model("bgnbd", horizon_days).fit(events, now).predict()
        name = "bgnbd"
    cols = table.to_pydict()
    expected = cols.get("expected_active_days", [float("nan")] * table.num_rows)
    rows = {u: (float(p), int(r), float(e)) for u, p, r, e in zip(cols["user_id"], cols["p_active"], cols["risk_rank"], expected)}
    return Risk(horizon_days, name, rows)


class ModelHolder:
    """The current snapshot, swapped atomically; refits run one at a time in a background thread.

    Readers take :attr:`current` once per request and use only that object, so a swap in the
    middle of a request never mixes two snapshots. A refit that raises leaves the old snapshot
    in place and is recorded in :attr:`last_error`.
    """

    def __init__(self, fit, on_done=None, before_swap=None) -> None:
        self.current: Snapshot = Snapshot.empty()
        self._fit = fit  # () -> Snapshot
        self._on_done = on_done  # (seconds, error | None) -> None
        self._before_swap = before_swap  # (Snapshot) -> Snapshot, run under swap_lock
        self.swap_lock = threading.RLock()  # held by a swap and by anyone rewriting `current` (erasure)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.refits = 0
        self.failures = 0

    def start(self) -> bool:
        """Start a refit in the background; False if one is already running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._thread = threading.Thread(target=self._run, name="decayrec-refit", daemon=True)
            self._thread.start()
            return True

    def _run(self) -> None:
        started = time.perf_counter()
        error: str | None = None
        try:
            snapshot = self._fit()
            with self.swap_lock:
                if self._before_swap is not None:
                    snapshot = self._before_swap(snapshot)
                self.current = snapshot  # one reference assignment: the atomic swap
            self.refits += 1
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old models serving; it is reported, not raised
            error = f"{type(exc).__name__}: {exc}"
            self.failures += 1
            self.last_error = error
        if self._on_done is not None:
            self._on_done(time.perf_counter() - started, error)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a running refit (tests and shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()
