"""The dependency fault proxy: a TCP relay in front of Redis, Postgres and Pub/Sub for drills.

The chaos drills (``./ops/chaos drill``) need to take a dependency down, or make it hang, for the
BFF processes only: the real servers are shared with other stacks and tests on the machine, and
stopping them would break those. So ``./ops/stack up --instances N`` points every BFF process at
this proxy, one listen port per dependency, and a drill flips a route's mode over HTTP:

* ``pass``: bytes flow both ways (the normal case);
* ``down``: every open connection is closed at once and new ones are accepted then closed, so a
  client sees EOF/reset immediately, as from a crashed server;
* ``hang``: open connections stay open but no byte moves either way, and new connections are
  accepted and never forwarded: a black hole, where the client only has its own timeouts.

Only ``down`` closes connections. ``hang`` then ``pass`` is a network partition that heals: the
frozen connections carry on (the bytes they held are delivered), and connections accepted
during the hang are forwarded from then on. That is what long-lived streams (a gRPC streaming
pull, a Redis subscription) see after a real blip, and clients that gave up on a request meanwhile
have closed that connection themselves (redis-py and asyncpg do on a timeout). A failover, where
the old connections die, is ``hang`` then ``down`` then ``pass``.

Usage::

    python -m ops.localstack.faultproxy --control 127.0.0.1:9000 \\
        --route redis-cache=127.0.0.1:9001:127.0.0.1:6379 \\
        --route postgres=127.0.0.1:9002:127.0.0.1:5432

Control endpoint (HTTP/1.1, JSON): ``GET /proxies``, ``POST /proxies/<name>`` with
``{"mode": "pass"|"down"|"hang"}`` (404 unknown name, 400 bad mode), ``GET /health``.
Trio only: every connection task lives in the proxy's nursery, reads are bounded to 64 KiB, and a
route holds at most ``--max-connections`` connections (beyond: accepted then closed, counted).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import trio

Mode = Literal["pass", "down", "hang"]
MODES: tuple[str, ...] = get_args(Mode)
READ_BYTES = 65_536
MAX_CONNECTIONS = 4_096
_CLOSED = (trio.BrokenResourceError, trio.ClosedResourceError)


def log(line: str) -> None:
    print(f"[faultproxy] {line}", flush=True)


@dataclass
class Route:
    """One dependency: where the proxy listens, where it forwards, and how it behaves now."""

    name: str
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int
    max_connections: int = MAX_CONNECTIONS
    mode: Mode = "pass"
    refused: int = 0  # connections closed at once because the route was full
    _open: set[trio.CancelScope] = field(default_factory=set)
    _passing: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self._passing.set()

    @property
    def target(self) -> str:
        return f"{self.target_host}:{self.target_port}"

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "listen": f"{self.listen_host}:{self.listen_port}",
            "target": self.target,
            "connections": len(self._open),
            "refused": self.refused,
        }

    def set_mode(self, mode: Mode) -> None:
        """Switch modes; ``down`` closes every open connection, ``pass`` releases held ones."""
        previous, self.mode = self.mode, mode
        if mode == "pass":
            self._passing.set()
        elif self._passing.is_set():
            self._passing = trio.Event()
        closed = 0
        if mode == "down":
            closed = len(self._open)
            for scope in self._open:
                scope.cancel()
            self._open.clear()  # closing now: they no longer count, even before their tasks end
        log(f"{self.name}: {previous} -> {mode} (closed {closed} open connections)")

    async def handle(self, client: trio.SocketStream) -> None:
        """One accepted client connection, for as long as it lives."""
        async with client:
            if self.mode == "down":
                return
            if len(self._open) >= self.max_connections:
                self.refused += 1
                return
            with trio.CancelScope() as scope:
                self._open.add(scope)
                try:
                    await self._passing.wait()  # hang: held, forwarded once the route passes
                    await self._forward(client)
                finally:
                    self._open.discard(scope)

    async def _forward(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(self.target_host, self.target_port)
        except OSError as exc:
            log(f"{self.name}: cannot reach {self.target}: {exc}")
            return
        async with upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
            nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope
    ) -> None:
        """Copy one direction; when either side ends, the whole connection ends."""
        try:
            while data := await source.receive_some(READ_BYTES):
                await self._passing.wait()  # hang: hold the bytes, forward nothing
                await sink.send_all(data)
        except _CLOSED:
            pass
        finally:
            both.cancel()


# -- the control endpoint -----------------------------------------------------------------

MAX_REQUEST_BYTES = 16_384


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def route_request(routes: dict[str, Route], method: str, path: str, body: bytes) -> Answer:
    """What the control endpoint answers to one request."""
    if path == "/health" and method == "GET":
        return Answer(200, {"status": "ok"})
    if path == "/proxies" and method == "GET":
        return Answer(200, {name: route.describe() for name, route in routes.items()})
    if path.startswith("/proxies/"):
        route = routes.get(path.removeprefix("/proxies/"))
        if route is None:
            return Answer(404, {"error": f"no proxy named {path.removeprefix('/proxies/')!r}"})
        if method == "GET":
            return Answer(200, route.describe())
        if method == "POST":
            mode = _mode_in(body)
            if mode is None:
                return Answer(400, {"error": f"mode must be one of {', '.join(MODES)}"})
            route.set_mode(mode)
            return Answer(200, route.describe())
        return Answer(405, {"error": "GET or POST"})
    return Answer(404, {"error": "GET /health, GET /proxies, POST /proxies/<name>"})


def _mode_in(body: bytes) -> Mode | None:
    try:
        mode = json.loads(body or b"{}").get("mode")
    except (ValueError, AttributeError):
        return None
    return cast(Mode, mode) if mode in MODES else None


async def read_request(stream: trio.SocketStream) -> tuple[str, str, bytes] | None:
    """One HTTP/1.1 request (method, path, body), or None when it is malformed or too big."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk or len(data) > MAX_REQUEST_BYTES:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    length = 0
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    if length > MAX_REQUEST_BYTES:
        return None
    while len(body) < length:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        body += chunk
    return parts[0], parts[1].split("?")[0], body[:length]


