"""The SSE benchmark's client: thousands of ``text/event-stream`` responses read in one process.

Started by ``ops/bench/sse.py`` as ``python -m ops.bench.sse_client '<BenchStack as JSON>'``
and driven over stdin/stdout, one JSON object a line each way (a command, then its answer).
Each stream is a raw trio socket with a minimal HTTP/1.1 request, a chunked-transfer decoder
and an SSE parser (httpx would cost more than the server under test); an event's arrival is
stamped with ``time.time()`` when the bytes holding it are read, so the orchestrating process,
which stamps the publish on the same clock, computes the latencies.

Commands (``cmd`` and its fields → answer):

- ``signin`` ``count`` → ``sessions`` (enrols and signs in ``count`` devices at the simulator)
- ``heartbeat`` ``first`` ``count`` → ``ok``, ``errors``: one BFF heartbeat per device
- ``open`` ``target`` ``url`` ``path`` ``count`` ``concurrency`` [``first``, ``auth``] →
  ``opened``, ``failed``, ``errors``, ``seconds``, ``open_latencies``: opens ``count`` streams
  (devices ``first…`` signed in with DPoP when ``auth``; ``{i}`` in ``path`` is the index)
- ``stats`` ``target`` → ``live``, ``keepalives``, ``events``, ``ended``
- ``wait_all`` ``target`` ``key`` ``timeout`` → ``arrivals`` (of the ``alert`` whose
  ``alertId`` is ``key``, on the streams live when asked, until all have it or the timeout)
- ``wait_one`` ``target`` ``index`` ``timeout`` → ``arrival`` (of a ``session``
  ``force_logout`` on that stream) and ``ended`` (whether the server then closed it)
- ``close`` ``target`` → ``closed``; ``quit``
"""

from __future__ import annotations

import base64
import json
import resource
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec
import trio

from edge.auth.dpop import make_proof
from ops.bench.commands import answer_commands
from ops.bench.heartbeat import APP_VERSION, Device, enroll, peak
from ops.bench.stack import BenchStack

_json = msgspec.json.Decoder()


