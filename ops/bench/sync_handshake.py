"""Sync handshake benchmark: p50/p95/p99 of ``POST /sync/handshake`` through the BFF, and of the
simulated sync-service's own handshake called directly in the same run — the difference is what
the BFF adds above the simulator's latency (spec: handshake p95 < 300 ms).

``python -m ops.bench.sync_handshake [--calls 200] [--devices 4] [--sim-latency 0]``

Every BFF call is a real authenticated request (``Authorization: DPoP`` with a fresh proof):
auth chain, Postgres read of the cached cursor, sync-service's handshake and cursor read (at
once), then the DeviceActor records ``sync.handshake_completed.v1``. Calls are sequential (one
in flight), so the numbers are latency, not throughput.
"""

from __future__ import annotations

import argparse
import time

import httpx

from ops.bench.stack import BenchStack, bench_stack, percentiles
from ops.sim.desktop import APP_VERSION, DemoDevice

PATH = "/bff/backoffice/v1/sync/handshake"


def _devices(stack: BenchStack, count: int) -> list[DemoDevice]:
    devices = []
    for n in range(count):
        device = DemoDevice(stack.sim_url, "tnt-demo", name=f"bench-{n}")
        device.enroll()
        device.sign_in("fd.demo")
        devices.append(device)
    return devices


def through_bff(stack: BenchStack, devices: list[DemoDevice], calls: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=stack.bff_url, timeout=10) as client:
        for n in range(calls):
            device = devices[n % len(devices)]
            assert device.tokens is not None
            token = device.tokens.access_token
            headers = {
                "Authorization": f"DPoP {token}",
                "DPoP": device.proof("POST", stack.bff_url + PATH, access_token=token),
                "X-App-Version": APP_VERSION,
            }
            started = time.perf_counter()
            answer = client.post(PATH, json={"deviceId": device.device_id}, headers=headers)
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    return latencies


def direct(stack: BenchStack, devices: list[DemoDevice], calls: int) -> list[float]:
    """The simulated sync-service's handshake alone (what the BFF waits for)."""
    latencies = []
    body = {"operatorId": "op", "appVersion": APP_VERSION, "schemaVersion": 1, "cursorVersion": 0}
    with httpx.Client(base_url=stack.sim_url, timeout=10) as client:
        for n in range(calls):
            device = devices[n % len(devices)]
            path = f"/sync/v1/tenants/tnt-demo/devices/{device.device_id}/handshake"
            started = time.perf_counter()
            answer = client.post(path, json=body)
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    return latencies


def row(name: str, latencies: list[float]) -> str:
    p50, p95, p99 = percentiles(latencies)
    return f"{name:<34} {len(latencies):>6} {p50:8.2f} {p95:8.2f} {p99:8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--sim-latency", default="0", help="SIM_LATENCY (1 = production-like)")
    args = parser.parse_args()
    sim_env = {"SIM_LATENCY": args.sim_latency}
    with bench_stack(sim_env=sim_env, BFF_RATE_LIMIT_PER_MINUTE="100000") as stack:
        devices = _devices(stack, args.devices)
        through_bff(stack, devices, 20)  # warm-up: connections, actors, JIT-free but cached
        bff = through_bff(stack, devices, args.calls)
        sim = direct(stack, devices, args.calls)
    print(f"{'':<34} {'calls':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    print(row("handshake through the BFF", bff))
    print(row("sync-service handshake directly", sim))
    added = [b - s for b, s in zip(sorted(bff), sorted(sim), strict=True)]
    print(row("added by the BFF (quantile diff)", added))


if __name__ == "__main__":
    main()
