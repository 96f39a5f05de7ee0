"""Saturation benchmark (issue #14): server CPU per request and throughput at saturation for
``/health/live``, the authenticated heartbeat, the warm dashboard, a mutation and SSE fan-out,
with one BFF process and with ``BFF_WORKERS=2``, against framework floors measured in the same
run.

``python -m ops.bench.saturation [--workers 1,2] [--paths live,heartbeat,dashboard,mutation,sse]
[--floors raw,quart] [--seconds 10] [--warmup 3] [--devices 96] [--sse-streams 500]``;
``--quick`` is a smoke run (2 s windows, few devices, 50 streams).

For each worker count, a throwaway stack (``ops/bench/stack.py``: BFF, simulator with its
latency off, a scratch database, a Redis prefix), and:

* **floors**: a raw ASGI app on hypercorn + Trio (``raw``) and a quart-trio no-op (``quart``),
  each answering ``GET /health/live`` with a small JSON body, as many processes as BFF workers
  (``SO_REUSEPORT``, as the BFF's workers bind); no GC tuning (the BFF freezes and raises its
  gen-0 threshold after start-up).
* **request paths**, closed loop (each caller sends its next request as soon as the last is
  answered) from the load generator (``ops/bench/saturation_load.py``, its own process, raw
  sockets, keep-alive): ``live`` (c=32), ``heartbeat`` (c=32 over ``--devices`` desktops,
  each request a fresh DPoP proof, then the whole auth chain and the ``DeviceSyncStatus``
  upsert), ``dashboard`` (gm, warm: served from the cache; c=16 over 16 desktops),
  ``mutation`` (a folio charge through the idempotency layer with a new ``Idempotency-Key``
  each, c=16). A warm-up run first (its rate sizes the batch of proofs signed ahead), then
  the measured window.
* **SSE fan-out** (``sse``), on its own stack (the simulator publishes onto the BFF's bus, as
  ``ops/bench/sse.py``): ``--sse-streams`` streams opened by ``ops/bench/sse_client.py``, then
  ``--sse-alerts`` property-wide alerts, each timed until it reached every stream; baseline:
  the raw ASGI SSE app of ``ops/bench/sse.py`` (one process: its broadcast is in-process).

CPU is utime + stime from ``/proc/<pid>/stat`` (10 ms ticks): the server's process and its
children (with ``BFF_WORKERS=2`` the supervisor and its two workers), the load generator's
own ``getrusage``, and the machine's busy time from ``/proc/stat`` (the rest of it —
"other" — is the simulator, Postgres, Redis and whatever else runs on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from edge.server import LISTEN_BACKLOG
from ops.bench.sse import STREAM, ClientProcess, child_running, publish_alert, publish_baseline
from ops.bench.sse import baseline_server as sse_baseline_server
from ops.bench.sse_client import raise_fd_limit
from ops.bench.stack import ROOT, BenchStack, _free_port, _wait, bench_stack, percentiles
from ops.sim.http import Message, Receive, Send
from ops.sim.pipeline import _lifespan

CLK_TCK = os.sysconf("SC_CLK_TCK")
PATHS = ("live", "heartbeat", "dashboard", "mutation", "sse")
FLOORS = ("raw", "quart")
CONCURRENCY = {"live": 32, "heartbeat": 32, "dashboard": 16, "mutation": 16}
LIVE_BODY = b'{"status":"ok"}'
SSE_KEEPALIVE_S = 15.0
IDLE_S = 5.0  # the BFF's own background CPU, measured before the paths

# --- the floors --------------------------------------------------------------------------------


async def raw_app(scope: Message, receive: Receive, send: Send) -> None:
    """The least an ASGI app on hypercorn can do: a fixed JSON answer."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    found = scope["path"] == "/health/live"
    headers = [(b"content-type", b"application/json"), (b"content-length", b"15")]
    await send({"type": "http.response.start", "status": 200 if found else 404, "headers": headers})
    await send({"type": "http.response.body", "body": LIVE_BODY if found else b" " * 15})


def quart_app() -> Any:
    """A quart-trio app with one no-op route: what the framework costs before any middleware."""
    from quart import Response
    from quart_trio import QuartTrio

    app = QuartTrio("floor")

    @app.get("/health/live")
    async def live() -> Response:
        return Response(LIVE_BODY, content_type="application/json")

    return app