def render(answer: Answer) -> bytes:
    payload = json.dumps(answer.body).encode()
    head = (
        f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + payload


def control_handler(routes: dict[str, Route]) -> Any:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                with trio.move_on_after(10):
                    request = await read_request(stream)
                    answer = (
                        Answer(400, {"error": "malformed request"})
                        if request is None
                        else route_request(routes, *request)
                    )
                    await stream.send_all(render(answer))
            except _CLOSED:
                pass

    return handle


# -- the process --------------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected host:port")
    return host, int(port)


def parse_route(text: str) -> Route:
    name, _, spec = text.partition("=")
    parts = spec.split(":")
    if not name or len(parts) != 4 or not (parts[1].isdigit() and parts[3].isdigit()):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected name=listen-host:listen-port:target-host:target-port"
        )
    return Route(name, parts[0], int(parts[1]), parts[2], int(parts[3]))


async def serve(
    control: tuple[str, int],
    routes: list[Route],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on every route and on the control address until cancelled."""
    by_name = {route.name: route for route in routes}
    async with trio.open_nursery() as nursery:
        for route in routes:
            listeners = await trio.open_tcp_listeners(route.listen_port, host=route.listen_host)
            nursery.start_soon(trio.serve_listeners, route.handle, listeners)
            log(f"{route.name}: {route.listen_host}:{route.listen_port} -> {route.target}")
        control_listeners = await trio.open_tcp_listeners(control[1], host=control[0])
        nursery.start_soon(trio.serve_listeners, control_handler(by_name), control_listeners)
        log(f"control on http://{control[0]}:{control[1]}")
        task_status.started()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ops.localstack.faultproxy", description="A TCP fault proxy for drills"
    )
    parser.add_argument("--control", type=parse_address, required=True, help="host:port")
    parser.add_argument(
        "--route",
        type=parse_route,
        action="append",
        default=[],
        help="name=listen-host:listen-port:target-host:target-port (repeatable)",
    )
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS)
    args = parser.parse_args(argv)
    if not args.route:
        parser.error("at least one --route")
    for route in args.route:
        route.max_connections = args.max_connections
    try:
        trio.run(serve, args.control, args.route)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
