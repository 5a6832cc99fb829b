"""The live service (``decayrec serve``): events in, decayed state kept current, lists out over HTTP.

Needs the ``service`` extra (FastAPI, uvicorn, prometheus-client). The pieces, each in its room:
:mod:`.live` (the in-memory decay tables), :mod:`.ingestion` (validation, the durable append),
:mod:`.models` (the fitted models and their atomic swap), :mod:`.runtime` (the service wired
together), :mod:`.app` (the HTTP routes), :mod:`.auth`, :mod:`.pseudonym`, :mod:`.metrics`,
:mod:`.logs`, :mod:`.server` (uvicorn and the store's lock file).
"""

from __future__ import annotations

from decayrec.service.config import ServiceConfig

__all__ = ["ServiceConfig"]
