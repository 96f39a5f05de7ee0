"""Heartbeat benchmark: the all-tenant peak (2,500 devices, one heartbeat per device per minute,
compressed in time), then saturation, with the bare ``/health/live`` throughput of the same
server in the same run as the baseline of the ratio; and the CPU cost of DPoP + JWT checks.

``python -m ops.bench.heartbeat [--devices 2500] [--compress 10] [--seconds 5] [--concurrency 32]``

Every request is a real authenticated call: ``Authorization: DPoP`` with a fresh proof signed by
the device's key, verified by the BFF (proof, token, binding, replay, revocation, rate limit),
then DeviceActor → DeviceSyncStatus in Postgres.
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass, field

import httpx
import msgspec
import trio
from jwcrypto import jwk

from edge.auth.dpop import make_proof, verify_proof
from edge.auth.tokens import KeySet, TokenVerifier
from ops.bench.stack import BenchStack, bench_stack, percentiles
from ops.sim.desktop import DemoDevice
from schemas.upstream.iam import AUDIENCE, ISSUER, Jwks

APP_VERSION = "1.4.0"


@dataclass
class Device:
    device_id: str
    key: jwk.JWK
    token: str


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def row(self, baseline: float | None) -> str:
        p50, p95, p99 = percentiles(self.latencies)
        rate = len(self.latencies) / self.seconds if self.seconds else 0.0
        ratio = f"{rate / baseline:6.2f}" if baseline else "     -"
        return (
            f"{self.name:<28} {len(self.latencies):>7} {p50:8.2f} {p95:8.2f} {p99:8.2f}"
            f" {rate:9.0f} {ratio} {self.errors:>6}"
        )


def enroll(stack: BenchStack, count: int, threads: int = 8) -> list[Device]:
    """Enrol and sign in ``count`` devices at the simulator (a few threads: it is setup)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> Device:
        with httpx.Client(timeout=30) as client:
            demo = DemoDevice(stack.sim_url, "tnt-demo", client=client)
            demo.enroll()
            tokens = demo.sign_in("fd.demo")
            return Device(demo.device_id, demo.key, tokens.access_token)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count)))


ROUTE = 'route="/bff/backoffice/v1/devices/<deviceId>/heartbeat"'


def server_histogram(stack: BenchStack) -> dict[float, float]:
    """Cumulative bucket counts of the BFF's own heartbeat latency (``le`` → count)."""
    text = httpx.get(f"{stack.bff_url}/metrics", timeout=10).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("bff_http_request_duration_seconds_bucket") and ROUTE in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets


