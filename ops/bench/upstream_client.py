"""Upstream client benchmark: the full client vs bare httpx + msgspec, same run, same simulator.

``python -m ops.bench.upstream_client [--seconds 3] [--concurrency 1,16] [--sim-url URL]``

Starts a simulator on a free port (``SIM_LATENCY=0``: no artificial latency) unless ``--sim-url``
is given, then for each concurrency runs closed-loop callers of today's arrivals (a realistic
~30-item payload) for ``--seconds`` through:

* ``client``   — ``Upstreams.reservation.arrivals``: policy table, deadline scope, breaker,
  per-upstream limiter, ID-token hook, metrics, typed decoding;
* ``baseline`` — one shared ``httpx.AsyncClient`` GET of the same URL + the same msgspec decode.

Prints p50/p95/p99 latency, throughput and the client/baseline ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec
import trio

from edge.metrics import Metrics
from edge.settings import load_settings
from edge.upstream.factory import open_upstreams
from schemas.upstream.reservation import ReservationList

T, P = "tnt-demo", "prop-demo-1"
Call = Callable[[], Awaitable[Any]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_simulator() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "SIM_LATENCY": "0", "SIM_BUS": "record"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.sim"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("simulator did not start")


async def closed_loop(call: Call, callers: int, seconds: float) -> tuple[list[float], float]:
    latencies: list[float] = []
    stop_at = trio.current_time() + seconds

    async def caller() -> None:
        while trio.current_time() < stop_at:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    return latencies, time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(sim_url: str, seconds: float, levels: list[int]) -> None:
    settings = load_settings({"SIM_URL": sim_url})
    decoder = msgspec.json.Decoder(ReservationList)
    url = f"{sim_url}/reservation/v1/tenants/{T}/properties/{P}/arrivals"
    async with (
        open_upstreams(settings, Metrics()) as upstreams,
        httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=200)
        ) as raw,
    ):

        async def client_call() -> Any:
            return await upstreams.reservation.arrivals(T, P)

        async def baseline_call() -> Any:
            answer = await raw.get(url)
            return decoder.decode(answer.content)

        await closed_loop(client_call, 4, 0.5)  # warm both pools
        await closed_loop(baseline_call, 4, 0.5)
        print(f"{'callers':>7} {'side':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8}")
        for callers in levels:
            rows = {}
            for side, call in (("client", client_call), ("baseline", baseline_call)):
                latencies, elapsed = await closed_loop(call, callers, seconds)
                rows[side] = (
                    pct(latencies, 0.5),
                    pct(latencies, 0.95),
                    pct(latencies, 0.99),
                    len(latencies) / elapsed,
                )
                p50, p95, p99, rps = rows[side]
                print(f"{callers:>7} {side:>8} {p50:>8.2f} {p95:>8.2f} {p99:>8.2f} {rps:>8.0f}")
            c, b = rows["client"], rows["baseline"]
            print(
                f"{callers:>7} {'ratio':>8} {c[0] / b[0]:>8.2f} {c[1] / b[1]:>8.2f} "
                f"{c[2] / b[2]:>8.2f} {c[3] / b[3]:>8.2f}  (client / baseline)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--sim-url", default="")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    proc, url = (None, args.sim_url) if args.sim_url else start_simulator()
    try:
        trio.run(run, url, args.seconds, levels)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
