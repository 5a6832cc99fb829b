"""``decayrec serve``: one process, the store's one writer, on uvicorn.

A lock file in the store directory (:data:`decayrec.store.SERVE_LOCK_FILE`) names the process
and its address while it runs, so a CLI command that finds the store locked can say which
server holds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from decayrec.errors import require
from decayrec.service.auth import Keys
from decayrec.service.config import ServiceConfig
from decayrec.service.logs import configure, log
from decayrec.service.pseudonym import Pseudonymiser
from decayrec.store import SERVE_LOCK_FILE

__all__ = ["serve"]


def serve(
    config: ServiceConfig, *, host: str, port: int, keys: Keys, pseudonymise_key_file: Path | None, access_log: bool = False
) -> None:
    require("fastapi", "service")
    uvicorn = require("uvicorn", "service")
    from decayrec.service.app import create_app
    from decayrec.service.runtime import Service

    configure()
    if keys.open:
        log("AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach this port can read, write and erase", level=30)
    pseudonymiser = Pseudonymiser.from_file(pseudonymise_key_file) if pseudonymise_key_file else None
    if pseudonymiser is not None and access_log:
        log(
            "--access-log writes request paths, which hold raw user ids, to the log: pseudonymisation does not cover it", level=30
        )
    service = Service(config, pseudonymiser)
    lock = config.store / SERVE_LOCK_FILE
    lock.write_text(json.dumps({"pid": os.getpid(), "url": f"http://{host}:{port}"}) + "\n", encoding="utf-8")
    try:
        log("serving", url=f"http://{host}:{port}", store=str(config.store), events=service.live.events)
        app = create_app(service, keys, on_stop=lambda: lock.unlink(missing_ok=True))
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=access_log, lifespan="on")
    finally:
        lock.unlink(missing_ok=True)
