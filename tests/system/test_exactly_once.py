"""Issue #13's randomized test: 1,000+ mutations through a BFF whose upstreams fail, stall and
hang, sent by impatient and duplicating clients, with the BFF killed (SIGKILL) and started again
on the same Postgres and Redis halfway through — and every mutation applied upstream exactly
once, every client that kept retrying answered in the end, every answer to a key the same.

Seeded: the seed is printed; ``EXACTLY_ONCE_SEED=<n>`` replays the same plan, the same client
behaviour per mutation and the same fault schedule (thread and network timing still vary).

The queue comes from ``ops/sim/outbox.py`` (mixed mutations over the demo hotel, each valid in
its chain's order); chains — everything about one reservation, one task, one work order — are
independent, so 16 desktops run them concurrently, each chain in order. Per mutation, drawn
from the seed: a plain send, an impatient first send (the client gives up after a few ms and
sends again), or two concurrent sends with the same key; then maybe one or two more sends after
the answer. Faults change as the run progresses (never on a timer): errors, latency below and
above the BFF's deadline for that upstream (above: the upstream applies it after the BFF gave
up, FAILURE_MODES F-32) and hangs (never applied), on three of the five services at a time.

Proof, from the simulator's call log (``/_sim/calls``): per key exactly one call *applied* —
2xx, not answered from the upstream's own idempotency store, not an injected error or hang —
and repeats answered by the BFF alone (a mutation answered at once, with no fault on its way,
reached its upstream once however often it was repeated); from what the upstreams hold (each
charge and refund on its folio once, each reservation and board item where its chain's last
mutation left it); and from the clients (each got a final success, every answer to a key the
same bytes, every repeat marked replayed). The explicit 409 and 422 cases run first, on a
check-in held by a hanging reservation-service.
"""

from __future__ import annotations

import functools
import math
import os
import random
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from ops.sim.desktop import DemoDevice
from ops.sim.outbox import (
    Answer,
    Applications,
    Endpoint,
    OutboxClient,
    Planner,
    QueuedMutation,
    Reply,
    RetryPolicy,
    chains,
    read_demo,
    settled_applications,
    upstream_state_problems,
)
from tests.support.fixtures import ServiceFactory
from tests.support.procs import ServiceProcess
from tests.support.sim import SimHandle
from tests.support.waiting import eventually

SEED_ENV = "EXACTLY_ONCE_SEED"
MUTATIONS = 1000
DESKTOPS = 16
PROPERTY = "prop-demo-1"
# The BFF's deadline per upstream mutation (DEPLOYMENT_TOPOLOGY §3), to put latencies on
# either side of it.
DEADLINE_MS = {"reservation": 1500, "billing": 600, "housekeeping": 700, "maintenance": 700}
DEADLINE_MS["lock"] = 1200
BFF_ENV = {
    # The lease a killed instance's keys stay in flight for: above the longest request
    # (reservation: two 1.5 s attempts), short enough that the test does not wait long.
    "BFF_IDEMPOTENCY_LEASE_S": "5",
    "BFF_BREAKER_OPEN_S": "0.5",
    "BFF_RATE_LIMIT_PER_MINUTE": "100000",
}
# Clients retry soon (backoff from 20 ms, a 409's Retry-After: 1 honoured) and long enough to
# outlast the restart and a killed instance's leases; a send whose attestation was spent by a
# run that failed retryably re-prompts (a fresh step-up, the same key).
POLICY = RetryPolicy(give_up_s=90, timeout_s=10, base_s=0.02, cap_s=1.0)


@dataclass
class Exercised:
    """How the client treated one mutation and every answer it got."""

    mutation: QueuedMutation
    behaviour: str  # plain | impatient | duplicate
    answers: list[Answer] = field(default_factory=list)  # the sends that wanted the result
    repeats: list[Answer] = field(default_factory=list)  # sends after a final answer


