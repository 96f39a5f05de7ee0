"""The simulator as a real process for tests: ``sim`` (one process per test session, reset to
the freshly generated demo before each test) and ``start_sim(**env)`` (a dedicated process, e.g.
wired to a test's own bus prefix)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.sim.desktop import DemoDevice
from tests.support.fixtures import REDIS_URL
from tests.support.procs import ServiceProcess

TEST_ENV = {"SIM_LATENCY": "0", "SIM_BUS": "record"}


class SimClient:
    """Control API of a simulator at ``url`` (``/_sim/*``) plus plain HTTP helpers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def close(self) -> None:
        self.http.close()

    def _ok(self, answer: httpx.Response) -> Any:
        assert answer.status_code < 300, f"{answer.request.url}: {answer.status_code} {answer.text}"
        return answer.json()

    def reset(self) -> None:
        self._ok(self.http.post("/_sim/reset"))

    def fault(
        self, service: str, mode: str, latency_ms: int = 0, rate: float = 1.0, status: int = 503
    ) -> None:
        self._ok(
            self.http.post(
                "/_sim/faults",
                json={
                    "service": service,
                    "mode": mode,
                    "latencyMs": latency_ms,
                    "rate": rate,
                    "status": status,
                },
            )
        )

    def clear_faults(self) -> None:
        self._ok(self.http.delete("/_sim/faults"))

    def calls(self, service: str | None = None, kind: str = "mutations") -> list[dict[str, Any]]:
        params = {"kind": kind, **({"service": service} if service else {})}
        items: list[dict[str, Any]] = self._ok(self.http.get("/_sim/calls", params=params))["items"]
        return items

    def events(self, subject: str = "") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._ok(
            self.http.get("/_sim/events", params={"subject": subject})
        )["items"]
        return items

    def today(self, property_id: str = "prop-demo-1") -> date:
        return date.fromisoformat(self._ok(self.http.get("/_sim/today"))[property_id])

    def get(self, path: str, **kwargs: Any) -> Any:
        return self._ok(self.http.get(path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> Any:
        return self._ok(self.http.post(path, **kwargs))

    def device(self, tenant_id: str = "tnt-demo", *, enroll: bool = True) -> DemoDevice:
        device = DemoDevice(self.url, tenant_id, client=self.http)
        if enroll:
            device.enroll()
        return device


class SimHandle(SimClient):
    """A simulator process this test session started, and its control API."""

    def __init__(self, proc: ServiceProcess) -> None:
        super().__init__(proc.url)
        self.proc = proc


@pytest.fixture(scope="session")
def sim_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log_dir = tmp_path_factory.mktemp("sim")
    proc = ServiceProcess("ops.sim", TEST_ENV, log_dir, name="sim", ready_path="/health")
    yield proc
    proc.stop()


@pytest.fixture
def sim(sim_process: ServiceProcess) -> Iterator[SimHandle]:
    """The shared simulator, reset (data, faults, calls, events, sessions) for this test."""
    handle = SimHandle(sim_process)
    handle.reset()
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def start_sim(log_dir: Path) -> Iterator[Callable[..., SimHandle]]:
    """Start a dedicated simulator (``start_sim(SIM_BUS="auto", BFF_REDIS_PREFIX=...)``)."""
    started: list[SimHandle] = []

    def start(**env: str) -> SimHandle:
        proc = ServiceProcess(
            "ops.sim",
            {**TEST_ENV, **env},
            log_dir,
            name=f"sim-{len(started) + 1}",
            ready_path="/health",
        )
        handle = SimHandle(proc)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.close()
        handle.proc.stop()


@pytest.fixture
def bus_sim(start_sim: Callable[..., SimHandle], redis_prefix: str) -> SimHandle:
    """A dedicated simulator publishing its domain events on this test's embedded bus."""
    return start_sim(
        SIM_BUS="auto",
        BFF_BUS="embedded",
        BFF_REDIS_PREFIX=redis_prefix,
        BFF_REDIS_SESSION_URL=REDIS_URL,
        PUBSUB_EMULATOR_HOST="",
    )
