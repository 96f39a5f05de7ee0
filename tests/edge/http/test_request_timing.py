"""``RequestContext`` times the first byte of a response body apart from the whole response
(SLO "/dashboard first byte < 200 ms"; a stream's first byte is its opening), and each worker
samples its own resident memory (F-37)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import trio
import trio.testing

from edge.asgi import ROUTE_KEY, RequestContext
from edge.metrics import Metrics
from edge.process_stats import resident_bytes, sample_resident_memory

ROUTE = "/bff/backoffice/v1/sse/stream"


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_the_first_byte_is_timed_while_the_response_is_still_open() -> None:
    metrics = Metrics()
    first_sent, finish = trio.Event(), trio.Event()

    async def streaming_app(scope: Any, receive: Any, send: Any) -> None:
        scope[ROUTE_KEY] = ROUTE
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True})
        first_sent.set()
        await finish.wait()
        await send({"type": "http.response.body", "body": b": bye\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.disconnect"}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": ROUTE, "headers": []}
    labels = {"method": "GET", "route": ROUTE}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(RequestContext(streaming_app, metrics), scope, receive, send)
        await first_sent.wait()
        assert sample(metrics, "bff_http_first_byte_seconds_count", **labels) == 1
        assert sample(metrics, "bff_http_request_duration_seconds_count", **labels) == 0
        finish.set()
    assert sample(metrics, "bff_http_first_byte_seconds_count", **labels) == 1  # once only
    assert sample(metrics, "bff_http_request_duration_seconds_count", **labels) == 1
    first = sample(metrics, "bff_http_first_byte_seconds_sum", **labels)
    assert 0 < first <= sample(metrics, "bff_http_request_duration_seconds_sum", **labels)
    assert [m["type"] for m in sent].count("http.response.body") == 3


async def test_each_worker_samples_its_resident_memory() -> None:
    metrics = Metrics()
    rss = resident_bytes()
    assert rss is not None and rss > 10 * 2**20  # a Python process with the service imported
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample_resident_memory, metrics, 3600.0)
        await trio.testing.wait_all_tasks_blocked()  # the sampler sleeps: it has sampled
        nursery.cancel_scope.cancel()
    sampled = sample(metrics, "bff_process_resident_memory_bytes")
    assert 0.5 * rss < sampled < 2 * rss