class Progress:
    """Mutations finished so far; the chaos schedule waits on it, never on a clock."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self._waiting: list[tuple[int, trio.Event]] = []

    def tick(self) -> None:
        self.done += 1
        for needed, event in self._waiting:
            if self.done >= needed:
                event.set()

    async def reached(self, fraction: float) -> None:
        needed = math.ceil(fraction * self.total)
        if self.done >= needed:
            return
        event = trio.Event()
        self._waiting.append((needed, event))
        await event.wait()


@dataclass
class Bff:
    """The BFF under test, which the chaos restarts (a new process on a new port)."""

    process: ServiceProcess
    endpoint: Endpoint
    start: functools.partial[ServiceProcess]
    restarts: int = 0

    async def kill_and_restart(self) -> None:
        self.process.signal(signal.SIGKILL)
        await trio.to_thread.run_sync(self.process.wait, 10)
        self.process = await trio.to_thread.run_sync(self.start)
        self.endpoint.url = self.process.url
        self.restarts += 1


async def test_every_mutation_is_applied_upstream_exactly_once(
    start_bff: ServiceFactory, start_sim: Callable[..., SimHandle]
) -> None:
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    print(f"{SEED_ENV}={seed}")
    sim = start_sim(SIM_LATENCY="0.1")
    start = functools.partial(start_bff, SIM_URL=sim.url, **BFF_ENV)
    process = start()
    bff = Bff(process, Endpoint(process.url), start)
    began = trio.current_time()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits) as http:
        clients = [
            OutboxClient(_desktop(sim), bff.endpoint, http, policy=POLICY, rng=random.Random(i))
            for i in range(DESKTOPS)
        ]
        data = await read_demo(http, sim.url, "tnt-demo", PROPERTY)
        planner = Planner(data, random.Random(seed))
        held = planner.plan(1, kinds=("check_in",))[0]
        queue = planner.plan(MUTATIONS)
        for index, mutation in enumerate(queue, start=1):
            mutation.index = index

        await _in_flight_and_reused_keys(clients[0], sim, held)
        print(f"explicit 409/422 cases done after {trio.current_time() - began:.1f}s")

        progress = Progress(len(queue))
        log: list[Exercised] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_chaos, http, sim.url, progress, random.Random(seed + 1), bff)
            async with trio.open_nursery() as desktops:
                for client, work in zip(clients, _share(chains(queue), DESKTOPS), strict=True):
                    desktops.start_soon(_desktop_run, client, work, seed, progress, log)
            nursery.cancel_scope.cancel()  # the chaos may still wait for a later phase
        (await http.delete(f"{sim.url}/_sim/faults")).raise_for_status()
        applications = await settled_applications(http, sim.url, queue, timeout=60)
        state = await upstream_state_problems(http, sim.url, data, queue)

    print(_statistics(log, applications, bff))
    print(f"whole run {trio.current_time() - began:.1f}s")
    assert bff.restarts == 1
    assert len(log) == len(queue) >= 1000
    assert not _unanswered(log), "\n".join(_unanswered(log)[:30])
    assert not _inconsistent(log), "\n".join(_inconsistent(log)[:30])
    wrong = [
        f"#{m.index} {m.kind} {m.key}: applied {applications.of(m)} times; calls "
        f"{_calls(applications, m)}"
        for m in queue
        if applications.of(m) != 1
    ]
    assert not wrong, "\n".join(wrong[:30])
    assert not applications.misrouted
    assert not _replays_that_called(log, applications), _replays_that_called(log, applications)
    assert not state, "\n".join(state[:30])


def _desktop(sim: SimHandle) -> DemoDevice:
    device = sim.device()
    device.sign_in("fd.demo")
    return device


# --- the explicit cases ------------------------------------------------------------------------


async def _in_flight_and_reused_keys(
    client: OutboxClient, sim: SimHandle, held: QueuedMutation
) -> None:
    """A check-in held at a hanging reservation-service: the same request again is 409
    ``IDEMPOTENCY_IN_FLIGHT`` (retryable, ``Retry-After``); the key with another body or on
    another route is 422 ``IDEMPOTENCY_KEY_REUSED`` and reaches no upstream; once the upstream
    answers, the retrying client gets its check-in, applied once, and a resend its replay."""
    sim.fault("reservation", "hang")
    async with trio.open_nursery() as nursery:
        first: list[Answer] = []

        async def send_first() -> None:
            first.append(await client.send(held))

        nursery.start_soon(send_first)
        await _upstream_saw(sim, held.key)
        again = await _until_in_flight(client, held)
        assert again.retryable and again.retry_after is not None, again
        other_body = held.changed(roomId=f"room-{PROPERTY}-101")
        other_route = QueuedMutation(
            0,
            "check_out",
            held.chain,
            held.path.replace("check-in", "check-out"),
            held.body,
            held.key,
        )
        for reused in (other_body, other_route):
            answer = Reply.of(await client.post(reused))
            assert (answer.status, answer.code) == (422, "IDEMPOTENCY_KEY_REUSED"), answer
            assert not answer.retryable
        sim.clear_faults()
    [done] = first
    assert done.ok and not done.replayed, done.trail
    resend = Reply.of(await client.post(held))
    assert (resend.status, resend.replayed, resend.body) == (done.status, True, done.body)
    assert Reply.of(await client.post(other_body)).code == "IDEMPOTENCY_KEY_REUSED"
    calls = sim.calls("reservation")
    mine = [c for c in calls if c["idempotencyKey"] == held.key]
    assert all(c["path"].endswith("/check-in") and c["body"].get("roomId") is None for c in mine)
    assert any(c["fault"] == "hang" for c in mine), mine
    assert sum(c["status"] == 200 and not c["replayed"] for c in mine) == 1, mine


async def _upstream_saw(sim: SimHandle, key: str) -> None:
    """Wait until a call with ``key`` reached the upstream (the BFF holds the key then)."""
    await eventually(lambda: any(c["idempotencyKey"] == key for c in sim.calls()), timeout=20)


async def _until_in_flight(client: OutboxClient, held: QueuedMutation) -> Reply:
    """The same request while the first holds the key. The first's attempts are timed out
    by the BFF and retried by its client, so in the short gap between two of them this
    request may claim the key itself (and hang in turn): then it is sent again."""
    for _ in range(10):
        answer = Reply.of(await client.post(held))
        if answer.status == 409:
            assert answer.code == "IDEMPOTENCY_IN_FLIGHT", answer
            return answer
        assert answer.code == "UPSTREAM_TIMEOUT", answer
    raise AssertionError("never saw the request in flight")


# --- the random run ----------------------------------------------------------------------------


def _share(work: list[list[QueuedMutation]], n: int) -> list[list[list[QueuedMutation]]]:
    """Chains dealt to ``n`` desktops, longest first to the least loaded."""
    shares: list[list[list[QueuedMutation]]] = [[] for _ in range(n)]
    load = [0] * n
    for chain in sorted(work, key=len, reverse=True):
        least = load.index(min(load))
        shares[least].append(chain)
        load[least] += len(chain)
    return shares


async def _desktop_run(
    client: OutboxClient,
    work: list[list[QueuedMutation]],
    seed: int,
    progress: Progress,
    log: list[Exercised],
) -> None:
    for chain in work:
        for mutation in chain:
            rng = random.Random(f"{seed}:{mutation.index}")
            log.append(await _exercise(client, mutation, rng))
            progress.tick()


async def _exercise(
    client: OutboxClient, mutation: QueuedMutation, rng: random.Random
) -> Exercised:
    draw = rng.random()
    if draw < 0.1:
        done = Exercised(mutation, "impatient")
        done.answers.append(await client.send(mutation, first_timeout=rng.uniform(0.005, 0.08)))
    elif draw < 0.2:
        done = Exercised(mutation, "duplicate")

        async def one() -> None:
            done.answers.append(await client.send(mutation))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)
            nursery.start_soon(one)
    else:
        done = Exercised(mutation, "plain")
        done.answers.append(await client.send(mutation))
    if rng.random() < 0.1:
        for _ in range(rng.randint(1, 2)):
            done.repeats.append(await client.send(mutation))
    return done


async def _chaos(
    http: httpx.AsyncClient, sim_url: str, progress: Progress, rng: random.Random, bff: Bff
) -> None:
    """Faults that change with progress, and the BFF killed and restarted halfway."""
    for fraction in (0.0, 0.25):
        await progress.reached(fraction)
        await _faults(http, sim_url, rng)
    await progress.reached(0.45)
    killed = trio.current_time()
    await bff.kill_and_restart()
    print(f"BFF killed and serving again after {trio.current_time() - killed:.1f}s")
    await progress.reached(0.6)
    await _faults(http, sim_url, rng)
    await progress.reached(0.85)
    (await http.delete(f"{sim_url}/_sim/faults")).raise_for_status()


async def _faults(http: httpx.AsyncClient, sim_url: str, rng: random.Random) -> None:
    (await http.delete(f"{sim_url}/_sim/faults")).raise_for_status()
    for service in rng.sample(sorted(DEADLINE_MS), 3):
        mode = rng.choice(["error", "latency", "latency", "hang"])
        spec: dict[str, Any] = {"service": service, "mode": mode, "rate": rng.uniform(0.05, 0.25)}
        if mode == "latency":  # below the BFF's deadline, or past it (applied, answer lost)
            beyond = rng.random() < 0.5
            spec["latencyMs"] = DEADLINE_MS[service] + 300 if beyond else DEADLINE_MS[service] // 3
        if mode == "hang":
            spec["rate"] = rng.uniform(0.03, 0.1)
        print(f"fault at {service}: {spec}")
        (await http.post(f"{sim_url}/_sim/faults", json=spec)).raise_for_status()


# --- the verdict -------------------------------------------------------------------------------


def _unanswered(log: list[Exercised]) -> list[str]:
    """Sends that never got a final success (the client kept retrying and gave up)."""
    return [
        f"#{e.mutation.index} {e.mutation.kind} {e.behaviour}: {' → '.join(a.trail)}"
        for e in log
        for a in e.answers + e.repeats
        if not a.ok
    ]


def _inconsistent(log: list[Exercised]) -> list[str]:
    """Keys whose answers differ: every answer to one key is the stored one, byte for byte,
    and a send after the final answer is marked as a replay."""
    found = []
    for e in log:
        seen = {(a.status, a.body) for a in e.answers + e.repeats}
        if len(seen) > 1:
            found.append(f"#{e.mutation.index} {e.mutation.kind}: {len(seen)} different answers")
        found += [
            f"#{e.mutation.index} {e.mutation.kind}: a repeat was not a replay: {a.trail}"
            for a in e.repeats
            if not a.replayed
        ]
    return found


def _replays_that_called(log: list[Exercised], applications: Applications) -> list[str]:
    """A replay is answered by the BFF, never by the upstream: a mutation answered at its first
    send, with no fault on its way, reached the upstream once however often it was repeated."""
    return [
        f"#{e.mutation.index} {e.mutation.kind}: {_calls(applications, e.mutation)}"
        for e in log
        if e.repeats
        and e.behaviour == "plain"
        and e.answers[0].trail == ["200"]
        and not any(c["fault"] for c in applications.calls.get(e.mutation.key, []))
        and len(applications.calls.get(e.mutation.key, [])) != 1
    ]


def _calls(applications: Applications, m: QueuedMutation) -> list[str]:
    return [
        f"{c['status']}{' replayed' if c['replayed'] else ''} fault={c['fault']}"
        for c in applications.calls.get(m.key, [])
    ]


def _statistics(log: list[Exercised], applications: Applications, bff: Bff) -> str:
    behaviours = Counter(e.behaviour for e in log)
    trail = Counter(step for e in log for a in e.answers + e.repeats for step in a.trail)
    calls = [c for found in applications.calls.values() for c in found]
    faults = Counter(c["fault"] for c in calls if c["fault"])
    absorbed = sum(1 for c in calls if c["replayed"])
    return (
        f"{len(log)} mutations, behaviours {dict(behaviours)}, BFF restarts {bff.restarts}\n"
        f"answers seen: {dict(trail.most_common())}\n"
        f"upstream calls {len(calls)}: faults {dict(faults)}, absorbed by the upstream's key"
        f" store {absorbed}"
    )
