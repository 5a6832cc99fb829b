"""Prometheus metrics of one service instance (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

# Request latencies from a tenth of a millisecond to ten seconds.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "decayrec_http_requests", "HTTP requests by route, method and status.", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "decayrec_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.events = Counter("decayrec_events", "Posted events by outcome.", ["outcome"], registry=r)
        for outcome in ("accepted", "duplicate", "rejected"):
            self.events.labels(outcome)
        self.batch_seconds = Histogram(
            "decayrec_event_batch_duration_seconds",
            "Validation, durable append and live update of one batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.live_users = Gauge("decayrec_live_users", "Users in the live state.", registry=r)
        self.live_pairs = Gauge("decayrec_live_user_items", "(user, item) pairs in the live state.", registry=r)
        self.live_bytes = Gauge("decayrec_live_state_bytes", "Bytes held by the live decay tables.", registry=r)
        self.model_age = Gauge(
            "decayrec_model_age_seconds", "Seconds since the serving models' fit time (-1: none yet).", registry=r
        )
        self.refit_seconds = Histogram(
            "decayrec_refit_duration_seconds",
            "Duration of model refits.",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.refits = Counter("decayrec_refits", "Model refits by outcome.", ["outcome"], registry=r)
        for outcome in ("ok", "failed"):
            self.refits.labels(outcome)
        self.impressions = Counter("decayrec_impressions", "Recommendation lists served and recorded.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
