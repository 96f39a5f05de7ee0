"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import msgspec
from quart import Response

from edge.api import Api
from edge.assembly import Services
from schemas.health import Liveness, Readiness

api = Api()
_encoder = msgspec.json.Encoder()
JSON = "application/json; charset=utf-8"


@api.route("/health/live", summary="The process is running", tag="health", response=Liveness)
async def live(services: Services) -> Response:
    worker = max(services.settings.worker_index, 0)
    return Response(_encoder.encode(Liveness(worker=worker)), content_type=JSON)


@api.route(
    "/health/ready",
    summary="200 when Postgres and the Redis session tier answer; 503 naming what is down",
    tag="health",
    response=Readiness,
    also={503: "Not ready: `down` names each dependency that is down"},
)
async def ready(services: Services) -> Response:
    report = await services.readiness.check()
    status = 200 if report.status == "ready" else 503
    return Response(_encoder.encode(report), status=status, content_type=JSON)


@api.route("/metrics", summary="Prometheus metrics", tag="health", content_type="text/plain")
async def metrics(services: Services) -> Response:
    return Response(services.metrics.render(), content_type="text/plain; version=0.0.4")
