"""The drill runner behind ``./ops/chaos drill``: one drill per reproducible failure-catalogue row.

A drill breaks one thing on a running local stack (``./ops/stack up [--instances N]``), watches
the service through what an operator would look at (HTTP answers, ``/metrics``, the ledger), and
puts everything back. It is plain synchronous code: drills are sequential stories, and httpx's
blocking client keeps them short to read.

Writing one::

    @drill("F-5", "inventory-service 5xx: the occupancy widget goes grey, the rest stays")
    def inventory_down(stack: Stack, ev: Evidence) -> None:
        desk = stack.desktop()
        with stack.upstream_fault("inventory", "error"):
            body = desk.get(DASHBOARD).json()
            ev.check(body["partial"] is True, "dashboard answered partial=true")

A drill passes when it returns; ``ev.check``/``ev.fail`` end it with FAIL and the evidence so far.
Whatever the drill does, the runner clears every simulator fault and sets every dependency proxy
back to ``pass`` afterwards (`restore_all`), so a failing drill never leaves the stack broken.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from ops.sim.desktop import DemoDevice

DASHBOARD = "/bff/backoffice/v1/dashboard"
ProxyMode = Literal["pass", "down", "hang"]
# Dependency names the fault proxy of ``./ops/stack up --instances N`` sits in front of.
DEPENDENCIES = ("redis-cache", "redis-session", "postgres", "pubsub", "pubsub-publish")


class DrillFailed(Exception):
    """A drill's check did not hold (the message says which)."""


@dataclass
class Evidence:
    """What a drill saw: printed under its row, PASS or FAIL."""

    lines: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        self.lines.append(line)

    def check(self, holds: bool, what: str) -> None:
        """Record ``what``; end the drill with FAIL when it does not hold."""
        self.lines.append(("ok: " if holds else "NOT: ") + what)
        if not holds:
            raise DrillFailed(what)

    def fail(self, what: str) -> None:
        self.check(False, what)


