"""The service's settings: one typed object shared by the CLI, the app and the tests."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ServiceConfig"]


class ServiceConfig(BaseModel):
    """Settings of ``decayrec serve`` (the defaults are the CLI's).

    Attributes
    ----------
    store
        The store directory (created if missing).
    max_body_bytes, max_batch, max_id_length
        Request limits: the body of one request, events in one ``POST /events`` (CONTRACT: 10,000),
        characters in one field of an event.
    max_k, max_exclude
        Largest ``k`` of a list, most ids in ``exclude=``.
    max_future_seconds
        An event stamped more than this after the server's clock is rejected.
    refit_seconds
        Time between scheduled refits (0: only on ``POST /admin/refit`` and at start).
    horizon_days
        The horizon of ``GET /users/{id}/risk``.
    impression_flush_seconds
        Served lists are written to the store in batches at most this far apart.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Path
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_batch: int = Field(10_000, ge=1, le=10_000)
    max_id_length: int = Field(256, ge=8)
    max_k: int = Field(500, ge=1)
    max_exclude: int = Field(1000, ge=0)
    max_future_seconds: float = Field(24 * 3600.0, ge=0)
    refit_seconds: float = Field(3600.0, ge=0)
    horizon_days: float = Field(30.0, gt=0)
    impression_flush_seconds: float = Field(1.0, gt=0)
