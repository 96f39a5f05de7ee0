"""Actor runtime benchmark: ``ask`` through ActorSystem vs a bare Trio request/reply channel.

``python -m ops.bench.actors [--seconds 2] [--actors 1,100] [--askers 1,32]``

Both sides do the same work per request (a reply to a tiny Struct, no I/O), so the difference is
the runtime's own cost: registry lookup, envelope, bounded mailbox, reply slot, deadline scopes
and the supervisor's per-turn ``fail_after``. The baseline is one server task per "actor" reading
a memory channel and setting a ``trio.Event``. Closed loop: every asker sends, waits, repeats.
Prints p50/p95/p99 latency, throughput, and actor/baseline ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from actors.address import ActorAddress
from actors.config import ActorConfig
from actors.kind import ActorKind
from actors.system import ActorSystem
from edge.metrics import Metrics


class Ping(msgspec.Struct, frozen=True):
    n: int


class Echo:
    async def activate(self) -> None:
        return None

    async def handle(self, message: Any) -> Any:
        return message.n

    async def deactivate(self) -> None:
        return None


Ask = Callable[[int, int], Awaitable[Any]]


async def closed_loop(
    ask: Ask, actors: int, askers: int, seconds: float
) -> tuple[list[float], float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def asker(index: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            began = time.perf_counter()
            await ask(index % actors, n)
            latencies.append(time.perf_counter() - began)
            n += 1

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(askers):
            nursery.start_soon(asker, i)
    return latencies, time.perf_counter() - began


async def baseline(actors: int, askers: int, seconds: float) -> tuple[list[float], float]:
    channels = [
        trio.open_memory_channel[tuple[int, list[Any], trio.Event]](64) for _ in range(actors)
    ]

    async def serve(receive: trio.MemoryReceiveChannel[tuple[int, list[Any], trio.Event]]) -> None:
        async for n, slot, done in receive:
            slot.append(n)
            done.set()

    async def ask(actor: int, n: int) -> Any:
        slot: list[Any] = []
        done = trio.Event()
        with trio.fail_after(5):
            await channels[actor][0].send((n, slot, done))
            await done.wait()
        return slot[0]

    async with trio.open_nursery() as nursery:
        for _, receive in channels:
            nursery.start_soon(serve, receive)
        result = await closed_loop(ask, actors, askers, seconds)
        nursery.cancel_scope.cancel()
    return result


async def actor_system(actors: int, askers: int, seconds: float) -> tuple[list[float], float]:
    kind = ActorKind("echo", Ping, (Ping,), lambda address: Echo())
    system = ActorSystem([kind], ActorConfig(), Metrics().actors)
    addresses = [ActorAddress("echo", "bench", f"a{i}") for i in range(actors)]

    async def ask(actor: int, n: int) -> Any:
        return await system.ask(addresses[actor], Ping(n), timeout=5)

    async with trio.open_nursery() as nursery:
        await nursery.start(system.run)
        for address in addresses:  # activate first: measure steady state
            await system.ask(address, Ping(0))
        result = await closed_loop(ask, actors, askers, seconds)
        nursery.cancel_scope.cancel()
    return result


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1e6


async def main(seconds: float, actor_counts: list[int], asker_counts: list[int]) -> None:
    print(f"{'case':<28}{'p50 µs':>9}{'p95 µs':>9}{'p99 µs':>9}{'req/s':>11}{'ratio':>8}")
    for actors in actor_counts:
        for askers in asker_counts:
            rows = {}
            for name, run in (("baseline", baseline), ("actors", actor_system)):
                latencies, elapsed = await run(actors, askers, seconds)
                rows[name] = (latencies, len(latencies) / elapsed)
            base_rate = rows["baseline"][1]
            for name, (latencies, rate) in rows.items():
                label = f"{name} a={actors} askers={askers}"
                ratio = f"{rate / base_rate:.2f}x" if name == "actors" else ""
                print(
                    f"{label:<28}{pct(latencies, 50):>9.1f}{pct(latencies, 95):>9.1f}"
                    f"{pct(latencies, 99):>9.1f}{rate:>11.0f}{ratio:>8}"
                )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--actors", default="1,100")
    parser.add_argument("--askers", default="1,32")
    args = parser.parse_args()
    trio.run(
        main,
        args.seconds,
        [int(x) for x in args.actors.split(",")],
        [int(x) for x in args.askers.split(",")],
    )


if __name__ == "__main__":
    cli()
