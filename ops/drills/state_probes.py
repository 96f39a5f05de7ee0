"""What the state drills (rows_state.py) drive and watch, beyond what framework.py offers.

Drills see the service the way an operator does: HTTP answers, each process's ``/metrics`` and
readiness, the ledger's own tables, the processes' memory. The helpers here are those views,
kept out of the drills so each drill reads as its story: break, observe, restore, check.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec
import trio
import trio_asyncio

from ledger.audit import Report, verify
from ledger.database import Database
from ops.drills.framework import DrillDesktop, Stack, metric_in, scrape
from ops.sim.desktop import APP_VERSION

BASE = "/bff/backoffice/v1"
PREFERENCES = f"{BASE}/preferences"
STREAM = f"{BASE}/sse/stream"
DEMO_PROPERTY = "prop-demo-1"

# -- requests a desktop makes ---------------------------------------------------------------


def heartbeat(desk: DrillDesktop) -> httpx.Response:
    """A heartbeat: recorded by the device's actor in Postgres (a write, even on a read route)."""
    return desk.post(
        f"{BASE}/devices/{desk.device.device_id}/heartbeat",
        json={"appVersion": APP_VERSION},
        headers={"Idempotency-Key": f"drill-{uuid.uuid4().hex}"},
    )


def change_preferences(desk: DrillDesktop, density: str = "compact") -> httpx.Response:
    """A mutating route (``PUT /preferences``, idempotency key kept in Postgres)."""
    return desk.request(
        "PUT",
        PREFERENCES,
        json={"density": density},
        headers={"Idempotency-Key": f"drill-{uuid.uuid4().hex}"},
    )


def dashboard(desk: DrillDesktop) -> httpx.Response:
    return desk.get(f"{BASE}/dashboard?propertyId={DEMO_PROPERTY}")


def outcome(response: httpx.Response) -> str:
    """``200``, or ``503 CACHE_UNAVAILABLE``: the status with the error code when there is one."""
    if response.status_code < 400:
        return str(response.status_code)
    try:
        return f"{response.status_code} {response.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return str(response.status_code)


RETRYABLE = ("503 CACHE_UNAVAILABLE", "503 SERVICE_UNAVAILABLE")


def as_desktop_retries(call: Callable[[], httpx.Response], tries: int = 3) -> list[str]:
    """Every answer to ``call`` until one is not a retryable 503 (the desktop retries those
    with the same idempotency key; a fresh key here is as good: the first attempt failed)."""
    answers = [outcome(call())]
    while answers[-1] in RETRYABLE and len(answers) < tries:
        answers.append(outcome(call()))
    return answers


class Traffic:
    """Desktops calling ``call`` back to back in a thread; answers and latencies by phase.

    The drill moves ``phase`` along its story (``before``, ``down``, ``after``...) and reads
    what each phase got: a transport error is counted by its type, never raised.
    """

    def __init__(
        self,
        desks: list[DrillDesktop],
        call: Callable[[DrillDesktop], httpx.Response],
        *,
        round_s: float = 0.0,
    ):
        self.phase = "before"
        self._round_s = round_s  # a round over every desk takes at least this: a paced desktop
        self.answers: dict[str, Counter[str]] = {}
        self.latencies: dict[str, list[float]] = {}
        self._desks = desks
        self._call = call
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def count(self, phase: str, answer: str | None = None) -> int:
        seen = self.answers.get(phase, Counter())
        return seen[answer] if answer is not None else sum(seen.values())

    def slowest(self, phase: str) -> float:
        return max(self.latencies.get(phase, [0.0]))

    def outcomes(self) -> set[str]:
        return {answer for phase in self.answers.values() for answer in phase}

    def _run(self) -> None:
        while not self._stop.is_set():
            round_ends = time.monotonic() + self._round_s
            for desk in self._desks:
                phase, start = self.phase, time.monotonic()
                try:
                    answer = outcome(self._call(desk))
                except httpx.HTTPError as exc:
                    answer = type(exc).__name__
                self.answers.setdefault(phase, Counter())[answer] += 1
                self.latencies.setdefault(phase, []).append(time.monotonic() - start)
            self._stop.wait(max(0.0, round_ends - time.monotonic()))


# -- each process's view --------------------------------------------------------------------


def readiness(stack: Stack) -> list[tuple[int, dict[str, Any]]]:
    """Each process's ``/health/ready`` (status, body); ``(0, {})`` when it does not answer.
    Asking also refreshes each process's ``bff_dependency_up`` gauges."""
    answers: list[tuple[int, dict[str, Any]]] = []
    for url in stack.instance_urls:
        try:
            response = httpx.get(url + "/health/ready", timeout=10.0)
            answers.append((response.status_code, response.json()))
        except (httpx.HTTPError, ValueError):
            answers.append((0, {}))
    return answers


def check_ok(body: dict[str, Any], check: str) -> bool | None:
    """Whether the readiness ``check`` (``redisCache``, ``postgres``...) passed; None: absent."""
    found = body.get("checks", {}).get(check)
    return None if found is None else bool(found.get("ok"))


def each(stack: Stack, name: str, **labels: str) -> list[float]:
    """``name`` on each process (the framework's ``metric`` sums them)."""
    return [metric_in(scrape(url), name, **labels) for url in stack.instance_urls]


