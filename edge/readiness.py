"""Readiness: which dependencies answer now, and which the service cannot run without."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from edge.metrics import Metrics
from schemas.health import DependencyCheck, Readiness

Probe = Callable[[], Awaitable[DependencyCheck]]


@dataclass
class _Entry:
    probe: Probe
    required: bool


class ReadinessBoard:
    """Subsystems register a probe; ``check`` runs all of them concurrently under one deadline."""

    def __init__(self, metrics: Metrics, timeout: float) -> None:
        self._metrics = metrics
        self._timeout = timeout
        self._entries: dict[str, _Entry] = {}
        self.draining = False

    def register(self, name: str, probe: Probe, *, required: bool = True) -> None:
        self._entries[name] = _Entry(probe, required)

    async def check(self) -> Readiness:
        results: dict[str, DependencyCheck] = {}

        async def run(name: str, entry: _Entry) -> None:
            with trio.move_on_after(self._timeout):
                results[name] = await entry.probe()
                return
            results[name] = DependencyCheck(ok=False, detail=f"no answer within {self._timeout}s")

        async with trio.open_nursery() as nursery:
            for name, entry in self._entries.items():
                nursery.start_soon(run, name, entry)
        for name, result in results.items():
            self._metrics.dependency_up.labels(name).set(1 if result.ok else 0)
        down = sorted(n for n, r in results.items() if not r.ok and self._entries[n].required)
        if self.draining:
            down.append("draining")
        status = "not_ready" if down else "ready"
        return Readiness(status=status, down=down, checks=dict(sorted(results.items())))