def server_quantiles(before: dict[float, float], after: dict[float, float]) -> str:
    """p50/p95/p99 upper bounds (bucket edges, ms) of the requests between two scrapes."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1] if delta else 0.0
    if not total:
        return "no samples"
    out = []
    for q in (0.50, 0.95, 0.99):
        edge = next(le for le, count in delta if count >= q * total)
        out.append(f"p{int(q * 100)} <= {edge * 1000:g} ms")
    return ", ".join(out)


def headers(stack: BenchStack, device: Device) -> dict[str, str]:
    url = f"{stack.bff_url}/bff/backoffice/v1/devices/{device.device_id}/heartbeat"
    proof = make_proof(
        device.key,
        method="POST",
        url=url,
        access_token=device.token,
        iat=time.time(),
        jti=uuid.uuid4().hex,
    )
    return {"Authorization": f"DPoP {device.token}", "DPoP": proof, "X-App-Version": APP_VERSION}


async def beat(
    client: httpx.AsyncClient, stack: BenchStack, device: Device, hdrs: dict[str, str], phase: Phase
) -> None:
    started = time.perf_counter()
    try:
        answer = await client.post(
            f"/bff/backoffice/v1/devices/{device.device_id}/heartbeat",
            json={"appVersion": APP_VERSION},
            headers=hdrs,
        )
        ok = answer.status_code == 200
    except httpx.HTTPError:
        ok = False
    if ok:
        phase.latencies.append(time.perf_counter() - started)
    else:
        phase.errors += 1


async def peak(stack: BenchStack, devices: list[Device], compress: float) -> Phase:
    """Open loop: every device once, spread evenly over 60 s / ``compress``."""
    phase = Phase(f"peak (60s/{compress:g})")
    window = 60.0 / compress
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=stack.bff_url, limits=limits, timeout=30) as client:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i, device in enumerate(devices):
                await trio.sleep_until(start + window * i / len(devices))
                # A fresh proof at send time (its iat must be within the BFF's window).
                nursery.start_soon(beat, client, stack, device, headers(stack, device), phase)
        phase.seconds = trio.current_time() - start
    return phase


async def closed_loop(
    stack: BenchStack,
    devices: list[Device],
    seconds: float,
    workers: int,
    name: str,
    *,
    health: bool = False,
) -> Phase:
    phase = Phase(name)
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(base_url=stack.bff_url, limits=limits, timeout=30) as client:
        deadline = trio.current_time() + seconds

        async def worker(offset: int) -> None:
            n = offset
            while trio.current_time() < deadline:
                if health:
                    started = time.perf_counter()
                    answer = await client.get("/health/live")
                    if answer.status_code == 200:
                        phase.latencies.append(time.perf_counter() - started)
                    else:
                        phase.errors += 1
                else:
                    device = devices[n % len(devices)]
                    await beat(client, stack, device, headers(stack, device), phase)
                n += workers

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for w in range(workers):
                nursery.start_soon(worker, w)
        phase.seconds = trio.current_time() - start
    return phase


async def verification_cpu(stack: BenchStack, device: Device, rounds: int = 2000) -> float:
    """Microseconds of CPU per request for DPoP proof + access-token verification."""
    jwks_url = f"{stack.sim_url}/iam/.well-known/jwks.json"
    raw = (await trio.to_thread.run_sync(httpx.get, jwks_url)).content
    keyset = msgspec.json.decode(raw, type=Jwks)

    async def fetch() -> Jwks:
        return keyset

    verifier = TokenVerifier(KeySet(fetch), issuer=ISSUER, audience=AUDIENCE)
    url = f"{stack.bff_url}/x"
    proofs = [
        make_proof(
            device.key,
            method="GET",
            url=url,
            access_token=device.token,
            iat=time.time(),
            jti=uuid.uuid4().hex,
        )
        for _ in range(rounds)
    ]
    await verifier.verify(device.token, now=time.time())  # fill the key cache
    started = time.process_time()
    for proof in proofs:
        verify_proof(proof, method="GET", url=url, access_token=device.token, now=time.time())
        await verifier.verify(device.token, now=time.time())
    return (time.process_time() - started) / rounds * 1e6


async def run(stack: BenchStack, args: argparse.Namespace) -> None:
    print(f"enrolling and signing in {args.devices} devices at the simulator …", flush=True)
    devices = await trio.to_thread.run_sync(enroll, stack, args.devices)
    warm = await closed_loop(stack, devices, 0.1, args.concurrency, "warm-up")
    for i in range(0, len(devices), args.concurrency):  # every session opened before timing
        await peak(stack, devices[i : i + args.concurrency], 1e9)
    del warm
    baseline = await closed_loop(
        stack, devices, args.seconds, args.concurrency, "baseline /health/live", health=True
    )
    base_rate = len(baseline.latencies) / baseline.seconds
    before = await trio.to_thread.run_sync(server_histogram, stack)
    at_peak = await peak(stack, devices, args.compress)
    middle = await trio.to_thread.run_sync(server_histogram, stack)
    saturation = await closed_loop(
        stack, devices, args.seconds, args.concurrency, f"saturation (c={args.concurrency})"
    )
    after = await trio.to_thread.run_sync(server_histogram, stack)
    cpu_us = await verification_cpu(stack, devices[0])
    print(
        f"\n{'phase':<28} {'requests':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
        f" {'req/s':>9} {'ratio':>6} {'errors':>6}"
    )
    for phase in (baseline, at_peak, saturation):
        print(phase.row(base_rate))
    print("\nserver-side heartbeat latency (the BFF's histogram, bucket upper bounds):")
    print(f"  peak:       {server_quantiles(before, middle)}")
    print(f"  saturation: {server_quantiles(middle, after)}")
    print(f"\nDPoP proof + access token verification: {cpu_us:.0f} µs CPU per request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2500)
    parser.add_argument("--compress", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with bench_stack(sim_env={"SIM_LATENCY": "0"}, BFF_RATE_LIMIT_PER_MINUTE="100000") as stack:
        trio.run(run, stack, args)


if __name__ == "__main__":
    main()