def serve_floor(kind: str, port: int, shared: bool) -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.backlog = LISTEN_BACKLOG
    config.accesslog = None
    config.include_server_header = False
    if shared:  # hypercorn binds with SO_REUSEPORT only when told it runs several workers
        config.workers = 2
        warnings.filterwarnings("ignore", message="The config `workers` has no affect")
    app = raw_app if kind == "raw" else quart_app()
    trio.run(partial(serve, app, config))  # type: ignore[arg-type]


@contextmanager
def floor_servers(kind: str, processes: int, log_dir: Path) -> Iterator[tuple[str, Processes]]:
    port = _free_port()
    argv = [sys.executable, "-m", "ops.bench.saturation", "--serve-floor", kind, str(port)]
    if processes > 1:
        argv.append("--shared")
    procs = []
    with (log_dir / f"floor-{kind}.log").open("ab") as log:
        for _ in range(processes):
            procs.append(subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log))
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/health/live")
        yield url, Processes(tuple(p.pid for p in procs), children=False)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)


# --- processes and CPU -------------------------------------------------------------------------


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent:
                found.append(int(entry.name))
    return sorted(found)


@dataclass(frozen=True)
class Processes:
    """A server's processes: those started, and (``children``) theirs — a BFF supervisor's
    workers."""

    roots: tuple[int, ...]
    children: bool = True

    def snapshot(self) -> dict[int, float]:
        pids = list(self.roots)
        if self.children:
            for root in self.roots:
                pids += children_of(root)
        snap = {}
        for pid in pids:
            try:
                snap[pid] = cpu_of(pid)
            except OSError:
                continue
        return snap


def machine_busy_s() -> float:
    """CPU seconds spent on every core, all processes (``/proc/stat``), idle and iowait out."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


class LoadProcess:
    """A load generator (``ops.bench.saturation_load`` unless told) in its own process, one JSON
    command and answer a line."""

    def __init__(
        self,
        log_dir: Path,
        module: str = "ops.bench.saturation_load",
        *args: str,
        log_name: str = "load.log",
    ) -> None:
        with (log_dir / log_name).open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
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
            raise RuntimeError(f"the load generator died (exit {self.proc.wait()}); see its log")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
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


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- profiles (``--py-spy DIR``) ----------------------------------------------------------------

PY_SPY = Path(sys.executable).with_name("py-spy")
# A sample is charged to the innermost frame of a named package (py-spy names a frame
# ``function (package/module.py:line)``); Trio's core, asyncio and single-file stdlib modules
# are looked through, to whoever called them (a socket send in ``trio/_socket.py`` made by
# hypercorn is hypercorn's).
PACKAGES = {
    "trio_asyncio": "trio-asyncio bridge",
    "asyncpg": "asyncpg",
    "redis": "redis-py",
    "hypercorn": "hypercorn",
    "h11": "h11",
    "quart": "quart, werkzeug",
    "quart_trio": "quart, werkzeug",
    "werkzeug": "quart, werkzeug",
    "jwcrypto": "jwcrypto",
    "cryptography": "cryptography",
    "logging": "logging",
    "prometheus_client": "prometheus_client",
    "actors": "actors/",
    "ledger": "ledger/",
    "schemas": "schemas/",
    "httpx": "httpx",
}


ENTRY = ("edge/__main__.py", "edge/server.py")  # under every sample: trio.run's callers


def charged_to(stack: str) -> str:
    """The group a collapsed stack's sample belongs to (see ``PACKAGES``)."""
    for frame in reversed(stack.split(";")):
        location = frame.rpartition(" (")[2]
        package, slash, rest = location.partition("/")
        if not slash or location.startswith(ENTRY):
            continue
        if package == "edge":
            sub = rest.split("/", 1)
            return f"edge/{sub[0] if len(sub) > 1 else rest.split(':', 1)[0]}"
        if package in PACKAGES:
            return PACKAGES[package]
    return "trio core, stdlib (no caller above)"