def raise_fd_limit() -> int:
    """The soft ``RLIMIT_NOFILE`` up to the hard one (children inherit it); returns it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def session_of(token: str) -> str:
    """The ``sid`` claim of an access token (read, not verified: the client's own token)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sid"])


@dataclass(eq=False)
class Stream:
    index: int
    state: str = "opening"  # opening → open → ended | failed
    keepalives: int = 0
    events: int = 0
    session: tuple[str, float] | None = None  # (kind, arrival) of the last ``session`` event
    ended: str | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


@dataclass(eq=False)
class Target:
    """One server's streams, and the arrival times of its broadcast events."""

    name: str
    streams: list[Stream] = field(default_factory=list)
    alerts: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    changed: trio.Event = field(default_factory=trio.Event)  # set on every arrival or end

    async def until(self, done: Callable[[], bool]) -> None:
        while not done():
            self.changed = trio.Event()
            await self.changed.wait()

    def live(self) -> list[Stream]:
        return [s for s in self.streams if s.state == "open"]


class Parser:
    """Chunked transfer decoding, then SSE blocks (separated by a blank line)."""

    def __init__(self, stream: Stream, target: Target) -> None:
        self.stream = stream
        self.target = target
        self.raw = bytearray()
        self.body = bytearray()
        self.done = False  # the last chunk was read

    def feed(self, data: bytes, now: float) -> None:
        raw = self.raw
        raw += data
        while not self.done:
            eol = raw.find(b"\r\n")
            if eol < 0:
                break
            size = int(bytes(raw[:eol]).split(b";", 1)[0], 16)
            if size == 0:
                self.done = True
                break
            if len(raw) < eol + 2 + size + 2:
                break
            self.body += raw[eol + 2 : eol + 2 + size]
            del raw[: eol + 4 + size]
        body = self.body
        while True:
            end = body.find(b"\n\n")
            if end < 0:
                return
            block = bytes(body[:end])
            del body[: end + 2]
            self.block(block, now)

    def block(self, block: bytes, now: float) -> None:
        if block.startswith(b":"):
            self.stream.keepalives += 1
            return
        event = data = b""
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                event = line[6:].strip()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
        if not data:
            return  # retry:
        self.stream.events += 1
        if event == b"alert":
            alert_id = str(_json.decode(data)["alertId"])
            self.target.alerts.setdefault(alert_id, []).append(now)
        elif event == b"session":
            self.stream.session = (str(_json.decode(data)["kind"]), now)
        self.target.changed.set()


async def read_head(sock: trio.SocketStream) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        more = await sock.receive_some(65536)
        if not more:
            raise OSError("connection closed before the response head")
        buf += more
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


class Client:
    def __init__(self, stack: BenchStack, nursery: trio.Nursery) -> None:
        self.stack = stack
        self.nursery = nursery
        self.devices: list[Device] = []
        self.targets: dict[str, Target] = {}

    # --- commands ---

    async def signin(self, count: int, threads: int = 8) -> dict[str, Any]:
        devices = await trio.to_thread.run_sync(enroll, self.stack, count, threads)
        self.devices += devices
        return {"sessions": [session_of(d.token) for d in devices]}

    async def heartbeat(self, first: int, count: int) -> dict[str, Any]:
        """One authenticated heartbeat per device (activates its DeviceActor in the BFF)."""
        ok = errors = 0
        for start in range(first, first + count, 16):  # gently: little transient garbage
            phase = await peak(
                self.stack, self.devices[start : min(start + 16, first + count)], 1e9
            )
            ok, errors = ok + len(phase.latencies), errors + phase.errors
        return {"ok": ok, "errors": errors}

    async def open(
        self,
        target: str,
        url: str,
        path: str,
        count: int,
        concurrency: int,
        first: int = 0,
        auth: bool = False,
    ) -> dict[str, Any]:
        tgt = self.targets.setdefault(target, Target(target))
        tgt.errors.clear()
        limiter = trio.CapacityLimiter(concurrency)
        latencies: list[float] = []
        pending = count
        all_done = trio.Event()
        began = time.perf_counter()

        def opened(latency: float | None) -> None:
            nonlocal pending
            if latency is not None:
                latencies.append(latency)
            pending -= 1
            if pending == 0:
                all_done.set()

        batch = []
        for n in range(count):
            stream = Stream(len(tgt.streams))
            tgt.streams.append(stream)
            batch.append(stream)
            device = self.devices[first + n] if auth else None
            self.nursery.start_soon(self._run, tgt, stream, url, path, device, limiter, opened)
        if count:
            await all_done.wait()
        seconds = time.perf_counter() - began
        return {
            "opened": sum(1 for s in batch if s.state == "open"),
            "failed": sum(1 for s in batch if s.state == "failed"),
            "errors": dict(tgt.errors),
            "seconds": seconds,
            "open_latencies": latencies,
        }

    def stats(self, target: str) -> dict[str, Any]:
        tgt = self.targets[target]
        return {
            "live": len(tgt.live()),
            "keepalives": sum(s.keepalives for s in tgt.streams),
            "events": sum(s.events for s in tgt.streams),
            "ended": dict(Counter(s.ended for s in tgt.streams if s.ended)),
        }

    async def wait_all(self, target: str, key: str, timeout: float) -> dict[str, Any]:
        tgt = self.targets[target]
        expected = len(tgt.live())
        with trio.move_on_after(timeout):
            await tgt.until(lambda: len(tgt.alerts.get(key, ())) >= expected)
        return {"expected": expected, "arrivals": list(tgt.alerts.get(key, ()))}

    async def wait_one(self, target: str, index: int, timeout: float) -> dict[str, Any]:
        tgt = self.targets[target]
        stream = tgt.streams[index]

        def logged_out() -> bool:
            return stream.session is not None and stream.session[0] == "force_logout"

        with trio.move_on_after(timeout):
            await tgt.until(logged_out)
        arrival = stream.session[1] if logged_out() and stream.session else None
        with trio.move_on_after(2.0):  # the server ends the stream after it
            await tgt.until(lambda: stream.state != "open")
        return {"arrival": arrival, "ended": stream.ended}

    def close(self, target: str) -> dict[str, Any]:
        tgt = self.targets[target]
        live = tgt.live()
        for stream in live:
            stream.ended = "closed by client"
            stream.scope.cancel()
        return {"closed": len(live)}

    # --- one stream ---

    async def _run(
        self,
        tgt: Target,
        stream: Stream,
        url: str,
        path: str,
        device: Device | None,
        limiter: trio.CapacityLimiter,
        opened: Callable[[float | None], None],
    ) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target_path = path.format(i=stream.index)
        with stream.scope:
            try:
                async with limiter:
                    began = time.perf_counter()
                    sock = await trio.open_tcp_stream(host, port)
                    await sock.send_all(self._request(host, port, target_path, device))
                    status, headers, rest = await read_head(sock)
                    if status != 200 or "chunked" not in headers.get("transfer-encoding", ""):
                        tgt.errors[f"{status} {rest[:160].decode('utf-8', 'replace')}"] += 1
                        stream.state = "failed"
                        await sock.aclose()
                        opened(None)
                        return
                    stream.state = "open"
                    opened(time.perf_counter() - began)
            except OSError as exc:
                tgt.errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                stream.state = "failed"
                opened(None)
                return
            parser = Parser(stream, tgt)
            try:
                async with sock:
                    if rest:
                        parser.feed(rest, time.time())
                    while not parser.done:
                        data = await sock.receive_some(65536)
                        if not data:
                            break
                        parser.feed(data, time.time())
                stream.ended = "server closed" if parser.done else "connection closed"
            except (OSError, trio.BrokenResourceError) as exc:
                stream.ended = f"{type(exc).__name__}"
            finally:
                stream.state = "ended"
                tgt.changed.set()

    def _request(self, host: str, port: int, path: str, device: Device | None) -> bytes:
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Accept: text/event-stream",
            f"X-App-Version: {APP_VERSION}",
        ]
        if device is not None:
            url = f"http://{host}:{port}{path.split('?', 1)[0]}"
            proof = make_proof(
                device.key,
                method="GET",
                url=url,
                access_token=device.token,
                iat=time.time(),
                jti=uuid.uuid4().hex,
            )
            lines += [f"Authorization: DPoP {device.token}", f"DPoP: {proof}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def serve(stack: BenchStack) -> None:
    async with trio.open_nursery() as nursery:
        client = Client(stack, nursery)
        await answer_commands(
            {
                "signin": client.signin,
                "heartbeat": client.heartbeat,
                "open": client.open,
                "stats": client.stats,
                "wait_all": client.wait_all,
                "wait_one": client.wait_one,
                "close": client.close,
            }
        )
        nursery.cancel_scope.cancel()


def main() -> None:
    raise_fd_limit()
    stack = BenchStack(**json.loads(sys.argv[1]))
    trio.run(serve, stack)


if __name__ == "__main__":
    main()
