"""The HTTP API (CONTRACT.md section 4): thin routes over :class:`~decayrec.service.runtime.Service`.

Every route names the scope it needs; :func:`create_app` takes the service and the keys, so
tests build apps over stores of their own. Errors are JSON ``{"detail": "..."}`` with one
sentence that says what was wrong; nothing a client sends yields a 5xx, and an unexpected
failure answers 500 with a request id and no internals (the log has the rest).
"""

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from decayrec import __version__
from decayrec.service import wire
from decayrec.service.auth import Keys
from decayrec.service.logs import log
from decayrec.service.runtime import NotFound, Service

__all__ = ["create_app"]

_ID = Annotated[str, Path(min_length=1, max_length=256)]
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"model": wire.Problem, "description": "missing or wrong API key"},
    403: {"model": wire.Problem, "description": "the key lacks the scope"},
    422: {"model": wire.Problem, "description": "malformed request"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": wire.Problem, "description": "unknown user or item"}}
# A path no route matches (an id with a control character, say) is a 404 on every route with an id in it.
_NO_ROUTE: dict[int | str, dict[str, Any]] = {
    404: {"model": wire.Problem, "description": "no such route (ids may not hold control characters)"}
}


def create_app(
    service: Service, keys: Keys, *, manage_lifecycle: bool = True, on_stop: Callable[[], None] | None = None
) -> FastAPI:
    """The FastAPI app over ``service``; with ``manage_lifecycle`` it starts and stops the service with the app
    (``on_stop`` runs after the service has stopped)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if manage_lifecycle:
            service.start()
        yield
        if manage_lifecycle:
            await run_in_threadpool(service.stop)
        if on_stop is not None:
            on_stop()

    app = FastAPI(
        title="decayrec",
        version=__version__,
        description="Live interest decay for one shop: post events, read recommendations, profiles, lapse risk and trends.",
        lifespan=lifespan,
    )
    app.state.service = service

    def need(scope: Literal["read", "write", "admin"]) -> Callable[[Request], None]:
        def check(request: Request) -> None:
            granted = keys.scopes_of(request.headers.get("authorization"))
            if granted is None:
                raise HTTPException(
                    401, "missing or wrong API key: send Authorization: Bearer KEY", headers={"WWW-Authenticate": "Bearer"}
                )
            if scope not in granted:
                raise HTTPException(403, f"this key lacks the {scope!r} scope")

        return check

    read, write, admin = Depends(need("read")), Depends(need("write")), Depends(need("admin"))
    _install_errors(app)
    _install_metrics(app, service)

    events = APIRouter(tags=["events"])

    @events.post(
        "/events",
        dependencies=[write],
        response_model=wire.EventsAnswer,
        responses={**_PROBLEMS, 413: {"model": wire.Problem, "description": "body too large"}},
        openapi_extra=wire.EVENTS_BODY,
    )
    async def post_events(request: Request) -> dict[str, Any]:
        """Store a batch durably, then apply it to the live state. 200 means every accepted event is on disk."""
        body = await _read_body(request, service.config.max_body_bytes)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, a 5,000-digit number, nesting too deep
            raise HTTPException(
                422, f"the body is not JSON this server reads ({exc.__class__.__name__}: {str(exc)[:80]})"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("events"), list):
            raise HTTPException(422, 'the body must be an object {"events": [event, ...]}')
        batch = data["events"]
        if len(batch) > service.config.max_batch:
            raise HTTPException(422, f"{len(batch):,} events in one batch; send at most {service.config.max_batch:,}")
        result = await run_in_threadpool(service.write, batch)
        return {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected}

    users = APIRouter(tags=["users"])

    @users.get(
        "/users/{user_id:path}/recommendations",
        dependencies=[read],
        response_model=wire.RecList,
        responses={**_PROBLEMS, **_NO_ROUTE},
    )
    async def recommendations(
        user_id: _ID,
        k: Annotated[int, Query(ge=1, le=service.config.max_k)] = 20,
        exclude: Annotated[str | None, Query(max_length=256 * 1000, description="item ids, comma-separated")] = None,
        category: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    ) -> dict[str, Any]:
        """The user's list now (unknown users get what is popular), recorded as an impression under ``list_id``."""
        skip = frozenset(x for x in (exclude or "").split(",") if x)
        if len(skip) > service.config.max_exclude:
            raise HTTPException(422, f"exclude names {len(skip):,} items; at most {service.config.max_exclude:,}")
        return service.recommend(user_id, k, skip, category)

    @users.get(
        "/users/{user_id:path}/profile",
        dependencies=[read],
        response_model=wire.ProfileAnswer,
        responses={**_PROBLEMS, **_NOT_FOUND},
    )
    def profile(user_id: _ID) -> dict[str, Any]:
        """Live decayed interest at 1, 7 and 30 days, and the fitted profile: strength, half-lives, time-to-fade, drift."""
        return _found(service.profile, user_id)

    @users.get(
        "/users/{user_id:path}/risk", dependencies=[read], response_model=wire.RiskAnswer, responses={**_PROBLEMS, **_NOT_FOUND}
    )
    async def risk(user_id: _ID) -> dict[str, Any]:
        """P(any event within the horizon) from the last refit, and days since the user's last event now."""
        return _found(service.risk, user_id)

    @users.delete("/users/{user_id:path}", dependencies=[admin], response_model=wire.Erased, responses={**_PROBLEMS, **_NO_ROUTE})
    def erase(user_id: _ID) -> dict[str, Any]:
        """Erase the user's events, impressions, live state and derived values; shop-wide models refit without them."""
        return service.erase(user_id)

    shop = APIRouter(tags=["shop"])

    @shop.get("/trends", dependencies=[read], response_model=wire.TrendsAnswer, responses=_PROBLEMS)
    async def trends(
        level: Literal["category", "item"] = "category", limit: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> dict[str, Any]:
        """What is rising and fading, from the last refit."""
        return service.trends(level, limit)

    @shop.get(
        "/items/{item_id:path}/similar",
        dependencies=[read],
        response_model=wire.SimilarList,
        responses={**_PROBLEMS, **_NOT_FOUND},
    )
    async def similar(item_id: _ID, k: Annotated[int, Query(ge=1, le=service.config.max_k)] = 20) -> dict[str, Any]:
        """Items most often engaged with together with this one (decayed co-visitation)."""
        return _found(service.similar, item_id, k)

    @shop.get("/experiments/{name}", dependencies=[read], response_model=wire.Problem, responses={**_PROBLEMS, **_NOT_FOUND})
    async def experiment(name: _ID) -> dict[str, Any]:
        """Experiments are not in this release: every name answers 404."""
        raise HTTPException(404, f"no experiment named {name[:40]!r}: experiments are not available in this release")

    ops = APIRouter(tags=["operations"])

    @ops.post("/admin/refit", dependencies=[admin], status_code=202, response_model=wire.RefitAnswer, responses=_PROBLEMS)
    async def refit() -> dict[str, Any]:
        """Refit every model in the background; the current ones serve until the swap."""
        started = service.refit()
        return {"started": started, "running": service.models.running, "last_error": service.models.last_error}

    @ops.get("/healthz", response_model=wire.Health)
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @ops.get(
        "/readyz",
        response_model=wire.Readiness,
        responses={503: {"model": wire.Readiness, "description": "the first models are still being fitted"}},
    )
    async def readyz() -> Response:
        """Readiness: the first models are fitted (the live state is loaded before the server listens)."""
        snap = service.models.current
        body = {
            "status": "ready" if service.ready else "starting",
            "models_fitted_at": snap.fitted_at.isoformat() if snap.fitted_at else None,
            "events": service.live.events,
            "refit_running": service.models.running,
            "last_refit_error": service.models.last_error,
        }
        return JSONResponse(body, status_code=200 if service.ready else 503)

    @ops.get(
        "/metrics", dependencies=[read], response_class=Response, responses={**_PROBLEMS, 200: {"content": {"text/plain": {}}}}
    )
    async def metrics() -> Response:
        """Prometheus text format."""
        service.update_gauges()
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @ops.get("/", response_class=HTMLResponse, responses={200: {"content": {"text/html": {}}}})
    async def dashboard() -> HTMLResponse:
        """A status page linking the API documentation."""
        snap = service.models.current
        fitted = snap.fitted_at.isoformat() if snap.fitted_at else "not yet"
        html = (
            "<!doctype html><html><head><meta charset='utf-8'><title>decayrec</title></head><body>"
            f"<h1>decayrec {__version__}</h1><p>{service.live.events:,} events, {service.live.n_users:,} users live; "
            f"models fitted as of {fitted}.</p><p><a href='/docs'>API documentation</a> · <a href='/openapi.json'>OpenAPI spec</a></p>"
            "</body></html>"
        )
        return HTMLResponse(html)

    for router in (events, users, shop, ops):
        app.include_router(router)
    return app


def _found(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    try:
        return fn(*args)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (by Content-Length, or while it streams in)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body has {int(declared):,} bytes; send at most {limit:,} (split the batch)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is over {limit:,} bytes; split the batch")
        chunks.append(chunk)
    return b"".join(chunks)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return JSONResponse(
            {"detail": f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        # The route template, not the path: a path holds raw user ids, which pseudonymisation keeps out of every log.
        route = getattr(request.scope.get("route"), "path_format", "unmatched")
        log("internal error", level=40, ref=ref, route=route, error=type(exc).__name__)
        return JSONResponse({"detail": f"internal error (reference {ref}); the server log has the details"}, status_code=500)


def _install_metrics(app: FastAPI, service: Service) -> None:
    """Request counts and latency per route template (a pure ASGI wrapper: no per-request task switch)."""
    metrics = service.metrics
    inner = app.build_middleware_stack

    def build() -> Callable[..., Awaitable[None]]:
        stack = inner()

        async def timed(scope, receive, send) -> None:
            if scope["type"] != "http":
                await stack(scope, receive, send)
                return
            started = time.perf_counter()
            status = [500]

            async def capture(message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await stack(scope, receive, capture)
            finally:
                route = scope.get("route")
                name = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
                method = scope.get("method", "")
                metrics.latency.labels(name, method).observe(time.perf_counter() - started)
                metrics.requests.labels(name, method, str(status[0])).inc()

        return timed

    app.build_middleware_stack = build  # type: ignore[method-assign]
