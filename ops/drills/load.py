"""``load``: heartbeats from many DeviceActors through the admin endpoint, then a loss check.

Each simulated device sends numbered ``recordHeartbeat`` commands one after another. A command
whose outcome is unknown (503 from a killed actor, a timeout, a dropped connection) is retried
with the same ``commandId`` until acknowledged — the actor records a command id once — so at
the end every device's ``heartbeatCount`` (DeviceSyncStatus, reloaded after any kill) must equal its
acknowledged commands: fewer is a loss, more is a duplicate.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from ops.drills.admin_client import AdminClient

RETRY_PAUSE_S = 0.05  # client back-off between attempts of one command


@dataclass
class DeviceLoad:
    device_id: str
    acked: int = 0  # commands acknowledged (recorded exactly once by the actor)
    unresolved: int = 0  # commands still unknown when the grace period ended (0 or 1)
    recorded: int | None = None  # heartbeatCount reported by the actor afterwards


@dataclass
class LoadReport:
    run: str
    tenant: str
    devices: list[DeviceLoad]
    elapsed_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def acked(self) -> int:
        return sum(d.acked for d in self.devices)

    @property
    def lost(self) -> int:
        return sum(max(0, d.acked - (d.recorded or 0)) for d in self.devices)

    @property
    def extra(self) -> int:
        return sum(max(0, (d.recorded or 0) - d.acked - d.unresolved) for d in self.devices)

    @property
    def unverified(self) -> int:
        return sum(1 for d in self.devices if d.recorded is None)

    def ok(self) -> bool:
        return self.lost == 0 and self.extra == 0 and self.unverified == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "tenant": self.tenant,
            "acked": self.acked,
            "lost": self.lost,
            "extra": self.extra,
            "unverified": self.unverified,
            "retries": self.retries,
            "errors": dict(self.errors),
            "elapsedSeconds": round(self.elapsed_s, 3),
            "devices": {
                d.device_id: {"acked": d.acked, "unresolved": d.unresolved, "recorded": d.recorded}
                for d in self.devices
            },
        }

    def summary(self) -> list[str]:
        lat = sorted(self.latencies)
        rate = self.acked / self.elapsed_s if self.elapsed_s else 0.0
        lines = [
            f"run {self.run}: {len(self.devices)} device actors (tenant {self.tenant}),"
            f" {self.acked} heartbeats acknowledged in {self.elapsed_s:.1f}s ({rate:.0f}/s)",
            f"latency ms p50={_pct(lat, 50):.1f} p95={_pct(lat, 95):.1f} p99={_pct(lat, 99):.1f}"
            f" (first attempt to acknowledgement)",
            f"retries {self.retries}; errors {dict(self.errors) or 'none'}",
            f"check: lost={self.lost} duplicated={self.extra} unverified={self.unverified}"
            f" unresolved={sum(d.unresolved for d in self.devices)}",
        ]
        return lines


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index] * 1000


class LoadRun:
    def __init__(
        self,
        client: AdminClient,
        *,
        actors: int,
        tenant: str,
        timeout: float,
        grace: float,
    ) -> None:
        run = uuid.uuid4().hex[:8]
        self.client = client
        self.report = LoadReport(
            run, tenant, [DeviceLoad(f"load-{run}-{i:05d}") for i in range(actors)]
        )
        self.timeout = timeout
        self.grace = grace

    async def drive(self, duration: float, concurrency: int) -> LoadReport:
        """Send until ``duration`` ends, resolve in-doubt commands, then verify every device."""
        started = trio.current_time()
        stop_at = started + duration
        give_up_at = stop_at + self.grace
        async with trio.open_nursery() as nursery:
            for worker in range(concurrency):
                mine = self.report.devices[worker::concurrency]
                nursery.start_soon(self._worker, mine, stop_at, give_up_at)
        self.report.elapsed_s = trio.current_time() - started
        await self.verify(concurrency)
        return self.report

    async def _worker(self, devices: list[DeviceLoad], stop_at: float, give_up_at: float) -> None:
        sequence = 0
        while devices and trio.current_time() < stop_at:
            for device in devices:
                if trio.current_time() >= stop_at:
                    return
                await self._command(device, f"{device.device_id}-{sequence}", give_up_at)
            sequence += 1

    async def _command(self, device: DeviceLoad, command_id: str, give_up_at: float) -> None:
        message = {"type": "recordHeartbeat", "commandId": command_id, "appVersion": "chaos-load"}
        began = trio.current_time()
        while True:
            reply = await self._ask(device.device_id, message)
            if reply is not None:
                device.acked += 1
                self.report.latencies.append(trio.current_time() - began)
                return
            if trio.current_time() >= give_up_at:
                device.unresolved += 1
                return
            self.report.retries += 1
            await trio.sleep(RETRY_PAUSE_S)

    async def _ask(self, device_id: str, message: dict[str, Any]) -> dict[str, Any] | None:
        """The reply, or ``None`` when the outcome is unknown (retry the same command)."""
        try:
            response = await self.client.ask(
                "device", self.report.tenant, device_id, message, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            self.report.errors[type(exc).__name__] += 1
            return None
        if response.status_code == 200:
            reply: dict[str, Any] = response.json()["reply"]
            return reply
        code = _error_code(response)
        self.report.errors[f"{response.status_code} {code}"] += 1
        if response.status_code < 500:
            raise RuntimeError(f"admin refused the command: {response.text[:300]}")
        return None

    async def verify(self, concurrency: int) -> None:
        """Ask every device actor for its state (rebuilt from the ledger after any kill)."""
        limiter = trio.CapacityLimiter(concurrency)
        deadline = trio.current_time() + self.grace + 10.0

        async def check(device: DeviceLoad) -> None:
            async with limiter:
                while trio.current_time() < deadline:
                    state = await self._ask(device.device_id, {"type": "getState"})
                    if state is not None:
                        device.recorded = int(state["heartbeatCount"])
                        return
                    await trio.sleep(RETRY_PAUSE_S)

        async with trio.open_nursery() as nursery:
            for device in self.report.devices:
                nursery.start_soon(check, device)


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"