@contextmanager
def profiled(out: Path | None, name: str, servers: Processes) -> Iterator[None]:
    """``py-spy record`` (collapsed stacks, 100 Hz, not pausing the process) on every server
    process while the body runs. It perturbs what it watches: profile in a separate run."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    with (out / "py-spy.log").open("ab") as log:
        for pid in servers.snapshot():
            argv = [str(PY_SPY), "record", "--nonblocking", "-r", "100", "-f", "raw"]
            argv += ["-p", str(pid), "-o", str(out / f"{name}-{pid}.txt")]
            spies.append(subprocess.Popen(argv, stdout=log, stderr=log))
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=60)
        summarise(out, name)


def summarise(out: Path, name: str) -> None:
    """Print the share of samples charged to each package and the top functions."""
    total = 0
    groups: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for file in out.glob(f"{name}-*.txt"):
        for line in file.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            total += samples
            leaves[stack.rsplit(";", 1)[-1]] += samples
            groups[charged_to(stack)] += samples
    if not total:
        say(f"  py-spy {name}: no samples")
        return
    shares = ", ".join(f"{g} {n / total:.0%}" for g, n in groups.most_common())
    say(f"  py-spy {name}: {total} samples; by package: {shares}")
    for leaf, n in leaves.most_common(10):
        print(f"      {n / total:6.1%}  {leaf}")


# --- request paths -----------------------------------------------------------------------------


@dataclass
class Row:
    """One measured window of one path."""

    path: str
    workers: int
    concurrency: int
    requests: int
    seconds: float
    p50: float
    p95: float
    p99: float
    server_cpu_s: float
    split: list[float]  # per-process share of the server CPU (workers; supervisor last)
    load_cpu_s: float
    machine_cpu_s: float
    errors: dict[str, int]
    fresh: int
    load_average: float
    restarted: bool = False

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu_s / self.requests * 1000 if self.requests else float("nan")

    @property
    def load_ms(self) -> float:
        return self.load_cpu_s / self.requests * 1000 if self.requests else float("nan")

    def cores(self, cpu_s: float) -> float:
        return cpu_s / self.seconds if self.seconds else 0.0

    @property
    def other_cores(self) -> float:
        return self.cores(self.machine_cpu_s - self.server_cpu_s - self.load_cpu_s)


def measure(
    load: LoadProcess,
    path: str,
    kind: str,
    url: str,
    servers: Processes,
    workers: int,
    args: argparse.Namespace,
) -> Row:
    concurrency = CONCURRENCY[kind]
    rate = 1000.0
    if args.warmup:
        warm = load.call("run", kind=kind, url=url, concurrency=concurrency, seconds=args.warmup)
        rate = warm["requests"] / warm["seconds"]
        if warm["errors"]:
            say(f"  warm-up errors: {warm['errors']}")
    load.call("prepare", kind=kind, url=url, count=int(rate * args.seconds * 1.5) + 4 * concurrency)
    load_average = os.getloadavg()[0]
    with profiled(args.py_spy, f"{path.replace(': ', '-')}-w{workers}", servers):
        before, machine = servers.snapshot(), machine_busy_s()
        got = load.call("run", kind=kind, url=url, concurrency=concurrency, seconds=args.seconds)
        after, machine = servers.snapshot(), machine_busy_s() - machine
    spent = {pid: after[pid] - before[pid] for pid in after if pid in before}
    total = sum(spent.values())
    order = sorted(spent, key=lambda pid: (pid in servers.roots and servers.children, pid))
    row = Row(
        path=path,
        workers=workers,
        concurrency=concurrency,
        requests=got["requests"],
        seconds=got["seconds"],
        p50=got["p50"],
        p95=got["p95"],
        p99=got["p99"],
        server_cpu_s=total,
        split=[spent[pid] / total if total else 0.0 for pid in order],
        load_cpu_s=got["cpu_s"],
        machine_cpu_s=machine,
        errors=got["errors"],
        fresh=got["fresh"],
        load_average=load_average,
        restarted=set(before) != set(after),
    )
    say(
        f"  {path}: {row.rate:,.0f} req/s, p95 {row.p95:.1f} ms, server CPU {row.cpu_ms:.3f}"
        f" ms/req ({row.cores(total):.2f} cores), load generator {row.load_ms:.3f} ms/req,"
        f" errors {row.errors or 0}, signed during the run {row.fresh}"
    )
    return row


def floors_pass(args: argparse.Namespace, workers: int, log_dir: Path) -> list[Row]:
    rows = []
    load = LoadProcess(log_dir)
    try:
        for kind in args.floors:
            with floor_servers(kind, workers, log_dir) as (url, servers):
                say(f"floor {kind}, {workers} process(es)")
                rows.append(measure(load, f"floor: {kind}", "live", url, servers, workers, args))
    finally:
        load.stop()
    return rows


def bff_pass(args: argparse.Namespace, workers: int, log_dir: Path) -> list[Row]:
    paths = [p for p in args.paths if p != "sse"]
    if not paths:
        return []
    rows = []
    bff = {"BFF_RATE_LIMIT_PER_MINUTE": "1000000", "BFF_WORKERS": str(workers)}
    sim = {"SIM_LATENCY": "0", "SIM_ACCESS_TTL_S": "3600"}
    with bench_stack(sim_env=sim, **bff) as stack:
        servers = Processes((child_running("edge").pid,))
        say(f"BFF, BFF_WORKERS={workers}: processes {sorted(servers.snapshot())}")
        load = LoadProcess(log_dir)
        try:
            setup(load, stack, paths, args)
            before = sum(servers.snapshot().values())
            time.sleep(IDLE_S)
            idle = (sum(servers.snapshot().values()) - before) / IDLE_S
            say(f"  idle BFF (no load, {IDLE_S:g} s): {idle:.3f} cores")
            for path in paths:
                rows.append(measure(load, path, path, stack.bff_url, servers, workers, args))
        finally:
            load.stop()
    return rows


def setup(load: LoadProcess, stack: BenchStack, paths: list[str], args: argparse.Namespace) -> None:
    began = time.perf_counter()
    if {"heartbeat", "mutation"} & set(paths):
        load.call(
            "signin", sim_url=stack.sim_url, group="fd", username="fd.demo", count=args.devices
        )
    if "dashboard" in paths:
        gm = CONCURRENCY["dashboard"] if not args.quick else 4
        load.call("signin", sim_url=stack.sim_url, group="gm", username="gm.demo", count=gm)
    if "mutation" in paths:
        load.call("demo", sim_url=stack.sim_url)
    say(f"  desktops signed in at the simulator in {time.perf_counter() - began:.1f} s")


# --- SSE fan-out -------------------------------------------------------------------------------


@dataclass
class SseRow:
    name: str
    workers: int
    streams: int = 0
    failed: int = 0
    open_seconds: float = 0.0
    open_cpu_s: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # server CPU per alert, s
    client_cpu: list[float] = field(default_factory=list)
    missing: int = 0

    def cpu_per_stream_us(self) -> float:
        return statistics.median(self.cpu) / max(self.streams, 1) * 1e6 if self.cpu else 0.0

    def deliveries(self) -> float:
        return self.streams / statistics.median(self.last) if self.last else 0.0


def alerts(
    client: ClientProcess,
    row: SseRow,
    servers: Processes,
    count: int,
    publish: Any,
    client_pid: int,
) -> None:
    for _ in range(count):
        cpu, client_cpu = sum(servers.snapshot().values()), cpu_of(client_pid)
        key, published = publish()
        got = client.call("wait_all", target=row.name, key=key, timeout=30)
        row.cpu.append(sum(servers.snapshot().values()) - cpu)
        row.client_cpu.append(cpu_of(client_pid) - client_cpu)
        latencies = [t - published for t in got["arrivals"]]
        row.arrivals += latencies
        row.last.append(max(latencies, default=float("nan")))
        row.missing += got["expected"] - len(latencies)
        time.sleep(1.0)


def open_streams(
    client: ClientProcess, row: SseRow, servers: Processes, url: str, path: str, auth: bool
) -> None:
    cpu = sum(servers.snapshot().values())
    opened = client.call(
        "open", target=row.name, url=url, path=path, count=row.streams, concurrency=64, auth=auth
    )
    row.open_cpu_s = sum(servers.snapshot().values()) - cpu
    row.streams, row.failed, row.open_seconds = (
        opened["opened"],
        opened["failed"],
        opened["seconds"],
    )
    if opened["errors"]:
        say(f"  opening errors: {opened['errors']}")
    time.sleep(2)


def sse_pass(args: argparse.Namespace, workers: int, baseline: bool, log_dir: Path) -> list[SseRow]:
    n, warm = args.sse_streams, 10
    sim = {"SIM_LATENCY": "0", "SIM_BUS": "auto", "SIM_ACCESS_TTL_S": "3600"}
    bff = {"BFF_RATE_LIMIT_PER_MINUTE": "1000000", "BFF_WORKERS": str(workers)}
    rows = []
    with bench_stack(sim_env=sim, **bff) as stack, httpx.Client(timeout=30) as http:
        servers = Processes((child_running("edge").pid,))
        client = ClientProcess(stack, log_dir)
        try:
            began = time.perf_counter()
            client.call("signin", count=n + warm)
            beats = client.call("heartbeat", first=0, count=n + warm)
            say(
                f"SSE, BFF_WORKERS={workers}: {n + warm} desktops signed in, one heartbeat each"
                f" ({beats}), {time.perf_counter() - began:.1f} s"
            )
            client.call(
                "open",
                target="warm-up",
                url=stack.bff_url,
                path=STREAM,
                count=warm,
                concurrency=warm,
                first=n,
                auth=True,
            )
            client.call("close", target="warm-up")
            row = SseRow("BFF", workers, streams=n)
            open_streams(client, row, servers, stack.bff_url, STREAM, auth=True)
            alerts(
                client,
                row,
                servers,
                args.sse_alerts,
                lambda: publish_alert(http, stack.sim_url),
                client.proc.pid,
            )
            client.call("close", target=row.name)
            rows.append(row)
            say(f"  BFF: {sse_line(row)}")
            if baseline:
                with sse_baseline_server(SSE_KEEPALIVE_S, log_dir) as (url, proc):
                    base = SseRow("baseline", 1, streams=n)
                    floor = Processes((proc.pid,), children=False)
                    open_streams(client, base, floor, url, "/stream?id={i}", auth=False)
                    alerts(
                        client,
                        base,
                        floor,
                        args.sse_alerts,
                        lambda: publish_baseline(http, url),
                        client.proc.pid,
                    )
                    client.call("close", target=base.name)
                    rows.append(base)
                    say(f"  baseline: {sse_line(base)}")
        finally:
            client.stop()
    return rows


def sse_line(row: SseRow) -> str:
    p50, p95, p99 = percentiles(row.arrivals)
    return (
        f"{row.streams} streams ({row.failed} failed), alert to all p50/p95/p99 {p50:.0f}/"
        f"{p95:.0f}/{p99:.0f} ms, CPU per stream per alert {row.cpu_per_stream_us():.0f} µs,"
        f" missing {row.missing}"
    )


# --- report ------------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and a == a and b == b else "-"


def report(rows: list[Row], sse: list[SseRow]) -> None:
    if rows:
        report_requests(rows)
    if sse:
        report_sse(sse)


def report_requests(rows: list[Row]) -> None:
    print("\n## request paths (closed loop; CPU = server processes, /proc/<pid>/stat)\n")
    print(
        "| path | workers | c | requests | req/s | p50 ms | p95 ms | p99 ms | server CPU/req ms"
        " | CPU ratio to raw floor | req/s ratio to raw floor | server cores | worker split"
        " | load gen ms/req (cores) | other cores | load avg | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    floors = {r.workers: r for r in rows if r.path == "floor: raw"}
    for r in rows:
        floor = floors.get(r.workers)
        split = "/".join(f"{s * 100:.0f}" for s in r.split) if r.workers > 1 else ""
        notes = f"{sum(r.errors.values())}" + (f" {r.errors}" if r.errors else "")
        if r.fresh:
            notes += f"; {r.fresh} signed during the run"
        if r.restarted:
            notes += "; a process came or went"
        print(
            f"| {r.path} | {r.workers} | {r.concurrency} | {r.requests:,} | {r.rate:,.0f} |"
            f" {r.p50:.1f} | {r.p95:.1f} | {r.p99:.1f} | {r.cpu_ms:.3f} |"
            f" {ratio(r.cpu_ms, floor.cpu_ms) if floor else '-'} |"
            f" {ratio(r.rate, floor.rate) if floor else '-'} |"
            f" {r.cores(r.server_cpu_s):.2f} | {split} |"
            f" {r.load_ms:.3f} ({r.cores(r.load_cpu_s):.2f}) | {r.other_cores:.2f} |"
            f" {r.load_average:.1f} | {notes} |"
        )
    by = {(r.path, r.workers): r for r in rows}
    scaling = [
        f"{path} x{by[path, 2].rate / by[path, 1].rate:.2f}"
        for path in dict.fromkeys(r.path for r in rows)
        if (path, 1) in by and (path, 2) in by and by[path, 1].rate
    ]
    if scaling:
        print("\nthroughput, 2 workers ÷ 1: " + ", ".join(scaling))


def report_sse(sse: list[SseRow]) -> None:
    print("\n## SSE fan-out (property-wide alert → every stream)\n")
    print(
        "| server | workers | streams (failed) | open: streams/s | open: CPU/stream ms"
        " | alert→all p50 ms | p95 ms | p99 ms | until the last, median ms | deliveries/s"
        " | CPU per alert, median ms | CPU per stream per alert µs | CPU ratio to baseline"
        " | client CPU per alert ms | missing |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    base = next((s for s in sse if s.name == "baseline"), None)
    for s in sse:
        p50, p95, p99 = percentiles(s.arrivals)
        versus = ratio(s.cpu_per_stream_us(), base.cpu_per_stream_us()) if base else "-"
        print(
            f"| {s.name} | {s.workers} | {s.streams} ({s.failed}) |"
            f" {s.streams / s.open_seconds if s.open_seconds else 0:.0f} |"
            f" {s.open_cpu_s / max(s.streams, 1) * 1000:.2f} | {p50:.0f} | {p95:.0f} | {p99:.0f} |"
            f" {statistics.median(s.last) * 1000 if s.last else float('nan'):.0f} |"
            f" {s.deliveries():,.0f} | {statistics.median(s.cpu) * 1000 if s.cpu else 0:.0f} |"
            f" {s.cpu_per_stream_us():.0f} | {versus if s is not base else ''} |"
            f" {statistics.median(s.client_cpu) * 1000 if s.client_cpu else 0:.0f} |"
            f" {s.missing} |"
        )


# --- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="bff-saturation-"))
    say(f"logs: {log_dir}; load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    rows: list[Row] = []
    sse: list[SseRow] = []
    for workers in args.workers:
        rows += floors_pass(args, workers, log_dir)
        rows += bff_pass(args, workers, log_dir)
        if "sse" in args.paths:
            sse += sse_pass(args, workers, baseline=not sse, log_dir=log_dir)
    say(f"done; load average {os.getloadavg()[0]:.2f}")
    report(rows, sse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=_ints, default=[1, 2], help="BFF_WORKERS values")
    parser.add_argument("--paths", type=_names(PATHS), default=list(PATHS))
    parser.add_argument("--floors", type=_names(FLOORS), default=list(FLOORS))
    parser.add_argument("--seconds", type=float, default=10.0, help="each measured window")
    parser.add_argument("--warmup", type=float, default=3.0, help="a run before each window")
    parser.add_argument("--devices", type=int, default=96, help="heartbeat/mutation desktops")
    parser.add_argument("--sse-streams", type=int, default=500)
    parser.add_argument("--sse-alerts", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny and short")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile the server processes during each request-path window (py-spy in the"
        " venv; collapsed stacks kept in DIR); the figures of such a run are perturbed",
    )
    parser.add_argument("--serve-floor", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--shared", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        serve_floor(args.serve_floor[0], int(args.serve_floor[1]), args.shared)
        return
    if args.quick:
        args.seconds, args.warmup, args.devices = 2.0, 0.5, 8
        args.sse_streams, args.sse_alerts = 50, 2
    if args.seconds > 40:
        parser.error("--seconds: proofs are signed ahead and the BFF accepts them for 60 s")
    raise_fd_limit()
    run(args)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def _names(allowed: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        names = [part for part in text.split(",") if part]
        unknown = set(names) - set(allowed)
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {sorted(unknown)}; choose from {allowed}")
        return names

    return parse


if __name__ == "__main__":
    main()
