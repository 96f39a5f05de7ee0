"""OpenTelemetry traces, off by default (``BFF_TRACING=off|console|otlp``).

What is traced: each HTTP request (a server span named ``<METHOD> <route template>``, with the
status and the request id; a W3C ``traceparent`` from the client is honoured), each dashboard
composition (``dashboard.compose``: role, property, partial) and each upstream call
(``upstream <service> <operation>``: a client span with the outcome and how many retries it
took; the call carries ``traceparent`` to the upstream). They nest without any plumbing:
OpenTelemetry keeps the current span in a ``contextvars`` variable and Trio copies the
spawning task's context into every task it starts (``nursery.start_soon``, even into a nursery
opened elsewhere, like the dashboard engine's), so the fan-out's calls are children of the
composition, itself a child of the request that started it.

When off (the default) nothing is set up: :func:`span` returns one shared do-nothing context
manager and the request middleware is not in the stack, so the hot path creates no span
objects. ``console`` writes one JSON line per span to stderr (stdout carries the JSON logs);
``otlp`` exports over OTLP/HTTP to ``BFF_OTLP_ENDPOINT`` in batches (the SDK's
``OTEL_BSP_*`` variables tune them). Either way spans leave from the SDK's own thread.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from edge.asgi import REQUEST_ID_KEY, ROUTE_KEY, ASGIApp, Message, Receive, Scope, Send

SERVICE_NAME = "bff-backoffice-service"
CLIENT = SpanKind.CLIENT
SERVER = SpanKind.SERVER
INTERNAL = SpanKind.INTERNAL

_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()
_tracer: trace.Tracer | None = None  # None: tracing is off
_provider: TracerProvider | None = None


def enabled() -> bool:
    return _tracer is not None


def span(
    *name: str, attributes: dict[str, Any] | None = None, kind: SpanKind = INTERNAL
) -> contextlib.AbstractContextManager[Span | None]:
    """A child of the current span named ``" ".join(name)`` (joined only when on), current
    while the block runs (``None`` when off). An exception leaving the block is recorded and
    marks the span as an error."""
    if _tracer is None:
        return _OFF
    return _tracer.start_as_current_span(" ".join(name), attributes=attributes, kind=kind)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` to outgoing ``headers`` (nothing when off)."""
    if _tracer is not None:
        propagate.inject(headers)


def _one_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"


def _exporter(mode: str, endpoint: str) -> SpanExporter:
    if mode == "console":
        return ConsoleSpanExporter(out=sys.stderr, formatter=_one_line)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


def configure(
    mode: str, endpoint: str = "", *, instance: str = "", exporter: SpanExporter | None = None
) -> None:
    """Turn tracing on (``console``, ``otlp``; or any ``exporter``, for tests) or leave it off."""
    global _tracer, _provider
    if mode == "off" and exporter is None:
        return
    resource = Resource.create({"service.name": SERVICE_NAME, "service.instance.id": instance})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter or _exporter(mode, endpoint)))
    _provider, _tracer = provider, provider.get_tracer("edge")


def shutdown() -> None:
    """Flush what is batched and turn tracing off."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


@contextlib.contextmanager
def configured(mode: str, endpoint: str, *, instance: str = "") -> Iterator[None]:
    configure(mode, endpoint, instance=instance)
    try:
        yield
    finally:
        shutdown()


class TracedRequests:
    """ASGI middleware: one server span per HTTP request (see the module doc)."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", ""))
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        status = 0

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with self.tracer.start_as_current_span(
            f"HTTP {method}",
            context=propagate.extract(carrier),
            kind=SERVER,
            attributes={"http.request.method": method, "url.path": str(scope.get("path", ""))},
        ) as current:
            try:
                await self.app(scope, receive, tracking_send)
            finally:
                route = str(scope.get(ROUTE_KEY, "unmatched"))
                current.update_name(f"{method} {route}")
                current.set_attribute("http.route", route)
                current.set_attribute("http.response.status_code", status)
                current.set_attribute("bff.request_id", str(scope.get(REQUEST_ID_KEY, "")))
                if status >= 500:
                    current.set_status(Status(StatusCode.ERROR))


def traced(app: ASGIApp) -> ASGIApp:
    """``app`` with request spans when tracing is on; ``app`` itself when off."""
    return app if _tracer is None else TracedRequests(app, _tracer)
