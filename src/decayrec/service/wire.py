"""The HTTP API's request and response shapes (CONTRACT.md section 4), as they appear in the OpenAPI spec."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from decayrec import schema

__all__ = ["EVENTS_BODY"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Rejected(_Out):
    index: int
    reason: str


class EventsAnswer(_Out):
    accepted: int
    duplicates: int
    rejected: list[Rejected]


class RecItem(_Out):
    item_id: str
    rank: int
    score: float
    reason: str


class RecList(_Out):
    user_id: str
    list_id: str
    items: list[RecItem]


class SimilarItem(_Out):
    item_id: str
    score: float


class SimilarList(_Out):
    item_id: str
    items: list[SimilarItem]


class LiveItem(_Out):
    item_id: str
    interest: dict[str, float]
    last_seen: str | None


class LiveProfile(_Out):
    events: int
    last_event: str | None
    activity: dict[str, float]
    items: list[LiveItem]


class ProfileAnswer(_Out):
    user_id: str
    at: str
    live: LiveProfile
    profile: dict[str, Any] | None
    profile_missing: str | None
    models_fitted_at: str | None


class RiskAnswer(_Out):
    user_id: str
    p_active: float | None
    risk_rank: int | None
    expected_active_days: float | None
    horizon_days: float
    model: str | None
    as_of: str | None
    days_since_last_event: float
    note: str | None


class TrendsAnswer(_Out):
    level: str
    as_of: str | None
    trends: list[dict[str, Any]]
    note: str | None


class Erased(_Out):
    user_id: str
    events_erased: int
    refit: str


class RefitAnswer(_Out):
    started: bool
    running: bool
    last_error: str | None


class Health(_Out):
    status: str


class Readiness(_Out):
    status: str
    models_fitted_at: str | None
    events: int
    refit_running: bool
    last_refit_error: str | None


class Problem(_Out):
    detail: str


# POST /events reads its body itself (per-event rejections, not one 422 for the batch), so
# the spec's request body is written out here rather than derived from a model.
_STRING_OR_NUMBER = {"anyOf": [{"type": "string"}, {"type": "number"}]}
_EVENT_PROPERTIES: dict[str, Any] = {
    schema.USER: {"type": "string", "maxLength": 256},
    schema.ITEM: {"type": "string", "maxLength": 256},
    schema.EVENT: {
        "type": "string",
        "description": "view, click, cart, fav, purchase or an alias (pv, addtocart, transaction, ...)",
    },
    schema.TIMESTAMP: {**_STRING_OR_NUMBER, "description": "ISO-8601, or a Unix epoch number (one unit per batch)"},
    schema.CATEGORY: {"type": ["string", "null"], "maxLength": 256},
    schema.PRICE: {"type": ["number", "null"], "minimum": 0},
    schema.QUANTITY: {"type": ["number", "null"], "minimum": 0},
    schema.SESSION: {"type": ["string", "null"], "maxLength": 256},
    schema.EVENT_ID: {"type": ["string", "null"], "maxLength": 256, "description": "a re-sent event_id is a duplicate"},
    schema.REC_ID: {"type": ["string", "null"], "maxLength": 256, "description": "the list_id this event responds to"},
}
EVENTS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["events"],
                    "properties": {
                        "events": {
                            "type": "array",
                            "maxItems": 10_000,
                            "items": {
                                "type": "object",
                                "required": list(schema.REQUIRED_COLUMNS),
                                "properties": _EVENT_PROPERTIES,
                                "additionalProperties": False,
                            },
                        }
                    },
                }
            }
        },
    }
}
