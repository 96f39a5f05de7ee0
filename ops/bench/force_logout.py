"""Force-logout end to end: iam revokes a session → ``iam.session.revoked.v1`` on the bus → the
BFF's subscriber → DeviceActor → revocation marker → the device's next request is rejected.

``python -m ops.bench.force_logout [--sessions 50]``

For each session: revoke it at the simulated iam, then poll the BFF with that device until it
answers 401 SESSION_EXPIRED; the latency is from the revoke call's return to the first
rejection (resolution: one poll round trip, printed as the baseline). Spec: < 5 s p95; goal < 1 s.
"""

from __future__ import annotations

import argparse
import time

import httpx

from ops.bench.stack import BenchStack, bench_stack, percentiles
from ops.sim.desktop import DemoDevice

WHOAMI = "/bff/backoffice/v1/devices/{device}/heartbeat"


def measure(stack: BenchStack, sessions: int) -> tuple[list[float], list[float]]:
    latencies: list[float] = []
    polls: list[float] = []
    with httpx.Client(timeout=10) as client:
        for _ in range(sessions):
            device = DemoDevice(stack.sim_url, "tnt-demo", client=client)
            device.enroll()
            tokens = device.sign_in("fd.demo")
            path = WHOAMI.format(device=device.device_id)

            def call(device: DemoDevice = device, path: str = path) -> int:
                headers = device.auth_headers("POST", stack.bff_url + path)
                answer = client.post(
                    stack.bff_url + path, json={"appVersion": "1.4.0"}, headers=headers
                )
                return answer.status_code

            assert call() == 200
            client.post(
                f"{stack.sim_url}/_sim/iam/sessions/{tokens.session_id}/revoke",
                json={"reason": "security"},
            ).raise_for_status()
            revoked = time.perf_counter()
            deadline = revoked + 10
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                status = call()
                polls.append(time.perf_counter() - started)
                if status == 401:
                    latencies.append(time.perf_counter() - revoked)
                    break
    return latencies, polls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    args = parser.parse_args()
    with bench_stack(
        sim_env={"SIM_LATENCY": "0", "SIM_BUS": "auto"}, BFF_RATE_LIMIT_PER_MINUTE="100000"
    ) as stack:
        latencies, polls = measure(stack, args.sessions)
    p50, p95, p99 = percentiles(latencies)
    b50, b95, b99 = percentiles(polls)
    print(f"force-logout, {len(latencies)}/{args.sessions} sessions rejected within 10 s")
    print(f"  revoke → first rejection  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms")
    print(f"  baseline: one poll        p50 {b50:7.1f} ms  p95 {b95:7.1f} ms  p99 {b99:7.1f} ms")
    print(f"  ratio p95 / poll p95: {p95 / b95:.1f}")


if __name__ == "__main__":
    main()
