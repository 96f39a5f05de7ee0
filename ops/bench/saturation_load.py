"""The saturation benchmark's load generator, in its own process so that its CPU is not the
server's and can be reported on its own.

Started by ``ops/bench/saturation.py`` as ``python -m ops.bench.saturation_load`` and driven
over stdin/stdout, one JSON object a line each way (a command, then its answer). Requests go
over raw trio sockets with keep-alive (a minimal HTTP/1.1 writer and a reader for
``Content-Length`` and chunked bodies): httpx would cost more CPU per request than the
``/health/live`` under test, on the same two cores.

Authenticated requests carry a fresh DPoP proof each (its own ``jti``). Signing one costs
~0.2 ms of CPU, so ``prepare`` signs a batch just before a measured ``run`` (well inside the
BFF's 60 s ``iat`` window); a run that outlasts its batch signs the rest as it goes and says
how many (``fresh``).

Commands (``cmd`` and its fields → answer):

- ``signin`` ``sim_url`` ``group`` ``username`` ``count`` → ``devices`` (enrols and signs in
  ``count`` desktops at the simulator as ``username``, kept as ``group``)
- ``demo`` ``sim_url`` → ``stays`` (reads the demo hotel; folio charges are planned from it)
- ``prepare`` ``kind`` ``url`` ``count`` → ``prepared`` (requests signed ahead)
- ``run`` ``kind`` ``url`` ``concurrency`` ``seconds`` → ``requests``, ``errors``,
  ``seconds``, ``p50``/``p95``/``p99`` (ms), ``cpu_s`` (this process, over the run),
  ``fresh`` (requests signed during the run)
- ``quit``

Kinds: ``live`` (``GET /health/live``, also the floors'), ``heartbeat`` (group ``fd``),
``dashboard`` (warm, JSON, group ``gm``), ``mutation`` (a folio charge with a new
``Idempotency-Key``, group ``fd``).
"""

from __future__ import annotations

import random
import resource
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import trio

from edge.auth.dpop import make_proof
from ops.bench.commands import answer_commands
from ops.bench.stack import percentiles
from ops.sim.desktop import DemoDevice
from ops.sim.outbox import Planner, read_demo

API = "/bff/backoffice/v1"
APP_VERSION = "1.4.0"
TENANT, PROPERTY = "tnt-demo", "prop-demo-1"
REQUEST_TIMEOUT_S = 30.0
HEARTBEAT_BODY = msgspec.json.encode({"appVersion": APP_VERSION})
GROUP_OF = {"heartbeat": "fd", "dashboard": "gm", "mutation": "fd"}


