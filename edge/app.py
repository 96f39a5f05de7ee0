"""The Quart app: routes, error envelope, and the ASGI middleware stack around it.

Every failure a handler lets through becomes the contract's envelope here, in one place: an
``ApiError`` as it says; an actor's failure by ``code_for_actor_error``; an outage of an
adapter by its one exception type (Redis ``TierUnavailable`` → 503 CACHE_UNAVAILABLE, Postgres
``DatabaseUnavailable`` → 503 SERVICE_UNAVAILABLE; upstream failures are ``ApiError``s already).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, cast

import msgspec
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors.errors import ActorError
from edge import tracing
from edge.api import Api, request_id
from edge.asgi import (
    ROUTE_KEY,
    ASGIApp,
    BodyDeadlines,
    HeadLimit,
    RequestContext,
    ShieldFinalSend,
    StreamScopes,
)
from edge.assembly import Services
from edge.dashboard.docs import document_widgets
from edge.errors import ApiError, Code, code_for_actor_error, code_for_status, envelope_bytes
from edge.openapi import build_openapi
from edge.redis_tier import TierUnavailable
from edge.routes import (
    dashboard,
    devices,
    health,
    inbox,
    locks,
    mutations,
    preferences,
    sse,
    sync,
    testing,
    workbench,
)
from ledger.database import DatabaseUnavailable

log = logging.getLogger("bff.app")
VERSION = "0.1.0"
JSON = "application/json; charset=utf-8"


# Every public route table, in the order the OpenAPI document lists them.
PUBLIC_TABLES: tuple[Api, ...] = (
    health.api,
    devices.api,
    dashboard.api,
    workbench.api,
    sse.api,
    inbox.api,
    locks.api,
    mutations.api,
    preferences.api,
    sync.api,
)


def route_tables(services: Services) -> list[Api]:
    tables = list(PUBLIC_TABLES)
    if services.settings.enable_test_routes and services.settings.mode != "production":
        tables.append(testing.api)
    return tables


def openapi_document(tables: Iterable[Api] = PUBLIC_TABLES) -> dict[str, Any]:
    """The OpenAPI document of these route tables, as ``/openapi.json`` serves it; without a
    server, so tools can render it (the desktop's types: ops/localstack/types.py)."""
    document = Api()
    for table in tables:
        document.routes.extend(table.routes)
    spec = build_openapi(document, version=VERSION)
    document_widgets(spec)
    return spec


def create_app(services: Services) -> QuartTrio:
    """Build the Quart app over ``services``. One app per process (or per test)."""
    app = QuartTrio("bff-backoffice-service")
    app.config["MAX_CONTENT_LENGTH"] = services.settings.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    tables = route_tables(services)
    for table in tables:
        table.install(app, context=services)
    openapi = msgspec.json.encode(openapi_document(tables))

    @app.get("/openapi.json")
    async def openapi_json() -> Response:
        return Response(openapi, content_type=JSON)

    @app.before_request
    async def tag_route() -> None:
        rule = request.url_rule
        _scope()[ROUTE_KEY] = rule.rule if rule is not None else "unmatched"

    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return _error(services, exc.code, exc.message, exc.headers)

    @app.errorhandler(ActorError)
    async def actor_error(exc: ActorError) -> Response:
        return _error(
            services, code_for_actor_error(exc), "the request could not be handled; retry", {}
        )

    @app.errorhandler(TierUnavailable)
    async def redis_down(exc: TierUnavailable) -> Response:
        log.warning("redis tier unavailable", extra={"requestId": request_id(), "error": str(exc)})
        return _error(services, Code.CACHE_UNAVAILABLE, f"{exc.dependency} unavailable; retry", {})

    @app.errorhandler(DatabaseUnavailable)
    async def postgres_down(exc: DatabaseUnavailable) -> Response:
        log.warning("postgres unavailable", extra={"requestId": request_id(), "error": str(exc)})
        return _error(services, Code.SERVICE_UNAVAILABLE, "database unavailable; retry", {})

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = code_for_status(status)
        headers: dict[str, str] = {}
        message = exc.description or code.wire
        if status == 405:
            allowed = getattr(exc, "valid_methods", None) or []
            headers["Allow"] = ", ".join(sorted(allowed))
            message = f"method {request.method} not allowed here"
        elif status == 404:
            message = f"no route for {request.path[:200]}"
        elif status == 413:
            message = f"body larger than {services.settings.max_body_bytes} bytes"
        return _error(services, code, message, headers)

    @app.errorhandler(Exception)
    async def internal_error(exc: Exception) -> Response:
        log.error(
            "unhandled exception",
            exc_info=exc,
            extra={
                "requestId": request_id(),
                "route": cast(dict[str, Any], request.scope).get(ROUTE_KEY),
            },
        )
        return _error(services, Code.INTERNAL, "internal error", {})

    return app


def _scope() -> dict[str, Any]:
    """The ASGI scope as a plain dict: the middleware keeps its own keys in it."""
    return cast(dict[str, Any], request.scope)


def _error(services: Services, code: Code, message: str, headers: dict[str, str]) -> Response:
    services.metrics.errors.labels(code.wire).inc()
    body = envelope_bytes(code, message, request_id())
    return Response(body, status=code.status, content_type=JSON, headers=headers)


def asgi_stack(app: QuartTrio, services: Services) -> ASGIApp:
    """The callable hypercorn serves: request context outermost (the 408 of a late body and the
    431 of an oversized head get its request id and access log line), then the head limit, the
    body deadlines, the streams' own cancel scopes, and the shielded final send."""
    settings = services.settings
    timed = BodyDeadlines(
        StreamScopes(ShieldFinalSend(cast(ASGIApp, app)), (sse.STREAM_PATH,)),
        total_s=settings.body_timeout_s,
        idle_s=settings.body_idle_s,
        metrics=services.metrics,
    )
    return RequestContext(tracing.traced(HeadLimit(timed)), services.metrics)
