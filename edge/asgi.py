"""ASGI middleware around the Quart app: request ids, access logs, metrics, body deadlines,
clean close."""

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


CANCEL_SCOPE_KEY = "bff.cancel_scope"


class StreamScopes:
    """Run each long-lived response (a path ending in one of ``suffixes``) in its own cancel
    scope, kept in the ASGI scope: whoever holds the stream (edge/sse/hub.py) can end it even
    while its socket write is stuck (a slow consumer), and hypercorn then closes the
    connection. Other requests pass straight through."""

    def __init__(self, app: ASGIApp, suffixes: tuple[str, ...]) -> None:
        self.app = app
        self.suffixes = suffixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).endswith(self.suffixes):
            await self.app(scope, receive, send)
            return
        with trio.CancelScope() as cancel_scope:
            scope[CANCEL_SCOPE_KEY] = cancel_scope
            await self.app(scope, receive, send)


class BodyDeadlines:
    """Bound how long a request body may take: ``total_s`` from the end of its headers, and
    ``idle_s`` of silence between two chunks.

    hypercorn bounds the headers (its keep-alive timer runs from the connection's start until a
    request's headers are complete) but, once a request has started, waits for its body
    forever; quart's own ``BODY_TIMEOUT`` covers only a handler that reads the body, for a
    minute. A late body cancels the app; if no response has started the client gets 408
    ``REQUEST_TIMEOUT`` with ``Connection: close``, and hypercorn closes the connection either
    way (the request was not read to its end). Once the body is complete, ``receive`` (which
    then only waits for the disconnect, e.g. under a stream) has no deadline.
    """

    def __init__(
        self, app: ASGIApp, *, total_s: float, idle_s: float, metrics: Metrics | None = None
    ) -> None:
        self.app = app
        self.total_s = total_s
        self.idle_s = idle_s
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = trio.current_time()
        last_chunk = started
        complete = responded = False
        late = ""  # why the body was late, once it was

        async def timed_receive() -> Message:
            nonlocal complete, late, last_chunk
            if complete:
                return await receive()
            total, idle = started + self.total_s, last_chunk + self.idle_s
            with trio.move_on_at(min(total, idle)):
                message = await receive()
                last_chunk = trio.current_time()
                complete = message["type"] != "http.request" or not message.get("more_body")
                return message
            complete = True
            late = (
                f"request body not received within {self.total_s:g} s"
                if total <= idle
                else f"request body stalled for {self.idle_s:g} s"
            )
            app_scope.cancel()  # the handler and quart's reader: neither waits any longer
            return {"type": "http.disconnect"}

        async def tracking_send(message: Message) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        with trio.CancelScope() as app_scope:
            await self.app(scope, timed_receive, tracking_send)
        if not late:
            return
        request_id = str(scope.get(REQUEST_ID_KEY, ""))
        log.warning(
            late,
            extra={
                "requestId": request_id,
                "method": scope.get("method", ""),
                "path": str(scope.get("path", ""))[:200],
                "responded": responded,
            },
        )
        if responded:
            return  # too late for a status: hypercorn closes the unfinished exchange
        if self.metrics is not None:
            self.metrics.errors.labels(Code.REQUEST_TIMEOUT.wire).inc()
        body = envelope_bytes(Code.REQUEST_TIMEOUT, late, request_id)
        await send(
            {
                "type": "http.response.start",
                "status": Code.REQUEST_TIMEOUT.status,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


MAX_HEAD_BYTES = 16 * 1024  # request line + headers (edge/server.py gives hypercorn the same)


def head_bytes(scope: Scope) -> int:
    """About how many bytes the request line and headers took on the wire."""
    line = len(scope.get("method", "")) + len(scope.get("raw_path") or b"") + 12
    query = len(scope.get("query_string") or b"")
    return line + query + sum(len(n) + len(v) + 4 for n, v in scope.get("headers", []))


class HeadLimit:
    """Refuse a request whose line and headers are over ``max_bytes``: 431
    ``HEADERS_TOO_LARGE`` with the envelope, and the connection is closed.

    hypercorn's parser applies its ``h11_max_incomplete_size`` only to a head still incomplete
    after a read; a complete head that arrived in one read (hypercorn reads up to 64 KiB at a
    time) reaches the app whatever its size. Heads the parser itself refuses are answered in
    edge/parser_errors.py.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_HEAD_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or head_bytes(scope) <= self.max_bytes:
            await self.app(scope, receive, send)
            return
        code = Code.HEADERS_TOO_LARGE
        message = f"request line and headers over {self.max_bytes} bytes"
        body = envelope_bytes(code, message, str(scope.get(REQUEST_ID_KEY, "")))
        await send(
            {
                "type": "http.response.start",
                "status": code.status,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# Methods counted under their own name; any other (a client may send any token) is "OTHER",
# so that no client can grow the metric label sets.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestContext:
    """Give each request an id, echo it, time it, count it and write one access log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Bound metric children by (method, route, status): ``labels()`` validates and locks on
        # every call, which the hot path need not pay. Routes and methods are finite (the route
        # template, KNOWN_METHODS) and so are statuses, so this stays small.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._first_byte_children: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        scope[REQUEST_ID_KEY] = request_id
        started = time.perf_counter()
        status = 0
        first_body = True

        async def tracking_send(message: Message) -> None:
            nonlocal status, first_body
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif first_body and message["type"] == "http.response.body":
                first_body = False
                self._first_byte(scope).observe(time.perf_counter() - started)
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

    def _first_byte(self, scope: Scope) -> Any:
        """The first-byte histogram's child for this request's (method, route), bound once."""
        counted, route = _labels(scope)
        child = self._first_byte_children.get((counted, route))
        if child is None:
            child = self.metrics.first_byte.labels(counted, route)
            if len(self._first_byte_children) < 10_000:
                self._first_byte_children[(counted, route)] = child
        return child

    def _record(self, scope: Scope, request_id: str, status: int, elapsed: float) -> None:
        counted, route = _labels(scope)
        method = scope.get("method", "")
        children = self._children.get((counted, route, status))
        if children is None:
            children = (
                self.metrics.requests.labels(counted, route, str(status)),
                self.metrics.latency.labels(counted, route),
            )
            if len(self._children) < 10_000:
                self._children[(counted, route, status)] = children
        children[0].inc()
        children[1].observe(elapsed)
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


def _labels(scope: Scope) -> tuple[str, str]:
    """(method as counted, route template) of a request."""
    method = scope.get("method", "")
    return (method if method in KNOWN_METHODS else "OTHER"), scope.get(ROUTE_KEY, "unmatched")


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
