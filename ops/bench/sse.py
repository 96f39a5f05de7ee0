"""SSE benchmark: one BFF instance holding thousands of concurrent ``GET /sse/stream`` responses
(default 2,500, the capacity model's peak), read by a client in a separate process, with a bare
hypercorn + Trio SSE endpoint holding the same number of streams as the baseline of the ratios.

``python -m ops.bench.sse [--streams 2500] [--keepalive 15] [--quiet 30] [--broadcasts 5]
[--force-logouts 100]``; ``--quick`` is a smoke run (200 streams, 5 s keep-alives).

Measured, for the BFF and for the baseline (same streams, same keep-alive period):

- RSS per stream: the server's RSS (``/proc/<pid>/status``) with the streams open minus before
  (after a warm-up of a few streams opened and closed), divided by their number;
- CPU of keep-alives per minute: the server's CPU time (``/proc/<pid>/stat``) over a quiet
  window (``--quiet``, a whole number of keep-alive periods) with every stream idle, minus the
  same window with none open, per minute; measured with ``--keepalive K`` seconds it is also
  scaled to the production period of 15 s (times K/15: per stream, one keep-alive per period, and
  the BFF's ownership renewal runs once per period too);
- a property-wide alert published at the simulator (``/_sim/events``) → its arrival on every
  stream (baseline: an in-process broadcast triggered by ``POST /publish``);
- a force-logout published at the simulator (``/_sim/iam/sessions/{id}/revoke``) → the
  ``session`` ``force_logout`` event on that device's stream (baseline: an event sent to one
  stream, which then ends).

Latencies are arrival (the client's ``time.time()`` when it reads the bytes) minus the publish
(this process's ``time.time()`` just before the POST): the same clock, the client's own reading
time included on both sides of the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from edge.server import LISTEN_BACKLOG
from edge.sse.connection import KEEP_ALIVE, frame
from ops.bench.sse_client import raise_fd_limit
from ops.bench.stack import ROOT, BenchStack, _free_port, _wait, bench_stack, percentiles
from ops.sim.http import Message, Receive, Send
from ops.sim.pipeline import _lifespan

STREAM = "/bff/backoffice/v1/sse/stream?channels=alerts"
TENANT, PROPERTY = "tnt-demo", "prop-demo-1"
PRODUCTION_KEEPALIVE_S = 15.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

# --- the baseline: a raw ASGI SSE endpoint on hypercorn + Trio ---------------------------------


class BaselineApp:
    """``GET /stream?id=N`` (no auth): ``retry:``, then a keep-alive comment every period or
    what ``POST /publish`` ``{"event", "data", "to"?: N, "end"?: bool}`` sends — to every stream
    (an in-process broadcast to a bounded channel each) or to stream N; ``end`` closes it."""

    def __init__(self, keepalive_s: float) -> None:
        self.keepalive_s = keepalive_s
        self.streams: dict[int, trio.MemorySendChannel[tuple[bytes, bool]]] = {}
        self.seq = 0

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        if scope["type"] != "http":
            return
        if scope["path"] == "/stream":
            await self.stream(scope, receive, send)
        elif scope["path"] == "/publish" and scope["method"] == "POST":
            await self.publish(receive)
            await respond(send, 202)
        else:
            await respond(send, 200 if scope["path"] == "/health" else 404)

    async def stream(self, scope: Message, receive: Receive, send: Send) -> None:
        index = int(parse_qs(scope["query_string"].decode()).get("id", ["-1"])[0])
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        tx, rx = trio.open_memory_channel[tuple[bytes, bool]](256)
        self.streams[index] = tx
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(disconnected, receive, nursery.cancel_scope)
                await send(
                    {"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True}
                )
                end = False
                while not end:
                    chunk = KEEP_ALIVE
                    with trio.move_on_after(self.keepalive_s):
                        chunk, end = await rx.receive()
                    await send({"type": "http.response.body", "body": chunk, "more_body": not end})
                nursery.cancel_scope.cancel()
        finally:
            if self.streams.get(index) is tx:
                del self.streams[index]

    async def publish(self, receive: Receive) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        self.seq += 1
        chunk = frame(request["event"], request["data"], f"{int(time.time() * 1000)}-{self.seq}")
        to = request.get("to")
        if to is None:
            channels = list(self.streams.values())
        else:
            channels = [self.streams[to]] if to in self.streams else []
        for tx in channels:
            with suppress(trio.WouldBlock):  # a slow consumer misses it (none here)
                tx.send_nowait((chunk, bool(request.get("end"))))


async def disconnected(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def respond(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def serve_baseline(port: int, keepalive_s: float) -> None:
    raise_fd_limit()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.backlog = LISTEN_BACKLOG
    config.accesslog = None
    config.include_server_header = False
    app = BaselineApp(keepalive_s)
    trio.run(partial(serve, app, config))  # type: ignore[arg-type]


# --- processes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """A server process as /proc shows it."""

    pid: int

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for {self.pid}")

    def cpu_s(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def log_dir(self) -> Path:
        return Path(os.readlink(f"/proc/{self.pid}/fd/1")).parent


def child_running(module: str) -> Proc:
    """This process's child ``python -m <module>`` (what ``bench_stack`` started)."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if ppid == me and argv[1:3] == [b"-m", module.encode()]:
            return Proc(int(entry.name))
    raise RuntimeError(f"no child process runs -m {module}")


