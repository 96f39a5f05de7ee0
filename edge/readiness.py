"""Readiness: which dependencies answer now, and which the service cannot run without.

``/health/ready`` is public, so a check's ``detail`` is a fixed string: never an exception's
text (a driver message names hosts, ports, users), never an actor address (tenant and device
ids). Why a check fails goes to the log instead, once each time the reason changes
(:class:`ReasonLog`), not on every poll of the load balancer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from edge.metrics import Metrics
from schemas.health import DependencyCheck, Readiness

log = logging.getLogger("bff.readiness")
Probe = Callable[[], Awaitable[DependencyCheck]]
UNAVAILABLE = "unavailable (the reason is in the service log)"


class ReasonLog:
    """Logs why the check ``name`` fails when the reason changes, and when it passes again."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._reason: str | None = None

    def failing(self, reason: str) -> None:
        if reason != self._reason:
            log.warning("readiness check failing", extra={"check": self.name, "reason": reason})
        self._reason = reason

    def passing(self) -> None:
        if self._reason is not None:
            log.info("readiness check passing again", extra={"check": self.name})
        self._reason = None


@dataclass
class _Entry:
    probe: Probe
    required: bool
    reasons: ReasonLog


class ReadinessBoard:
    """Subsystems register a probe; ``check`` runs all of them concurrently under one deadline."""

    def __init__(self, metrics: Metrics, timeout: float) -> None:
        self._metrics = metrics
        self._timeout = timeout
        self._entries: dict[str, _Entry] = {}
        self.draining = False

    def register(self, name: str, probe: Probe, *, required: bool = True) -> None:
        self._entries[name] = _Entry(probe, required, ReasonLog(name))

    async def check(self) -> Readiness:
        results: dict[str, DependencyCheck] = {}

        async def run(name: str, entry: _Entry) -> None:
            with trio.move_on_after(self._timeout):
                results[name] = await entry.probe()
                if results[name].ok:
                    entry.reasons.passing()
                return
            entry.reasons.failing(f"the probe did not answer within {self._timeout}s")
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
