"""The running service: the store, the live state, the writer, the models and the refit loop, wired.

:class:`Service` is what the HTTP layer (:mod:`decayrec.service.app`) calls; it holds no HTTP
code, so tests and other front ends can drive it directly. "Now" comes from the ``clock`` it
is given (the wall clock in ``decayrec serve``, a fixed time in tests) and is passed down to
every computation as a parameter.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from decayrec.errors import InputError
from decayrec.service.config import ServiceConfig
from decayrec.service.ingestion import BatchResult, EventWriter
from decayrec.service.live import RANK_SCALE, SCALES, LiveState, UserView, days
from decayrec.service.logs import log
from decayrec.service.metrics import Metrics
from decayrec.service.models import ModelHolder, Snapshot, fit_snapshot
from decayrec.service.pseudonym import Pseudonymiser
from decayrec.store import EventStore

__all__ = ["NotFound", "Service"]

# A user's anchors for item-to-item neighbours: their most interesting items.
_ANCHORS = 20
_SCALE_NAMES = [f"{h:g}d" for h in SCALES]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NotFound(LookupError):
    """The user, item or experiment asked for is unknown; the message says so."""


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reason: str


def utc_now() -> datetime:
    """The wall clock: only the server's edge reads it, and passes it down as ``now``."""
    return datetime.now(UTC)