@contextmanager
def baseline_server(keepalive_s: float, log_dir: Path) -> Iterator[tuple[str, Proc]]:
    port = _free_port()
    argv = [sys.executable, "-m", "ops.bench.sse", "--serve-baseline", str(port)]
    with (log_dir / "baseline.log").open("wb") as log:
        proc = subprocess.Popen(
            [*argv, "--keepalive", str(keepalive_s)], cwd=ROOT, stdout=log, stderr=log
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/health")
        yield url, Proc(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class ClientProcess:
    """``ops.bench.sse_client`` in its own process, one JSON command and answer a line."""

    def __init__(self, stack: BenchStack, log_dir: Path) -> None:
        with (log_dir / "client.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ops.bench.sse_client", json.dumps(asdict(stack))],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the client process died (exit {self.proc.wait()}); see its log")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"cmd": "quit"}\n')
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- measurements ------------------------------------------------------------------------------


@dataclass
class Side:
    """One server's figures."""

    name: str
    proc: Proc
    url: str
    rss_fresh: int = 0  # BFF: before the devices' first request
    rss_before: int = 0
    rss_middle: int = 0  # with the first half of the streams open
    streams_middle: int = 0
    rss_after: int = 0
    streams: int = 0
    failed: int = 0
    open_seconds: float = 0.0
    open_latencies: list[float] = field(default_factory=list)
    open_cpu: float = 0.0
    cpu_idle: float = 0.0
    cpu_loaded: float = 0.0
    keepalives: int = 0
    broadcast: list[float] = field(default_factory=list)  # every stream's arrival latency
    first: list[float] = field(default_factory=list)  # per broadcast: until the first stream
    last: list[float] = field(default_factory=list)  # per broadcast: until the last stream
    missing: int = 0
    fanout_cpu: list[float] = field(default_factory=list)  # per broadcast, seconds
    one: list[float] = field(default_factory=list)  # force-logout / targeted event
    one_missing: int = 0

    def rss_per_stream(self) -> float:
        return (self.rss_after - self.rss_before) / max(self.streams, 1)

    def rss_per_stream_second_half(self) -> float:
        return (self.rss_after - self.rss_middle) / max(self.streams - self.streams_middle, 1)


def publish_alert(http: httpx.Client, sim_url: str) -> tuple[str, float]:
    alert_id = f"al-bench-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    data = {
        "tenantId": TENANT,
        "propertyId": PROPERTY,
        "alertId": alert_id,
        "severity": "high",
        "category": "maintenance",
        "title": "Boiler pressure low",
        "occurredAt": now,
    }
    body = {"subject": "melmastoon.alert.raised.v1", "data": data}
    published = time.time()
    http.post(f"{sim_url}/_sim/events", json=body).raise_for_status()
    return alert_id, published


def publish_baseline(http: httpx.Client, url: str, **body: Any) -> tuple[str, float]:
    alert_id = f"al-bench-{uuid.uuid4().hex[:10]}"
    if "data" not in body:
        body = {"event": "alert", "data": {"alertId": alert_id, "propertyId": PROPERTY}, **body}
    published = time.time()
    http.post(f"{url}/publish", json=body).raise_for_status()
    return alert_id, published


def open_streams(
    client: ClientProcess, side: Side, count: int, concurrency: int, first: int, target: str = ""
) -> dict[str, Any]:
    """Open ``count`` streams on ``side`` (BFF: as devices ``first…``)."""
    bff = side.name == "BFF"
    return client.call(
        "open",
        target=target or side.name,
        url=side.url,
        path=STREAM if bff else "/stream?id={i}",
        count=count,
        concurrency=concurrency,
        first=first,
        auth=bff,
    )


def sse_metrics(bff_url: str) -> list[str]:
    text = httpx.get(f"{bff_url}/metrics", timeout=10).text
    wanted = (
        "bff_sse_connections",
        "bff_sse_cut_total",
        "bff_sse_refused_total",
        "bff_sse_broker_errors_total",
    )
    return [line for line in text.splitlines() if line.startswith(wanted)]


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def run(args: argparse.Namespace, stack: BenchStack, http: httpx.Client) -> None:
    bff_proc = child_running("edge")
    log_dir = bff_proc.log_dir()
    say(f"logs: {log_dir}; load average {os.getloadavg()[0]:.2f}")
    client = ClientProcess(stack, log_dir)
    try:
        with baseline_server(args.keepalive, log_dir) as (base_url, base_proc):
            bff = Side("BFF", bff_proc, stack.bff_url)
            base = Side("baseline", base_proc, base_url)
            measure(args, stack, http, client, bff, base)
            report(args, bff, base)
            say("BFF metrics at the end:")
            for line in sse_metrics(stack.bff_url):
                print(f"  {line}")
            logged = (log_dir / "bff.log").read_text(errors="replace").splitlines()
            worse = [line for line in logged if '"level":"WARNING"' in line or "ERROR" in line]
            say(f"BFF log: {len(worse)} warnings/errors (first: {worse[:3]})")
    finally:
        client.stop()
    say(f"load average {os.getloadavg()[0]:.2f}; logs kept in {log_dir}")


def measure(
    args: argparse.Namespace,
    stack: BenchStack,
    http: httpx.Client,
    client: ClientProcess,
    bff: Side,
    base: Side,
) -> None:
    n, warm = args.streams, args.warmup
    say(f"signing in {n + warm} devices at the simulator (in the client process) …")
    began = time.perf_counter()
    sessions: list[str] = client.call("signin", count=n + warm)["sessions"]
    say(f"  {len(sessions)} signed in, {time.perf_counter() - began:.1f} s")
    time.sleep(2)
    bff.rss_fresh = bff.proc.rss_kib()
    beats = client.call("heartbeat", first=0, count=n + warm)
    say(f"one heartbeat per device (activates it in the BFF): {beats}")
    for side in (bff, base):  # warm-up: a few streams opened and closed
        opened = open_streams(client, side, warm, args.concurrency, n, f"{side.name}-warm-up")
        client.call("close", target=f"{side.name}-warm-up")
        say(f"warm-up {side.name}: {opened['opened']} opened, errors {opened['errors']}")
    time.sleep(3)
    quiet = args.quiet
    say(f"quiet window, no streams: {quiet:g} s …")
    idle = {s.name: s.proc.cpu_s() for s in (bff, base)}
    time.sleep(quiet)
    for side in (bff, base):
        side.cpu_idle = side.proc.cpu_s() - idle[side.name]
        side.rss_before = side.proc.rss_kib()
    for side in (bff, base):
        say(f"opening {n} streams on the {side.name} (≤ {args.concurrency} at a time) …")
        for first, count in ((0, n // 2), (n // 2, n - n // 2)):  # RSS in the middle too
            cpu = side.proc.cpu_s()
            opened = open_streams(client, side, count, args.concurrency, first)
            spent = side.proc.cpu_s() - cpu
            side.open_cpu += spent
            side.streams += opened["opened"]
            side.failed += opened["failed"]
            side.open_seconds += opened["seconds"]
            side.open_latencies += opened["open_latencies"]
            say(
                f"  {opened['opened']} open, {opened['failed']} failed in"
                f" {opened['seconds']:.1f} s, server CPU {spent:.1f} s"
                + (f"; errors: {opened['errors']}" if opened["errors"] else "")
            )
            time.sleep(3)
            if first == 0:
                side.rss_middle, side.streams_middle = side.proc.rss_kib(), side.streams
        side.rss_after = side.proc.rss_kib()
    for line in sse_metrics(stack.bff_url):
        say(f"  {line}")
    say(f"quiet window, {n} idle streams on each: {quiet:g} s …")
    loaded = {s.name: (s.proc.cpu_s(), client.call("stats", target=s.name)) for s in (bff, base)}
    time.sleep(quiet)
    for side in (bff, base):
        stats = client.call("stats", target=side.name)
        side.cpu_loaded = side.proc.cpu_s() - loaded[side.name][0]
        side.keepalives = stats["keepalives"] - loaded[side.name][1]["keepalives"]
        say(f"  {side.name}: {stats['live']} live, {side.keepalives} keep-alives in the window")
    for side in (bff, base):
        say(f"{args.broadcasts} property-wide alerts on the {side.name} …")
        for _ in range(args.broadcasts):
            cpu = side.proc.cpu_s()
            if side is bff:
                key, published = publish_alert(http, stack.sim_url)
            else:
                key, published = publish_baseline(http, base.url)
            got = client.call("wait_all", target=side.name, key=key, timeout=args.timeout)
            side.fanout_cpu.append(side.proc.cpu_s() - cpu)
            latencies = [t - published for t in got["arrivals"]]
            side.broadcast += latencies
            side.first.append(min(latencies, default=float("nan")))
            side.last.append(max(latencies, default=float("nan")))
            side.missing += got["expected"] - len(latencies)
            p50, p95, _ = percentiles(latencies)
            say(
                f"  {len(latencies)}/{got['expected']} streams: first"
                f" {side.first[-1] * 1000:.0f} ms, p50 {p50:.0f}, p95 {p95:.0f}, last"
                f" {side.last[-1] * 1000:.0f} ms; server CPU {side.fanout_cpu[-1] * 1000:.0f} ms"
            )
            time.sleep(args.gap)
    picks = sorted({i * n // args.force_logouts for i in range(min(args.force_logouts, n))})
    say(f"{len(picks)} one-stream events on the baseline, {len(picks)} force-logouts on the BFF")
    for side in (base, bff):
        for index in picks:
            if side is bff:
                published = time.time()
                revoke = f"{stack.sim_url}/_sim/iam/sessions/{sessions[index]}/revoke"
                http.post(revoke, json={"reason": "security"}).raise_for_status()
            else:
                data = {"kind": "force_logout", "reason": "revoked"}
                body = {"event": "session", "data": data, "to": index, "end": True}
                _, published = publish_baseline(http, base.url, **body)
            got = client.call("wait_one", target=side.name, index=index, timeout=args.timeout)
            if got["arrival"] is None:
                side.one_missing += 1
            else:
                side.one.append(got["arrival"] - published)
    say(f"  ended streams: {client.call('stats', target='BFF')['ended']}")
    for side in (bff, base):
        client.call("close", target=side.name)


# --- report ------------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and a == a and b == b else "-"


def median_ms(values: list[float]) -> float:
    return float(statistics.median(values)) * 1000 if values else float("nan")


def report(args: argparse.Namespace, bff: Side, base: Side) -> None:
    window = 60 / float(args.quiet)  # CPU over the window → per minute

    def keepalive_ms(side: Side) -> float:
        return (side.cpu_loaded - side.cpu_idle) * window * 1000

    print(f"\nSSE streams: {args.streams} per server, keep-alive every {args.keepalive:g} s")
    head = f"{'latency, ms':<42} {'samples':>7} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
    print(f"\n{head} {'ratio p95':>9}")
    rows = [
        (f"alert -> all streams ({args.broadcasts} alerts)", bff.broadcast, base.broadcast),
        ("force-logout -> its stream", bff.one, base.one),
    ]
    for label, ours, theirs in rows:
        for name, values in (("BFF", ours), ("baseline", theirs)):
            p50, p95, p99 = percentiles(values)
            top = max(values, default=float("nan")) * 1000
            shown = ratio(p95, percentiles(theirs)[1]) if values is ours else ""
            print(
                f"{label + ', ' + name:<42} {len(values):>7} {p50:8.1f} {p95:8.1f} {p99:8.1f}"
                f" {top:8.1f} {shown:>9}"
            )
    print("(baseline of a force-logout: one event sent to one stream, which then ends)")
    figures: list[tuple[str, Callable[[Side], float], str]] = [
        ("streams open", lambda s: s.streams, "{:.0f}"),
        ("streams failed to open", lambda s: s.failed, "{:.0f}"),
        ("opening: streams/s (whole batch)", lambda s: s.streams / s.open_seconds, "{:.0f}"),
        ("opening: one stream p50, ms", lambda s: percentiles(s.open_latencies)[0], "{:.1f}"),
        ("opening: one stream p95, ms", lambda s: percentiles(s.open_latencies)[1], "{:.1f}"),
        ("opening: one stream p99, ms", lambda s: percentiles(s.open_latencies)[2], "{:.1f}"),
        ("opening: server CPU per stream, ms", lambda s: s.open_cpu / s.streams * 1000, "{:.2f}"),
        ("RSS before, MiB", lambda s: s.rss_before / 1024, "{:.1f}"),
        ("RSS with the streams, MiB", lambda s: s.rss_after / 1024, "{:.1f}"),
        ("RSS per stream, KiB", Side.rss_per_stream, "{:.1f}"),
        ("RSS per stream, second half only, KiB", Side.rss_per_stream_second_half, "{:.1f}"),
        ("CPU with no stream, ms/min", lambda s: s.cpu_idle * window * 1000, "{:.0f}"),
        (f"keep-alive CPU, ms/min (every {args.keepalive:g} s)", keepalive_ms, "{:.0f}"),
    ]
    if args.keepalive != PRODUCTION_KEEPALIVE_S:
        scale = args.keepalive / PRODUCTION_KEEPALIVE_S
        figures.append(
            (
                "keep-alive CPU, ms/min (every 15 s, scaled)",
                lambda s: keepalive_ms(s) * scale,
                "{:.0f}",
            )
        )
    figures += [
        ("keep-alives received in the window", lambda s: s.keepalives, "{:.0f}"),
        (
            "CPU per keep-alive, µs",
            lambda s: (s.cpu_loaded - s.cpu_idle) / max(s.keepalives, 1) * 1e6,
            "{:.0f}",
        ),
        ("alert: until the first stream, median ms", lambda s: median_ms(s.first), "{:.1f}"),
        ("alert: until the last stream, median ms", lambda s: median_ms(s.last), "{:.1f}"),
        (
            "alert: deliveries/s (N / that)",
            lambda s: s.streams / median_ms(s.last) * 1000,
            "{:.0f}",
        ),
        ("alert: server CPU per alert, median ms", lambda s: median_ms(s.fanout_cpu), "{:.0f}"),
        (
            "alert: server CPU per stream, µs",
            lambda s: median_ms(s.fanout_cpu) * 1000 / max(s.streams, 1),
            "{:.0f}",
        ),
        ("alert: arrivals missing (all alerts)", lambda s: s.missing, "{:.0f}"),
        ("force-logout: arrivals missing", lambda s: s.one_missing, "{:.0f}"),
    ]
    devices = args.streams + args.warmup
    activated = (bff.rss_before - bff.rss_fresh) / devices
    print(
        f"(BFF RSS {bff.rss_fresh / 1024:.1f} MiB after sign-in, {bff.rss_before / 1024:.1f} MiB"
        f" after one heartbeat per device and a warm-up: {activated:.1f} KiB per device)"
    )
    print(f"\n{'figure':<46} {'BFF':>10} {'baseline':>10} {'ratio':>7}")
    for label, value, fmt in figures:
        mine, other = value(bff), value(base)
        cells = (fmt.format(mine), fmt.format(other), ratio(mine, other))
        print(f"{label:<46} {cells[0]:>10} {cells[1]:>10} {cells[2]:>7}")
    goals = [
        ("force-logout p95 <= 100 ms (spec < 5 s)", percentiles(bff.one)[1] <= 100),
        ("alert on all streams p95 <= 300 ms", percentiles(bff.broadcast)[1] <= 300),
        ("RSS per stream <= 35 KiB", bff.rss_per_stream() <= 35),
    ]
    print("\ngoals: " + "; ".join(f"{g}: {'met' if ok else 'MISSED'}" for g, ok in goals))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2500)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 200 streams, 5 s keep-alives"
    )
    parser.add_argument("--keepalive", type=float, default=None, help="BFF_SSE_KEEPALIVE_S (15)")
    parser.add_argument("--quiet", type=float, default=None, help="CPU window (2 periods)")
    parser.add_argument("--broadcasts", type=int, default=5)
    parser.add_argument("--force-logouts", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64, help="streams opening at once")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between broadcasts")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.streams, args.force_logouts, args.broadcasts = 200, 50, 3
        args.keepalive = args.keepalive or 5.0
    args.keepalive = args.keepalive or PRODUCTION_KEEPALIVE_S
    args.quiet = args.quiet or 2 * args.keepalive
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.keepalive)
        return
    raise_fd_limit()  # inherited by the BFF (and the simulator)
    with (
        bench_stack(
            sim_env={"SIM_LATENCY": "0", "SIM_BUS": "auto", "SIM_ACCESS_TTL_S": "3600"},
            BFF_RATE_LIMIT_PER_MINUTE="100000",
            BFF_SSE_KEEPALIVE_S=f"{args.keepalive:g}",
        ) as stack,
        httpx.Client(timeout=30) as http,
    ):
        run(args, stack, http)


if __name__ == "__main__":
    main()