class Closed(Exception):
    """The server closed the connection before the answer was whole."""


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request's bytes, read the whole answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: trio.SocketStream | None = None
        self.buf = bytearray()

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Status and body of the answer to ``request`` (a connection is opened if none)."""
        if self.sock is None:
            self.sock = await trio.open_tcp_stream(self.host, self.port)
            self.buf.clear()
        await self.sock.send_all(request)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            await self._more()
        lines = bytes(self.buf[:end]).split(b"\r\n")
        del self.buf[: end + 4]
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        if chunked:
            body = await self._chunked()
        else:
            body = await self._exactly(length or 0)
        if close:
            await self.close()
        return status, body

    async def _more(self) -> None:
        assert self.sock is not None
        data = await self.sock.receive_some(65536)
        if not data:
            raise Closed
        self.buf += data

    async def _exactly(self, size: int) -> bytes:
        while len(self.buf) < size:
            await self._more()
        body = bytes(self.buf[:size])
        del self.buf[:size]
        return body

    async def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            while (eol := self.buf.find(b"\r\n")) < 0:
                await self._more()
            size = int(bytes(self.buf[:eol]).split(b";", 1)[0], 16)
            del self.buf[: eol + 2]
            if size == 0:
                while (eol := self.buf.find(b"\r\n")) != 0:  # no trailers: an empty line
                    if eol > 0:
                        del self.buf[: eol + 2]
                    else:
                        await self._more()
                del self.buf[:2]
                return bytes(body)
            body += await self._exactly(size + 2)
            del body[-2:]

    async def close(self) -> None:
        if self.sock is not None:
            sock, self.sock = self.sock, None
            await sock.aclose()


def request_bytes(
    method: str, url: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> bytes:
    host = urlsplit(url).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def auth_headers(device: DemoDevice, method: str, url: str) -> dict[str, str]:
    """What every desktop call carries: the token, a fresh proof bound to it, the version."""
    assert device.tokens is not None
    token = device.tokens.access_token
    proof = make_proof(
        device.key,
        method=method,
        url=url,
        access_token=token,
        iat=time.time(),
        jti=uuid.uuid4().hex,
    )
    return {"Authorization": f"DPoP {token}", "DPoP": proof, "X-App-Version": APP_VERSION}


class Source:
    """The requests of one kind: signed ahead by :meth:`prepare`, else made on demand."""

    def __init__(self, make: Callable[[], bytes], *, signed: bool) -> None:
        self.make = make
        self.signed = signed
        self.prepared: deque[bytes] = deque()
        self.fresh = 0
        self.constant = b"" if signed else make()

    def prepare(self, count: int) -> int:
        if self.signed:
            self.prepared = deque(self.make() for _ in range(count))
        return len(self.prepared)

    def next(self) -> bytes:
        if not self.signed:
            return self.constant
        if self.prepared:
            return self.prepared.popleft()
        self.fresh += 1
        return self.make()


class LoadGenerator:
    def __init__(self) -> None:
        self.groups: dict[str, list[DemoDevice]] = {}
        self.planner: Planner | None = None
        self.sources: dict[tuple[str, str], Source] = {}
        self.turn = 0

    # --- setup ---

    async def signin(self, sim_url: str, group: str, username: str, count: int) -> dict[str, Any]:
        def one(_: int) -> DemoDevice:
            device = DemoDevice(sim_url, TENANT, "Bench desktop", client=httpx.Client(timeout=30))
            device.enroll()
            device.sign_in(username)
            return device

        def all_of_them() -> list[DemoDevice]:
            with ThreadPoolExecutor(8) as pool:
                return list(pool.map(one, range(count)))

        self.groups.setdefault(group, []).extend(await trio.to_thread.run_sync(all_of_them))
        return {"devices": len(self.groups[group])}

    async def demo(self, sim_url: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            data = await read_demo(http, sim_url, TENANT, PROPERTY)
        self.planner = Planner(data, random.Random(1))
        return {"stays": len(data.stays)}

    # --- requests ---

    def source(self, kind: str, url: str) -> Source:
        if (kind, url) not in self.sources:
            self.sources[kind, url] = self._source(kind, url)
        return self.sources[kind, url]

    def _device(self, kind: str) -> DemoDevice:
        devices = self.groups[GROUP_OF[kind]]
        self.turn += 1
        return devices[self.turn % len(devices)]

    def _source(self, kind: str, url: str) -> Source:
        if kind == "live":
            return Source(lambda: request_bytes("GET", url, "/health/live", {}), signed=False)
        if kind == "heartbeat":

            def heartbeat() -> bytes:
                device = self._device(kind)
                path = f"{API}/devices/{device.device_id}/heartbeat"
                headers = auth_headers(device, "POST", url + path)
                headers["Content-Type"] = "application/json"
                return request_bytes("POST", url, path, headers, HEARTBEAT_BODY)

            return Source(heartbeat, signed=True)
        if kind == "dashboard":

            def dashboard() -> bytes:
                path = f"{API}/dashboard"
                headers = auth_headers(self._device(kind), "GET", url + path)
                headers["Accept"] = "application/json"
                return request_bytes("GET", url, f"{path}?propertyId={PROPERTY}", headers)

            return Source(dashboard, signed=True)
        if kind == "mutation":

            def charge() -> bytes:
                assert self.planner is not None, "demo first"
                mutation = self.planner.next("charge")
                headers = auth_headers(self._device(kind), "POST", url + mutation.path)
                headers["Content-Type"] = "application/json"
                headers["Idempotency-Key"] = mutation.key
                return request_bytes("POST", url, mutation.path, headers, mutation.body)

            return Source(charge, signed=True)
        raise ValueError(f"unknown kind {kind!r}")

    def prepare(self, kind: str, url: str, count: int) -> dict[str, Any]:
        return {"prepared": self.source(kind, url).prepare(count)}

    async def run(self, kind: str, url: str, concurrency: int, seconds: float) -> dict[str, Any]:
        """``concurrency`` callers, each sending its next request as soon as the last is
        answered (closed loop), for ``seconds``; what they saw and what it cost here."""
        source = self.source(kind, url)
        source.fresh = 0
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        deadline = trio.current_time() + seconds

        async def caller() -> None:
            connection = Connection(host, port)
            try:
                while trio.current_time() < deadline:
                    request = source.next()
                    started = time.perf_counter()
                    try:
                        with trio.fail_after(REQUEST_TIMEOUT_S):
                            status, body = await connection.exchange(request)
                    except (OSError, Closed, trio.BrokenResourceError, trio.TooSlowError) as exc:
                        errors[type(exc).__name__] += 1
                        await connection.close()
                        continue
                    if status == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors[f"{status} {error_code(body)}"] += 1
            finally:
                await connection.close()

        cpu = cpu_s()
        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(caller)
        took = time.perf_counter() - began
        spent = cpu_s() - cpu
        source.prepared.clear()  # their iat ages: never sent in a later run
        p50, p95, p99 = percentiles(latencies)
        return {
            "requests": len(latencies),
            "errors": dict(errors),
            "seconds": took,
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "cpu_s": spent,
            "fresh": source.fresh,
        }


def error_code(body: bytes) -> str:
    """The envelope's ``error.code`` (API contract §3), or the body's first bytes."""
    try:
        return str(msgspec.json.decode(body)["error"]["code"])
    except (msgspec.DecodeError, KeyError, TypeError):
        return body[:60].decode("utf-8", "replace")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def serve() -> None:
    generator = LoadGenerator()
    await answer_commands(
        {
            "signin": generator.signin,
            "demo": generator.demo,
            "prepare": generator.prepare,
            "run": generator.run,
        }
    )


def main() -> None:
    trio.run(serve)


if __name__ == "__main__":
    main()