def _time(t: float) -> str | None:
    if not np.isfinite(t):
        return None
    return (_EPOCH + timedelta(days=float(t))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Service:
    """One shop's live service over the store in ``config.store``."""

    def __init__(
        self, config: ServiceConfig, pseudonymiser: Pseudonymiser | None = None, clock: Callable[[], datetime] = utc_now
    ):
        self.config = config
        self.clock = clock
        self.pseudonymiser = pseudonymiser
        self.metrics = Metrics()
        started = time.perf_counter()
        self.store = EventStore.open(config.store, create=True)
        # What is in memory is derived: a restart rebuilds it from the store.
        self.live = LiveState.from_events(self.store.scan())
        self.writer = EventWriter(self.store, self.live, config, pseudonymiser)
        log(
            "live state loaded", events=self.live.events, users=self.live.n_users, seconds=round(time.perf_counter() - started, 3)
        )
        self.models = ModelHolder(self._fit, on_done=self._refit_done, before_swap=self._strip_erased)
        self._local = threading.local()
        self._impressions: list[tuple[str, str, datetime, list[str], str]] = []
        self._impressions_lock = threading.Lock()
        self._erased: set[str] = set()  # users erased while a refit was reading the store
        self._refit_again = False
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None
        self._last_refit_start = 0.0

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Fit the first models in the background and start the refit and flush loop."""
        self._request_refit()
        self._loop = threading.Thread(target=self._background, name="decayrec-background", daemon=True)
        self._loop.start()

    def stop(self) -> None:
        self._stop.set()
        if self._loop is not None:
            self._loop.join(10)
        self.models.wait(5)  # a refit still running is thrown away: models are derived, the store is not
        self.flush_impressions()
        with self.writer.lock:
            self.store.con.execute("CHECKPOINT")
            self.store.close()

    def _background(self) -> None:
        tick = min(self.config.impression_flush_seconds, 1.0)
        while not self._stop.wait(tick):
            try:
                self.flush_impressions()
                due = self.config.refit_seconds > 0 and time.monotonic() - self._last_refit_start >= self.config.refit_seconds
                if (due or self._refit_again) and not self.models.running:
                    self._refit_again = not self._request_refit()
            except Exception as exc:  # noqa: BLE001 - the loop must survive a failed flush; it is logged
                log("background step failed", level=40, error=f"{type(exc).__name__}: {exc}")

    # -- models -------------------------------------------------------------------------
    def _request_refit(self) -> bool:
        self._last_refit_start = time.monotonic()
        return self.models.start()

    def refit(self) -> bool:
        """Start a refit now (``POST /admin/refit``); False when one is already running (another is queued after it)."""
        started = not self.models.running and self._request_refit()
        if not started:
            self._refit_again = True
        return started

    def _fit(self) -> Snapshot:
        with self.models.swap_lock:
            self._erased = set()  # users erased from here on may still be in the scan below
        reader = self.reader()
        last = reader.last_time()
        # The models' time is the newest stored event's (as the CLI's default), never past the clock.
        now = self.clock()
        at = min(now, last.replace(tzinfo=UTC)) if last is not None else now
        events = reader.scan(at)
        return fit_snapshot(events, at, self.config.horizon_days)

    def _strip_erased(self, snapshot: Snapshot) -> Snapshot:
        """Users erased since the refit began may be in its scan: their rows must not come back (under swap_lock)."""
        for user in self._erased:
            snapshot = snapshot.without_user(user)
        return snapshot

    def _refit_done(self, seconds: float, error: str | None) -> None:
        self.metrics.refit_seconds.observe(seconds)
        self.metrics.refits.labels("failed" if error else "ok").inc()
        snap = self.models.current
        if error:
            log("refit failed; the previous models keep serving", level=40, error=error, seconds=round(seconds, 3))
        else:
            log("refit done", seconds=round(seconds, 3), events=snap.events, missing=snap.missing)

    @property
    def ready(self) -> bool:
        return self.models.refits > 0

    # -- reading ------------------------------------------------------------------------
    def reader(self) -> EventStore:
        """A read connection for the calling thread (DuckDB connections are not shared between threads)."""
        store = getattr(self._local, "store", None)
        if store is None:
            with self.writer.lock:  # the writer's connection is the writer's, even to make a cursor from
                cursor = self.store.con.cursor()
            store = self._local.store = EventStore(cursor, self.store.directory)
        return store

    def _uid(self, user_id: str) -> str:
        return self.pseudonymiser(user_id) if self.pseudonymiser is not None else user_id

    def write(self, events: list[Any]) -> BatchResult:
        started = time.perf_counter()
        result = self.writer.write(events, self.clock())
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.events.labels("accepted").inc(result.accepted)
        self.metrics.events.labels("duplicate").inc(result.duplicates)
        self.metrics.events.labels("rejected").inc(len(result.rejected))
        return result

    def recommend(
        self, user_id: str, k: int, exclude: frozenset[str] = frozenset(), category: str | None = None
    ) -> dict[str, Any]:
        """The user's list now: neighbours of their decayed interests, then what is popular; recorded as an impression."""
        now = self.clock()
        uid = self._uid(user_id)
        snap = self.models.current
        t = days(now)
        view = self.live.user(uid, t)
        recs: list[Recommendation] = []
        taken: set[str] = set(exclude)
        if view is not None and snap.covisit is not None and view.items:
            recs = self._neighbours(snap, view.items[:_ANCHORS], view.interest[:_ANCHORS, RANK_SCALE], k, taken, category)
            taken.update(r.item_id for r in recs)
        if len(recs) < k:
            recs.extend(self._popular(t, k - len(recs), taken, category))
        list_id = uuid.uuid4().hex
        items = [{"item_id": r.item_id, "rank": n, "score": r.score, "reason": r.reason} for n, r in enumerate(recs, 1)]
        request = json.dumps({"k": k, "exclude": sorted(exclude), "category": category})
        with self._impressions_lock:
            self._impressions.append((list_id, uid, now, [r.item_id for r in recs], request))
        self.metrics.impressions.inc()
        return {"user_id": user_id, "list_id": list_id, "items": items}

    def _category_ok(self, item_id: str, category: str | None) -> bool:
        if category is None:
            return True
        code = self.live.items.code.get(item_id)
        return code is not None and self.live.item_category[code] == category

    def _neighbours(
        self, snap: Snapshot, anchors: list[str], weight: np.ndarray, k: int, taken: set[str], category: str | None
    ) -> list[Recommendation]:
        cv = snap.covisit
        codes = cv.items_.encode(pa.array(anchors, pa.string()))
        keep = (codes >= 0) & (weight > 0)
        if not keep.any():
            return []
        codes, weight = codes[keep], weight[keep]
        names = [a for a, ok in zip(anchors, keep) if ok]
        rows = cv.similar_[codes].tocoo()
        contrib = rows.data * weight[rows.row]
        n = cv.similar_.shape[1]
        score = np.bincount(rows.col, contrib, minlength=n)
        # The anchor contributing most to each candidate names the reason.
        order = np.lexsort((rows.row, -contrib))
        first = np.full(n, -1)
        first[rows.col[order[::-1]]] = rows.row[order[::-1]]
        candidates = np.flatnonzero(score > 0)
        ranked = candidates[np.lexsort((candidates, -score[candidates]))]
        ids = cv.items_.ids
        out: list[Recommendation] = []
        for c in ranked[: 4 * k + len(taken)].tolist():
            item = ids[c].as_py()
            if item in taken or not self._category_ok(item, category):
                continue
            out.append(
                Recommendation(
                    item, float(score[c]), f"often engaged with alongside {names[first[c]]}, one of your current interests"
                )
            )
            if len(out) == k:
                break
        return out

    def _popular(self, t: float, k: int, taken: set[str], category: str | None) -> list[Recommendation]:
        pop = self.live.popularity(t)
        if pop.size == 0:
            return []
        names = self.live.items.names
        order = np.lexsort((np.arange(pop.size), -pop))
        out: list[Recommendation] = []
        where = f" in {category}" if category is not None else ""
        for c in order.tolist():
            if pop[c] <= 0:
                break
            item = names[c]
            if item in taken or not self._category_ok(item, category):
                continue
            out.append(Recommendation(item, float(pop[c]), f"popular{where} this week"))
            if len(out) == k:
                break
        return out

    def profile(self, user_id: str) -> dict[str, Any]:
        """Live decayed interest at three scales, and the full interest profile from the fitted decay model."""
        from decayrec.decay.profile import build_profile

        now, uid, view, snap = self._known(user_id)
        profile: dict[str, Any] | None = None
        missing = None
        if snap.decay is not None and snap.strength_item is not None:
            mine = self.reader().user_events(uid, now)
            try:
                result = build_profile(mine, uid, snap.decay, snap.strength_cat, snap.strength_item, now)
                profile = result.to_json_dict()
                profile["user_id"] = user_id
            except InputError as exc:
                missing = str(exc)
        else:
            missing = snap.missing.get("decay") or snap.missing.get("all") or "the decay model is not fitted yet"
        live = {
            "events": view.events,
            "last_event": _time(view.last_event),
            "activity": dict(zip(_SCALE_NAMES, map(float, view.activity))),
            "items": [
                {"item_id": item, "interest": dict(zip(_SCALE_NAMES, map(float, row))), "last_seen": _time(seen)}
                for item, row, seen in zip(view.items[:20], view.interest[:20], view.last_seen[:20])
            ],
        }
        return {
            "user_id": user_id,
            "at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "live": live,
            "profile": profile,
            "profile_missing": missing,
            "models_fitted_at": snap.fitted_at.isoformat() if snap.fitted_at else None,
        }

    def _known(self, user_id: str) -> tuple[datetime, str, UserView, Snapshot]:
        """Now, the stored id, the live view and the models of a user with events; NotFound otherwise."""
        now = self.clock()
        uid = self._uid(user_id)
        view = self.live.user(uid, days(now))
        if view is None:
            raise NotFound(f"no events for user {user_id!r}")
        return now, uid, view, self.models.current

    def risk(self, user_id: str) -> dict[str, Any]:
        now, uid, view, snap = self._known(user_id)
        row = snap.risk.rows.get(uid) if snap.risk is not None else None
        note = None
        if snap.risk is None:
            note = snap.missing.get("risk") or snap.missing.get("all") or "the lapse model is not fitted yet"
        elif row is None:
            note = "first seen after the last refit: the next refit scores this user"
        return {
            "user_id": user_id,
            "p_active": row[0] if row else None,
            "risk_rank": row[1] if row else None,
            "expected_active_days": row[2] if row and np.isfinite(row[2]) else None,
            "horizon_days": self.config.horizon_days,
            "model": snap.risk.model if snap.risk is not None else None,
            "as_of": snap.fitted_at.isoformat() if snap.fitted_at else None,
            "days_since_last_event": max(0.0, days(now) - view.last_event),
            "note": note,
        }

    def trends(self, level: str, limit: int) -> dict[str, Any]:
        snap = self.models.current
        rows = snap.trends.get(level)
        return {
            "level": level,
            "as_of": snap.fitted_at.isoformat() if snap.fitted_at else None,
            "trends": [_jsonable(r) for r in (rows or [])[:limit]],
            "note": None if rows is not None else snap.missing.get(f"trends_{level}") or snap.missing.get("all"),
        }

    def similar(self, item_id: str, k: int) -> dict[str, Any]:
        found = self.models.current.similar(item_id, k)
        if found is None:
            raise NotFound(f"item {item_id!r} is not in the fitted co-visitation model (unknown, or new since the last refit)")
        return {"item_id": item_id, "items": [{"item_id": i, "score": s} for i, s in found]}

    # -- writing ------------------------------------------------------------------------
    def erase(self, user_id: str) -> dict[str, Any]:
        """Erase a user: stored events and impressions, live rows, the per-user decay multiplier and risk row.

        Shop-wide aggregates (co-visitation, trends, the lapse model's trees) are refitted at once
        without the user; until that refit swaps in, they still hold the user's share.
        """
        uid = self._uid(user_id)
        with self.writer.lock:  # no flush of impressions can slip between the filter and the delete
            with self._impressions_lock:
                self._impressions = [r for r in self._impressions if r[1] != uid]
            n = self.writer.erase(uid)
        holder = self.models
        with holder.swap_lock:  # after the delete: a refit that scanned before it strips the user at its swap
            self._erased.add(uid)
            holder.current = holder.current.without_user(uid)
        started = self.refit() if n else False
        log("user erased", events=n)
        return {"user_id": user_id, "events_erased": n, "refit": "started" if started else ("queued" if n else "none")}

    def flush_impressions(self) -> int:
        with self.writer.lock:  # taken first, as erase takes it: an erased user's rows are never written after it
            with self._impressions_lock:
                rows, self._impressions = self._impressions, []
            if rows:
                self.writer.record_impressions(rows)
        return len(rows)

    def update_gauges(self) -> None:
        m = self.metrics
        m.live_users.set(self.live.n_users)
        m.live_pairs.set(self.live.n_pairs)
        m.live_bytes.set(self.live.nbytes)
        fitted = self.models.current.fitted_at
        m.model_age.set((self.clock() - fitted).total_seconds() if fitted else -1)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, float) and not np.isfinite(value):
            value = None
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[key] = value
    return out