@dataclass(frozen=True)
class Stack:
    """The running local stack, as ``./ops/stack env`` describes it."""

    bff_url: str  # what the desktop sees: the load balancer with --instances
    sim_url: str
    instance_urls: tuple[str, ...]  # each BFF process directly (its own /metrics)
    admin_urls: tuple[str, ...]  # each BFF process's admin endpoint
    faults_url: str | None  # the dependency fault proxy's control endpoint, when there is one
    env: Mapping[str, str]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Stack:
        env = dict(os.environ if environ is None else environ)
        bff = env.get("BFF_URL", "http://127.0.0.1:8080").rstrip("/")
        return cls(
            bff_url=bff,
            sim_url=env.get("SIM_URL", "http://127.0.0.1:8090").rstrip("/"),
            instance_urls=_urls(env.get("BFF_INSTANCE_URLS", bff)),
            admin_urls=_urls(env.get("BFF_ADMIN_URLS", env.get("BFF_ADMIN_URL", ""))),
            faults_url=env.get("BFF_FAULTPROXY_URL", "").rstrip("/") or None,
            env=env,
        )

    # -- the desktop's view ---------------------------------------------------------------

    def desktop(self, username: str = "fd.demo", tenant: str = "tnt-demo") -> DrillDesktop:
        return DrillDesktop(self.bff_url, self.sim_url, username, tenant)

    # -- the simulator's faults (API contract §7) -----------------------------------------

    def sim(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = httpx.request(method, self.sim_url + path, timeout=10.0, **kwargs)
        response.raise_for_status()
        return response

    @contextlib.contextmanager
    def upstream_fault(
        self,
        service: str,
        mode: Literal["error", "latency", "hang", "drift"],
        *,
        rate: float = 1.0,
        latency_ms: int = 0,
        status: int = 503,
    ) -> Iterator[None]:
        body = {"service": service, "mode": mode, "rate": rate, "status": status}
        if latency_ms:
            body["latencyMs"] = latency_ms
        self.sim("POST", "/_sim/faults", json=body)
        try:
            yield
        finally:
            self.sim("DELETE", "/_sim/faults", params={"service": service})

    # -- the dependencies (the fault proxy of ./ops/stack up --instances N) ----------------

    def set_dependency(self, name: str, mode: ProxyMode) -> None:
        if self.faults_url is None:
            raise DrillFailed("no fault proxy: start the stack with ./ops/stack up --instances N")
        response = httpx.post(
            f"{self.faults_url}/proxies/{name}", json={"mode": mode}, timeout=10.0
        )
        response.raise_for_status()

    @contextlib.contextmanager
    def dependency(self, name: str, mode: ProxyMode) -> Iterator[None]:
        """``name`` is down (or hangs) inside the block and passes again after it."""
        self.set_dependency(name, mode)
        try:
            yield
        finally:
            self.set_dependency(name, "pass")

    # -- what the service reports ------------------------------------------------------------

    def metric(self, name: str, **labels: str) -> float:
        """``name`` summed over every BFF process and every series matching ``labels``."""
        return sum(metric_in(scrape(url), name, **labels) for url in self.instance_urls)

    def ready(self) -> list[int]:
        """Each process's ``/health/ready`` status code (0: not answering)."""
        codes = []
        for url in self.instance_urls:
            try:
                codes.append(httpx.get(url + "/health/ready", timeout=5.0).status_code)
            except httpx.HTTPError:
                codes.append(0)
        return codes

    def proxied(self) -> list[str]:
        """The dependencies the fault proxy sits in front of (no ``pubsub`` on the embedded
        bus); all of ``DEPENDENCIES`` when it cannot say."""
        try:
            routes = httpx.get(f"{self.faults_url}/proxies", timeout=10.0).json()
        except (httpx.HTTPError, ValueError):
            return list(DEPENDENCIES)
        return [name for name in DEPENDENCIES if name in routes]

    def restore_all(self) -> list[str]:
        """Clear every simulator fault and pass every dependency; say what could not be."""
        problems = []
        try:
            self.sim("DELETE", "/_sim/faults")
        except httpx.HTTPError as exc:
            problems.append(f"simulator faults not cleared: {exc}")
        if self.faults_url is not None:
            for name in self.proxied():
                try:
                    self.set_dependency(name, "pass")
                except (httpx.HTTPError, DrillFailed) as exc:
                    problems.append(f"{name} not restored: {exc}")
        return problems


def _urls(joined: str) -> tuple[str, ...]:
    return tuple(u.strip().rstrip("/") for u in joined.split(",") if u.strip())


class DrillDesktop:
    """A signed-in desktop calling the BFF with a fresh DPoP proof per request."""

    def __init__(self, bff_url: str, sim_url: str, username: str, tenant: str) -> None:
        self.bff_url = bff_url
        self.device = DemoDevice(sim_url, tenant)
        self.device.enroll()
        self.device.sign_in(username)
        self.http = httpx.Client(base_url=bff_url, timeout=15.0)

    def headers(self, method: str, path: str, **extra: str) -> dict[str, str]:
        headers = self.device.auth_headers(method, self.bff_url + path.split("?")[0])
        headers.update(extra)
        return headers

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        return self.http.request(
            method, path, headers=self.headers(method, path, **(headers or {})), **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self.http.close()


# -- /metrics ------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
Samples = list[tuple[str, dict[str, str], float]]


def scrape(instance_url: str) -> Samples:
    text = httpx.get(instance_url + "/metrics", timeout=10.0).text
    samples: Samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def metric_in(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for sample, have, value in samples
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


def wait_until(what: str, predicate: Callable[[], bool], timeout: float, ev: Evidence) -> float:
    """Poll ``predicate`` until it holds (answers how long that took) or fail the drill."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            took = time.monotonic() - start
            ev.note(f"{what} after {took:.1f}s")
            return took
        time.sleep(0.2)
    ev.fail(f"{what} within {timeout:.0f}s")
    raise AssertionError("unreachable")


# -- the registry --------------------------------------------------------------------------

DrillBody = Callable[[Stack, Evidence], None]


@dataclass(frozen=True)
class Drill:
    row: str
    title: str
    body: DrillBody
    ci: bool  # part of the subset .ci/run runs


REGISTRY: dict[str, Drill] = {}


def drill(row: str, title: str, *, ci: bool = False) -> Callable[[DrillBody], DrillBody]:
    def register(body: DrillBody) -> DrillBody:
        if row in REGISTRY:
            raise ValueError(f"two drills for {row}")
        REGISTRY[row] = Drill(row, title, body, ci)
        return body

    return register


@dataclass(frozen=True)
class Outcome:
    row: str
    title: str
    passed: bool
    seconds: float
    evidence: list[str]


def run_drill(spec: Drill, stack: Stack) -> Outcome:
    ev = Evidence()
    start = time.monotonic()
    passed = False
    try:
        spec.body(stack, ev)
        passed = True
    except DrillFailed:
        pass
    except Exception as exc:  # a broken drill is a FAIL with its reason
        ev.note(f"NOT: drill raised {type(exc).__name__}: {exc}")
    finally:
        for problem in stack.restore_all():
            ev.note(f"restore: {problem}")
            passed = False
    return Outcome(spec.row, spec.title, passed, time.monotonic() - start, ev.lines)


def row_key(row: str) -> tuple[int, str]:
    number = re.match(r"F-(\d+)", row)
    return (int(number.group(1)) if number else 10_000, row)
