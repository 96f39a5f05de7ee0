"""ASGI middleware around the Quart app: request ids, access logs, metrics, clean close."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from edge.errors import Code, envelope_bytes
from edge.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("bff.access")

REQUEST_ID_KEY = "bff.request_id"
ROUTE_KEY = "bff.route"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-Id if it is a sane token, else a fresh one (hostile ids dropped)."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID_OK.match(text):
                return text
            break
    return uuid.uuid4().hex


class ShieldFinalSend:
    """Shield the last body send from cancellation.

    quart-trio cancels the request nursery when hypercorn reports ``http.disconnect`` from inside
    that final send, so hypercorn never closes a ``Connection: close`` connection nor arms the
    keep-alive timer (docs/ARCHITECTURE.md, "Known framework bugs").
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def shielded_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await self.app(scope, receive, shielded_send)


class RequestContext:
    """Give each request an id, echo it, time it, count it and write one access log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        scope[REQUEST_ID_KEY] = request_id
        started = time.perf_counter()
        status = 0

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error escaped the app", extra={"requestId": request_id})
            if status == 0:
                status = 500
                await _send_internal_error(send, request_id)
        finally:
            self.metrics.in_flight.dec()
            self._record(scope, request_id, status, time.perf_counter() - started)

    def _record(self, scope: Scope, request_id: str, status: int, elapsed: float) -> None:
        route = scope.get(ROUTE_KEY, "unmatched")
        method = scope.get("method", "")
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(elapsed)
        log.info(
            "request",
            extra={
                "requestId": request_id,
                "method": method,
                "route": route,
                "status": status,
                "latencyMs": round(elapsed * 1000, 2),
            },
        )


async def _send_internal_error(send: Send, request_id: str) -> None:
    body = envelope_bytes(Code.INTERNAL, "internal error", request_id)
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
