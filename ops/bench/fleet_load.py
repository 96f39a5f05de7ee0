"""One load process of the fleet benchmark: a slice of the fleet's tenants, every device of
them a desktop of its own (its own DPoP key, enrolled and signed in at the simulator, its own
SSE stream and connections).

Started by ``ops/bench/fleet.py`` as ``python -m ops.bench.fleet_load <index>`` and driven over
stdin/stdout, one JSON object a line each way (as ``saturation_load`` and ``sse_client``):

- ``setup`` ``plan`` (a msgpack :class:`LoadPlan` file) → ``devices``, ``failed``, ``seconds``:
  enrols and signs in every device of the slice, 16 at a time
- ``demo`` → ``seconds``: reads each tenant's hotel from the simulator (what a desktop's replica
  holds), so its offline queues are valid when sent in order (``ops.sim.outbox.Planner``)
- ``open`` → ``opened``, ``failed``, ``seconds``, ``latencies``: one SSE stream per device
- ``live`` ``seconds`` ``concurrency`` → the bare ``/health/live`` baseline, closed loop
  (``saturation_load.LoadGenerator``)
- ``run`` ``start_at`` (``time.time()``) ``seconds`` ``out`` → ``samples``: the plan's tasks,
  each at its time (open loop), plus what the streams ask for (an alert arriving at a tenant's
  first desk is acknowledged, a suggestion decided); writes a msgpack :class:`LoadResult`
- ``quit``

Requests go over raw trio sockets (``saturation_load.Connection``): httpx would cost more CPU
than the requests under test. A device keeps idle keep-alive connections for
:data:`IDLE_S` (the BFF closes them after 5 s), as a desktop's HTTP stack does; every request
carries a fresh DPoP proof, signed before its clock starts.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import trio

from ops.bench.commands import answer_commands
from ops.bench.fleet_model import (
    ACK,
    DASHBOARD,
    DECIDE,
    FIRST_BYTE,
    HANDSHAKE,
    HEARTBEAT,
    LOCK,
    MUTATION,
    QUEUE_LENGTH,
    REPLAY,
    WORKBENCH,
    WORKBENCH_BOARDS,
    LoadPlan,
    LoadResult,
    Sample,
    Task,
    property_id,
    tenant_id,
    username_of,
)
from ops.bench.saturation_load import (
    API,
    HEARTBEAT_BODY,
    Closed,
    Connection,
    LoadGenerator,
    auth_headers,
    cpu_s,
    error_code,
    request_bytes,
)
from ops.bench.sse_client import Parser, Stream, Target, raise_fd_limit, read_head
from ops.bench.stack import percentiles
from ops.sim.catalog import DEMO_PASSWORD
from ops.sim.desktop import DemoDevice
from ops.sim.outbox import KINDS, Kind, Planner, QueuedMutation, read_demo
from schemas.upstream.iam import TokenResponse

IDLE_S = 3.0  # reuse a keep-alive connection only this long (the BFF's timeout is 5 s)
TIMEOUT_S = 30.0
DRAIN_S = 30.0  # after the window, queues still draining get this long, then are cut
SIGNIN_CONCURRENCY = 16
OPEN_CONCURRENCY = 32
OPEN_ATTEMPTS = 5
DEMO_CONCURRENCY = 8  # hotels read at once (each a few dozen simulator calls)
CHANNELS = "ai,alerts,dashboard,session"
QUEUE_KINDS: tuple[Kind, ...] = ("check_in", "check_out", "charge", "housekeeping", "maintenance")
_json = msgspec.json.Decoder()


class TimedConnection(Connection):
    """A keep-alive connection that notes when it was last used and when the first bytes of
    the current answer arrived (a streamed dashboard's first byte)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.last_used = 0.0
        self.first_byte: float | None = None

    async def _more(self) -> None:
        await super()._more()
        if self.first_byte is None:
            self.first_byte = time.perf_counter()


@dataclass(eq=False)
class Desk:
    """One desktop: its device, its idle connections, its stream."""

    tenant: int
    index: int
    demo: DemoDevice
    idle: list[TimedConnection] = field(default_factory=list)
    stream: Stream | None = None

    @property
    def property_id(self) -> str:
        return property_id(self.tenant)

    async def take(self, host: str, port: int) -> TimedConnection:
        while self.idle:
            conn = self.idle.pop()
            if time.perf_counter() - conn.last_used < IDLE_S:
                return conn
            await conn.close()
        return TimedConnection(host, port)

    def give(self, conn: TimedConnection) -> None:
        conn.last_used = time.perf_counter()
        self.idle.append(conn)


class FleetParser(Parser):
    """SSE blocks of one desk's stream: keep-alives counted, alerts and suggestions stamped
    with their arrival and handed to ``on_event``."""

    def __init__(self, stream: Stream, target: Target, on_event: Callable[[str, float], None]):
        super().__init__(stream, target)
        self.on_event = on_event

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
            return
        self.stream.events += 1
        if event == b"alert":
            self.on_event(f"alert:{_json.decode(data)['alertId']}", now)
        elif event == b"ai.suggestion":
            self.on_event(f"ai:{_json.decode(data)['suggestionId']}", now)
        elif event == b"session":
            self.stream.session = (str(_json.decode(data).get("kind")), now)


class FleetLoad:
    def __init__(self, index: int, nursery: trio.Nursery) -> None:
        self.index = index
        self.nursery = nursery  # the streams live here, across commands
        self.plan = LoadPlan(bff_url="", sim_url="", tenants=[], tasks=[], seed=0)
        self.host, self.port = "127.0.0.1", 80
        self.desks: dict[tuple[int, int], Desk] = {}
        self.planners: dict[int, Planner] = {}
        self.chain_tail: dict[str, trio.Event] = {}
        self.samples: list[Sample] = []
        self.arrivals: dict[str, list[float]] = {}
        self.ended: Counter[str] = Counter()
        self.target = Target("bff")
        self.sync_http = httpx.Client()  # DemoDevice wants one; every call here is async
        self.rng = random.Random()
        self.start = 0.0  # trio clock at the window's opening
        self.end = 0.0
        self.window: trio.Nursery | None = None
        self.lags: list[float] = []  # seconds each task started after its time

    # --- setup ---------------------------------------------------------------------------

    async def setup(self, plan: str) -> dict[str, Any]:
        raw = await trio.Path(plan).read_bytes()
        self.plan = msgspec.msgpack.decode(raw, type=LoadPlan)
        self.rng = random.Random(self.plan.seed * 1000 + self.index)
        parts = urlsplit(self.plan.bff_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        began = time.perf_counter()
        failed: Counter[str] = Counter()
        limiter = trio.CapacityLimiter(SIGNIN_CONCURRENCY)
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as http, trio.open_nursery() as nursery:
            for part in self.plan.tenants:
                for index in range(part.devices):
                    nursery.start_soon(self._sign_in, http, limiter, part.number, index, failed)
        return {
            "devices": len(self.desks),
            "failed": dict(failed),
            "seconds": time.perf_counter() - began,
        }

    async def _sign_in(
        self,
        http: httpx.AsyncClient,
        limiter: trio.CapacityLimiter,
        tenant: int,
        index: int,
        failed: Counter[str],
    ) -> None:
        async with limiter:
            name = f"Fleet desk {index}"
            demo = DemoDevice(self.plan.sim_url, tenant_id(tenant), name, self.sync_http)
            try:
                enrolled = await http.post(
                    demo.url("/iam/v1/devices/enroll"),
                    json={
                        "tenantId": demo.tenant_id,
                        "deviceName": demo.name,
                        "publicJwk": demo.public_jwk(),
                    },
                )
                enrolled.raise_for_status()
                demo.device_id = enrolled.json()["deviceId"]
                url = demo.url("/iam/v1/sessions")
                signed = await http.post(
                    url,
                    headers={"DPoP": demo.proof("POST", url)},
                    json={
                        "tenantId": demo.tenant_id,
                        "deviceId": demo.device_id,
                        "username": username_of(index),
                        "password": DEMO_PASSWORD,
                    },
                )
                signed.raise_for_status()
            except httpx.HTTPError as exc:
                failed[type(exc).__name__] += 1
                return
            demo.tokens = msgspec.json.decode(signed.content, type=TokenResponse)
            self.desks[tenant, index] = Desk(tenant, index, demo)

    async def demo(self) -> dict[str, Any]:
        began = time.perf_counter()
        limiter = trio.CapacityLimiter(DEMO_CONCURRENCY)

        async def one(http: httpx.AsyncClient, number: int) -> None:
            async with limiter:
                sim, tenant, hotel = self.plan.sim_url, tenant_id(number), property_id(number)
                data = await read_demo(http, sim, tenant, hotel)
            self.planners[number] = Planner(data, random.Random(f"{self.plan.seed}:{number}"))

        async with httpx.AsyncClient(timeout=TIMEOUT_S) as http, trio.open_nursery() as nursery:
            for part in self.plan.tenants:
                nursery.start_soon(one, http, part.number)
        return {"seconds": time.perf_counter() - began}

    # --- streams -------------------------------------------------------------------------

    async def open(self) -> dict[str, Any]:
        limiter = trio.CapacityLimiter(OPEN_CONCURRENCY)
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        began = time.perf_counter()
        async with trio.open_nursery() as waiting:
            for desk in self.desks.values():
                done = trio.Event()
                self.nursery.start_soon(self._hold, desk, limiter, latencies, failures, done)
                waiting.start_soon(done.wait)
        return {
            "opened": len(latencies),
            "failed": dict(failures),
            "seconds": time.perf_counter() - began,
            "latencies": latencies,
        }

    async def _hold(
        self,
        desk: Desk,
        limiter: trio.CapacityLimiter,
        latencies: list[float],
        failures: Counter[str],
        done: trio.Event,
    ) -> None:
        """Open the desk's stream, then read it until the server or the process ends it."""
        try:
            opened = await self._open(desk, limiter, failures)
        finally:
            done.set()
        if opened is None:
            return
        sock, rest, latency = opened
        latencies.append(latency)
        stream = desk.stream = Stream(desk.index, state="open")
        parser = FleetParser(stream, self.target, lambda key, now: self._arrived(desk, key, now))
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
            stream.ended = type(exc).__name__
        finally:
            stream.state = "ended"
            self.ended[stream.ended or "cancelled"] += 1

    async def _open(
        self, desk: Desk, limiter: trio.CapacityLimiter, failures: Counter[str]
    ) -> tuple[trio.SocketStream, bytes, float] | None:
        """The stream's response head, retried as a desktop does (a 503 or a lost connection:
        again after a jittered backoff, with a fresh proof); the latency of the last try."""
        path = f"{API}/sse/stream"
        query = f"?propertyId={desk.property_id}&channels={CHANNELS}"
        for attempt in range(OPEN_ATTEMPTS):
            if attempt:
                failures["retried"] += 1
                await trio.sleep(self.rng.uniform(0.5, 1.0) * 2**attempt)
            headers = auth_headers(desk.demo, "GET", self.plan.bff_url + path)
            headers["Accept"] = "text/event-stream"
            request = request_bytes("GET", self.plan.bff_url, path + query, headers)
            async with limiter:
                began = time.perf_counter()
                try:
                    sock = await trio.open_tcp_stream(self.host, self.port)
                    await sock.send_all(request)
                    status, _headers, rest = await read_head(sock)
                except OSError as exc:
                    failure = type(exc).__name__
                    continue
                if status == 200:
                    return sock, rest, time.perf_counter() - began
                await sock.aclose()
                failure = str(status)
                if status != 503:
                    break
        failures[failure] += 1
        return None

    def _arrived(self, desk: Desk, key: str, now: float) -> None:
        """An alert or a suggestion reached a stream: stamped; the tenant's first desk acts
        on it while the window is open (acknowledge, decide)."""
        self.arrivals.setdefault(key, []).append(now)
        window = self.window
        if desk.index != 0 or window is None or trio.current_time() >= self.end:
            return
        kind, _, item = key.partition(":")
        if kind == "alert":
            path, body = f"{API}/alerts/{item}/acknowledge", {"propertyId": desk.property_id}
            window.start_soon(self._call_json, desk, ACK, path, body)
        else:
            path = f"{API}/ai/suggestions/{item}/decide"
            body = {"propertyId": desk.property_id, "decision": "accept"}
            window.start_soon(self._call_json, desk, DECIDE, path, body)

    # --- requests ------------------------------------------------------------------------

    async def call(
        self,
        desk: Desk,
        route: str,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes | None = None,
        extra: dict[str, str] | None = None,
    ) -> int:
        """One request as the desk makes it; its sample (and a dashboard's first byte)."""
        headers = auth_headers(desk.demo, method, self.plan.bff_url + path)
        if body is not None:
            headers["Content-Type"] = "application/json"
        headers.update(extra or {})
        request = request_bytes(method, self.plan.bff_url, path + query, headers, body)
        conn = await desk.take(self.host, self.port)
        at = trio.current_time() - self.start
        conn.first_byte = None
        status, code, answer = 0, "", b""
        started = time.perf_counter()
        try:
            with trio.fail_after(TIMEOUT_S):
                status, answer = await conn.exchange(request)
        except (OSError, Closed, trio.BrokenResourceError, trio.TooSlowError) as exc:
            code = type(exc).__name__
        except trio.Cancelled:  # still unanswered when the drain ended: a failure too
            self.samples.append(Sample(at, route, 0, time.perf_counter() - started, "cut"))
            raise
        latency = time.perf_counter() - started
        if status:
            desk.give(conn)
        else:
            await conn.close()
        if status and not 200 <= status < 300:
            code = error_code(answer)
        self.samples.append(Sample(at, route, status, latency, code))
        if route == DASHBOARD and status == 200 and conn.first_byte is not None:
            self.samples.append(Sample(at, FIRST_BYTE, status, conn.first_byte - started))
        return status

    async def _call_json(self, desk: Desk, route: str, path: str, body: dict[str, Any]) -> None:
        key = {"Idempotency-Key": f"fleet-{uuid.uuid4().hex}"}
        await self.call(desk, route, "POST", path, body=msgspec.json.encode(body), extra=key)

    async def perform(self, task: Task) -> None:
        self.lags.append(trio.current_time() - self.start - task.at)
        desk = self.desks.get((task.tenant, task.device))
        if desk is None:
            return  # its sign-in failed (counted at setup)
        board = f"?propertyId={desk.property_id}"
        if task.kind == HEARTBEAT:
            path = f"{API}/devices/{desk.demo.device_id}/heartbeat"
            await self.call(desk, HEARTBEAT, "POST", path, body=HEARTBEAT_BODY)
        elif task.kind == DASHBOARD:
            accept = {"Accept": "application/x-ndjson"}
            await self.call(desk, DASHBOARD, "GET", f"{API}/dashboard", query=board, extra=accept)
        elif task.kind == WORKBENCH:
            path = API + self.rng.choice(WORKBENCH_BOARDS)
            accept = {"Accept": "application/json"}
            await self.call(desk, WORKBENCH, "GET", path, query=board, extra=accept)
        elif task.kind == HANDSHAKE:
            body = {"deviceId": desk.demo.device_id}
            await self._call_json(desk, HANDSHAKE, f"{API}/sync/handshake", body)
        elif task.kind == LOCK:
            await self._queue(desk, ("issue_key",), 1, False)
        elif task.kind == MUTATION:
            await self._queue(desk, QUEUE_KINDS, QUEUE_LENGTH, task.replay)

    async def _queue(self, desk: Desk, kinds: tuple[Kind, ...], length: int, replay: bool) -> None:
        """An offline queue drained in order: each mutation planned against what the queues
        before it leave, sent after the last one on the same entity was answered; with
        ``replay``, the whole queue sent again as it was (same keys, same bytes)."""
        planner = self.planners[desk.tenant]
        route = LOCK if kinds == ("issue_key",) else MUTATION
        sent: list[QueuedMutation] = []
        for _ in range(length):
            possible = [k for k in kinds if planner.candidates(k)]
            if not possible:
                break
            kind = self.rng.choices(possible, [KINDS[k].weight for k in possible])[0]
            mutation = planner.next(kind)
            before = self.chain_tail.get(mutation.chain)
            mine = self.chain_tail[mutation.chain] = trio.Event()
            try:
                if before is not None:
                    await before.wait()
                await self._send(desk, route, mutation)
            finally:
                mine.set()
            sent.append(mutation)
        for mutation in sent if replay else ():
            await self._send(desk, REPLAY, mutation)

    async def _send(self, desk: Desk, route: str, mutation: QueuedMutation) -> None:
        key = {"Idempotency-Key": mutation.key}
        await self.call(desk, route, "POST", mutation.path, body=mutation.body, extra=key)

    # --- the window ----------------------------------------------------------------------

    async def run(self, start_at: float, seconds: float, out: str) -> dict[str, Any]:
        self.start = trio.current_time() + (start_at - time.time())
        self.end = self.start + seconds
        await trio.sleep_until(self.start)
        cpu = cpu_s()
        with trio.move_on_at(self.end + DRAIN_S):
            async with trio.open_nursery() as window:
                self.window = window
                for task in self.plan.tasks:
                    await trio.sleep_until(self.start + task.at)
                    window.start_soon(self.perform, task)
                await trio.sleep_until(self.end)
                self.window = None  # what is still running finishes; nothing new starts
        spent = cpu_s() - cpu
        streams: Counter[int] = Counter(
            d.tenant for d in self.desks.values() if d.stream and d.stream.state == "open"
        )
        result = LoadResult(
            index=self.index,
            samples=self.samples,
            arrivals=self.arrivals,
            streams_by_tenant=dict(streams),
            streams_ended=dict(self.ended),
            keepalives=sum(d.stream.keepalives for d in self.desks.values() if d.stream),
            cpu_s=spent,
            lag_ms=(percentiles(self.lags)[1], max(self.lags, default=0.0) * 1000),
        )
        await trio.Path(out).write_bytes(msgspec.msgpack.encode(result))
        return {"samples": len(self.samples)}


async def serve(index: int) -> None:
    async with trio.open_nursery() as nursery:
        load = FleetLoad(index, nursery)

        async def live(concurrency: int, seconds: float) -> dict[str, Any]:
            return await LoadGenerator().run("live", load.plan.bff_url, concurrency, seconds)

        await answer_commands(
            {
                "setup": load.setup,
                "demo": load.demo,
                "open": load.open,
                "live": live,
                "run": load.run,
            }
        )
        nursery.cancel_scope.cancel()


def main() -> None:
    raise_fd_limit()
    trio.run(serve, int(sys.argv[1]))


if __name__ == "__main__":
    main()
