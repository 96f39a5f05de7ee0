"""A tiny raw-ASGI layer for the simulator: request/response objects and a path router.

Raw ASGI instead of Quart keeps the simulator cheap per request (it serves benchmarks) and lets a
"hang" fault wait for the client to go away (``http.disconnect``) instead of holding a task forever.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import msgspec

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = "application/json"
_encoder = msgspec.json.Encoder()


class HttpError(Exception):
    """Raised by a handler: answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def decode(self, model: type[Any]) -> Any:
        """Decode the JSON body into ``model``; a bad body is a 400 naming the field."""
        try:
            return msgspec.json.decode(self.body or b"{}", type=model)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise HttpError(400, "VALIDATION_FAILED", str(exc)) from None


@dataclass
class Response:
    status: int = 200
    payload: Any = None  # a Struct / builtins encoded as JSON, or raw bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON

    def body(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        return _encoder.encode(self.payload)


def error_response(exc: HttpError) -> Response:
    payload = {"error": {"code": exc.code, "message": exc.message}}
    return Response(exc.status, payload, dict(exc.headers))


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    parts: tuple[str, ...]
    handler: Handler
    mutation: bool


class Router:
    """Routes by method and ``/segments/{param}/…``; literal segments win over parameters."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, int], list[Route]] = {}

    def add(
        self, method: str, pattern: str, handler: Handler, *, mutation: bool | None = None
    ) -> None:
        parts = tuple(p for p in pattern.split("/") if p)
        is_mutation = method != "GET" if mutation is None else mutation
        bucket = self._routes.setdefault((method, len(parts)), [])
        bucket.append(Route(method, parts, handler, is_mutation))
        bucket.sort(key=lambda r: sum(1 for p in r.parts if p.startswith("{")))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        segments = [s for s in path.split("/") if s]
        for route in self._routes.get((method, len(segments)), ()):
            params = _match(route.parts, segments)
            if params is not None:
                return route, params
        return None

    def allows(self, path: str) -> bool:
        """Does any method match this path (so a miss is 405, not 404)?"""
        segments = [s for s in path.split("/") if s]
        return any(
            _match(route.parts, segments) is not None
            for (_, n), routes in self._routes.items()
            if n == len(segments)
            for route in routes
        )


def _match(parts: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for part, segment in zip(parts, segments, strict=True):
        if part.startswith("{"):
            params[part[1:-1]] = segment
        elif part != segment:
            return None
    return params


async def read_request(scope: Scope, receive: Receive) -> Request:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    raw_query = scope.get("query_string", b"").decode("latin-1")
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    return Request(
        method=scope["method"],
        path=scope["path"],
        query=dict(parse_qsl(raw_query)),
        headers=headers,
        body=b"".join(chunks),
    )


async def send_response(send: Send, response: Response) -> None:
    body = response.body()
    headers = [(b"content-type", response.content_type.encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone away (how a hung request ends)."""
    while (await receive())["type"] != "http.disconnect":
        pass
