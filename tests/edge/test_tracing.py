"""OpenTelemetry traces (edge/tracing.py): off by default at no cost, and with ``BFF_TRACING=otlp``
one dashboard request of a real BFF process is one trace: the request's server span, the
composition under it, and every upstream call of the fan-out under that, exported over
OTLP/HTTP to a collector this test runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from edge import tracing
from tests.support.dashboard import P
from tests.support.desktop import Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.procs import wait_until
from tests.support.sim import SimHandle

DASHBOARD = "/bff/backoffice/v1/dashboard"


@dataclass(frozen=True)
class Exported:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]


class Collector:
    """An OTLP/HTTP traces endpoint: decodes each export and keeps its spans."""

    def __init__(self) -> None:
        self.spans: list[Exported] = []
        lock = threading.Lock()
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            spans.extend(_exported(s) for s in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value") or "string_value")


def _exported(span: Any) -> Exported:
    return Exported(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        kind=span.kind,
        attributes={a.key: _value(a.value) for a in span.attributes},
    )


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    yield found
    found.close()


def test_tracing_is_off_by_default_and_then_costs_nothing() -> None:
    assert not tracing.enabled()
    with tracing.span("upstream", "x", "y") as span:
        assert span is None
    assert tracing.span("a") is tracing.span("b")  # one shared do-nothing context manager

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    assert tracing.traced(app) is app  # no middleware in the stack
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}


def test_one_dashboard_request_is_one_trace_across_the_fan_out(
    start_bff: ServiceFactory, sim: SimHandle, collector: Collector
) -> None:
    bff = start_bff(
        SIM_URL=sim.url,
        BFF_TRACING="otlp",
        BFF_OTLP_ENDPOINT=collector.url,
        OTEL_BSP_SCHEDULE_DELAY="100",  # the SDK's batch delay (ms): export soon after
    )
    desk = Desktop(bff.url, sim.url, "fd.demo")
    answer = desk.get(DASHBOARD, params={"propertyId": P})
    assert answer.status_code == 200, answer.text
    request_id = answer.headers["x-request-id"]

    def request_span() -> Exported | None:
        return next(
            (s for s in collector.spans if s.attributes.get("bff.request_id") == request_id),
            None,
        )

    wait_until(lambda: request_span() is not None, 20, "the dashboard request's span")
    root = request_span()
    assert root is not None
    assert root.name == f"GET {DASHBOARD}" and root.attributes["http.response.status_code"] == 200
    assert root.kind == 2  # SERVER

    def in_trace() -> list[Exported]:
        return [s for s in collector.spans if s.trace_id == root.trace_id]

    def composed() -> list[Exported]:
        return [s for s in in_trace() if s.name == "dashboard.compose"]

    wait_until(lambda: len(composed()) == 1, 20, "the composition's span")
    [composition] = composed()
    assert composition.parent_id == root.span_id
    assert composition.attributes["bff.role"] == "front_desk"
    assert composition.attributes["bff.property"] == P

    def calls() -> list[Exported]:
        return [s for s in in_trace() if s.name.startswith("upstream ")]

    def fanned_out() -> list[Exported]:
        return [s for s in calls() if s.parent_id == composition.span_id]

    wait_until(lambda: len(fanned_out()) >= 3, 20, "the upstream calls' spans")
    fan_out = fanned_out()
    # the auth chain's own calls (tenant status, keys), if any, hang off the request itself
    assert {s.parent_id for s in calls()} <= {composition.span_id, root.span_id}
    assert len({s.attributes["peer.service"] for s in fan_out}) >= 3
    for call in fan_out:
        assert call.kind == 3  # CLIENT
        assert call.name == f"upstream {call.attributes['peer.service']} " + str(
            call.attributes["bff.upstream.operation"]
        )
        assert call.attributes["bff.upstream.outcome"] == "ok"
        assert call.attributes["bff.upstream.retries"] == 0