def failed_actors(stack: Stack) -> int:
    """Actors the supervisors gave up on, over every admin endpoint (the metric otherwise)."""
    if not stack.admin_urls:
        return int(stack.metric("bff_actors_failed"))
    total = 0
    for url in stack.admin_urls:
        body = httpx.get(url + "/admin/actors", params={"limit": "1"}, timeout=10.0).json()
        total += int(body["failed"])
    return total


# -- the ledger -------------------------------------------------------------------------------


def direct_database_url(stack: Stack) -> str:
    """The ledger's URL, past the fault proxy when it names one of the proxy's listen ports
    (so the drill can read the ledger whatever the proxy does to the BFF's connections)."""
    url = stack.env.get("BFF_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bff_backoffice")
    if stack.faults_url is None:
        return url
    parts = urlsplit(url)
    address = f"{parts.hostname}:{parts.port or 5432}"
    routes = httpx.get(stack.faults_url + "/proxies", timeout=10.0).json()
    for route in routes.values():
        if route["listen"] == address:
            credentials = parts.netloc.rpartition("@")[0]
            netloc = f"{credentials}@{route['target']}" if credentials else route["target"]
            return urlunsplit(parts._replace(netloc=netloc))
    return url


def ledger_report(stack: Stack, *, max_lag_s: float = 60.0) -> Report:
    """``./ops/ledger verify``'s report (ops/audit/verify.py), read directly."""

    async def read() -> Report:
        async with trio_asyncio.open_loop():
            db = Database(direct_database_url(stack), max_size=1, timeout=15)
            await db.open()
            try:
                return await verify(db, max_lag_s=max_lag_s)
            finally:
                await db.close()

    return trio.run(read)


def ledger_problems(report: Report, *checks: str) -> list[str]:
    return [f"[{p.check}] {p.detail}" for p in report.problems if p.check in checks]


# -- the processes' memory -----------------------------------------------------------------


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with Path(table).open() as lines:
            next(lines)
            for line in lines:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    return inodes


def pids_listening(ports: set[int]) -> list[int]:
    """Processes holding a listening socket on any of ``ports`` (this machine only)."""
    wanted = {f"socket:[{inode}]" for port in ports for inode in _listening_inodes(port)}
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(str(fd.readlink()) in wanted for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
        except OSError:
            continue
    return sorted(found)


def bff_pids(stack: Stack) -> list[int]:
    """Every BFF process: the ones listening on an instance's or admin endpoint's port."""
    urls = [*stack.instance_urls, *stack.admin_urls]
    ports = {urlsplit(u).port or 80 for u in urls if urlsplit(u).hostname in LOCAL_HOSTS}
    return pids_listening(ports)


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- a desktop's live stream ---------------------------------------------------------------


@dataclass(frozen=True)
class StreamEvent:
    event: str
    data: dict[str, Any]
    id: str | None


def _parse(block: str) -> StreamEvent | None:
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in block.split("\n"):
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name:
            fields[name] = value
    if not data:
        return None
    return StreamEvent(
        fields.get("event", "message"), msgspec.json.decode("\n".join(data)), fields.get("id")
    )


class LiveStream:
    """``GET /sse/stream`` as a desktop holds it: a reader thread queues its events.

    ``status`` is the open's answer; a refused open keeps its ``body`` and reads nothing.
    """

    def __init__(
        self, desk: DrillDesktop, *, channels: str = "alerts", last_event_id: str | None = None
    ) -> None:
        path = f"{STREAM}?channels={channels}"
        headers = desk.headers("GET", path, Accept="text/event-stream")
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._client = httpx.Client(base_url=desk.bff_url, timeout=httpx.Timeout(10.0, read=None))
        self._events: queue.Queue[StreamEvent | None] = queue.Queue()
        self.ended = threading.Event()
        self.last_id = last_event_id
        self.response = self._client.send(
            self._client.build_request("GET", path, headers=headers), stream=True
        )
        self.status = self.response.status_code
        self.body = b""
        if self.status != 200:
            self.body = self.response.read()
            self._events.put(None)
            self.ended.set()
            self.close()
            return
        threading.Thread(target=self._read, name="drill-sse", daemon=True).start()

    def _read(self) -> None:
        buffer = ""
        try:
            for chunk in self.response.iter_text():
                buffer += chunk.replace("\r\n", "\n")
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    event = _parse(block)
                    if event is not None:
                        self._events.put(event)
        except (httpx.HTTPError, OSError, ValueError):
            pass
        finally:
            self.ended.set()
            self._events.put(None)

    def events(self, timeout: float) -> Iterator[StreamEvent]:
        """Events as they come, until ``timeout`` seconds pass or the stream ends."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self._events.get(timeout=left)
            except queue.Empty:
                return
            if event is None:
                self._events.put(None)
                return
            if event.id is not None:
                self.last_id = event.id
            yield event

    def close(self) -> None:
        self.response.close()
        self._client.close()
        self.ended.wait(5.0)


def wait_for_event(
    stream: LiveStream, matches: Callable[[StreamEvent], bool], timeout: float
) -> StreamEvent | None:
    """The first event that ``matches`` within ``timeout`` (None: none came, or it ended)."""
    for event in stream.events(timeout):
        if matches(event):
            return event
    return None
