"""The actor runtime itself (mailbox, ask/tell deadlines, supervision, passivation, kill) with a
small probe kind, on Trio's virtual clock: deadlines are exact and nothing sleeps for real."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from actors.address import ActorAddress
from actors.config import ActorConfig
from actors.errors import (
    ActorCrashed,
    ActorFailed,
    AskTimeout,
    CommandRejected,
    OverloadedError,
    WrongMessage,
)
from actors.instruments import ActorInstruments
from actors.kind import ActorKind
from actors.supervision import RestartBudget
from actors.system import ActorSystem


class Work(msgspec.Struct, frozen=True):
    label: str
    gate: str | None = None  # block on this named gate before finishing
    fail: bool = False
    reject: bool = False


@dataclass
class Probe:
    """Shared test state: what every incarnation did, and gates the test opens."""

    journal: list[str] = field(default_factory=list)
    gates: dict[str, trio.Event] = field(default_factory=dict)
    incarnations: int = 0
    activations: list[float] = field(default_factory=list)
    fail_activation: bool = False
    deactivate_gate: str | None = None
    running: set[ActorAddress] = field(default_factory=set)  # incarnation alive

    def gate(self, name: str) -> trio.Event:
        return self.gates.setdefault(name, trio.Event())


class ProbeActor:
    def __init__(self, probe: Probe, address: ActorAddress) -> None:
        probe.incarnations += 1
        self.n = probe.incarnations
        self.probe = probe
        self.address = address

    async def activate(self) -> None:
        self.probe.activations.append(trio.current_time())
        assert self.address not in self.probe.running, "two incarnations active at once"
        self.probe.journal.append(f"activate#{self.n}")
        if self.probe.fail_activation:
            raise RuntimeError("cannot rehydrate")
        self.probe.running.add(self.address)

    async def handle(self, message: Any) -> Any:
        self.probe.journal.append(f"handle#{self.n}:{message.label}")
        if message.gate:
            try:
                await self.probe.gate(message.gate).wait()
            except trio.Cancelled:
                self.probe.running.discard(self.address)
                raise
        if message.reject:
            raise CommandRejected(self.address, "no")
        if message.fail:
            self.probe.running.discard(self.address)
            raise ValueError(f"boom on {message.label}")
        return f"done:{message.label}#{self.n}"

    async def deactivate(self) -> None:
        self.probe.journal.append(f"deactivate#{self.n}")
        if self.probe.deactivate_gate:
            await self.probe.gate(self.probe.deactivate_gate).wait()
        self.probe.journal.append(f"stopped#{self.n}")
        self.probe.running.discard(self.address)


A = ActorAddress("probe", "tnt-a", "one")
B = ActorAddress("probe", "tnt-a", "two")

CONFIG = ActorConfig(
    mailbox_size=2,
    tell_timeout_s=1.0,
    ask_timeout_s=5.0,
    idle_timeout_s=60.0,
    restart_min_s=0.1,
    restart_max_s=1.0,
    restart_jitter=0.0,
    max_restarts=3,
    restart_window_s=30.0,
)

Start = Callable[..., Any]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """``await start(probe, **config)`` → a running ActorSystem with the probe kind."""
    async with trio.open_nursery() as nursery:

        async def make(probe: Probe, **overrides: Any) -> ActorSystem:
            kind = ActorKind("probe", Work, (Work,), lambda a: ProbeActor(probe, a))
            config = ActorConfig(**{**CONFIG.__dict__, **overrides})
            system = ActorSystem([kind], config, ActorInstruments())
            await nursery.start(system.run)
            return system

        yield make
        nursery.cancel_scope.cancel()


def metric(system: ActorSystem, name: str) -> float:
    value = system._metrics.registry.get_sample_value(name, {"kind": "probe"})
    return value or 0.0


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_ask_returns_the_reply_and_activates_once(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    system = await start(probe)
    async with trio.open_nursery() as nursery:  # concurrent first messages: one activation
        for i in range(10):
            nursery.start_soon(system.tell, A, Work(f"t{i}"))
    assert await system.ask(A, Work("x")) == "done:x#1"
    assert probe.incarnations == 1
    assert [i.address for i in system.actors()] == [A]
    assert metric(system, "bff_actor_activations_total") == 1


async def test_full_mailbox_makes_tell_wait_then_fail_overloaded(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    system = await start(probe)
    await system.tell(A, Work("busy", gate="g"))
    await settle()  # the actor holds "busy"; the mailbox (2) is empty
    await system.tell(A, Work("q1"))
    await system.tell(A, Work("q2"))
    began = trio.current_time()
    with pytest.raises(OverloadedError) as err:
        await system.tell(A, Work("q3"), timeout=0.5)
    assert trio.current_time() - began == pytest.approx(0.5, abs=0.01)
    assert err.value.depth == 2
    assert metric(system, "bff_actor_overloaded_total") == 1

    async def release_soon() -> None:
        await trio.sleep(0.2)
        probe.gate("g").set()

    async with trio.open_nursery() as nursery:  # a waiting sender gets in once space frees up
        nursery.start_soon(release_soon)
        await system.tell(A, Work("q4"), timeout=1.0)
    assert await system.ask(A, Work("last")) == "done:last#1"
    assert [j for j in probe.journal if j.startswith("handle")] == [
        "handle#1:busy",
        "handle#1:q1",
        "handle#1:q2",
        "handle#1:q4",
        "handle#1:last",
    ]


async def test_ask_deadline_covers_the_reply_and_late_work_is_skipped(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    system = await start(probe)
    await system.tell(A, Work("busy", gate="g"))
    began = trio.current_time()
    with pytest.raises(AskTimeout):
        await system.ask(A, Work("late"), timeout=0.3)
    assert trio.current_time() - began == pytest.approx(0.3, abs=0.01)  # the caller never hangs
    probe.gate("g").set()
    assert await system.ask(A, Work("after")) == "done:after#1"
    assert "handle#1:late" not in probe.journal  # its asker gave up: not processed
    assert metric(system, "bff_actor_expired_total") == 1
    assert metric(system, "bff_actor_ask_timeouts_total") == 1


async def test_ask_on_a_full_mailbox_is_overloaded_not_a_timeout(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    system = await start(probe)
    await system.tell(A, Work("busy", gate="g"))
    await settle()
    await system.tell(A, Work("q1"))
    await system.tell(A, Work("q2"))
    with pytest.raises(OverloadedError):
        await system.ask(A, Work("x"), timeout=0.2)


async def test_rejection_replies_without_crashing(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    system = await start(probe)
    with pytest.raises(CommandRejected):
        await system.ask(A, Work("r", reject=True))
    assert await system.ask(A, Work("ok")) == "done:ok#1"
    assert system.actors()[0].restarts == 0


async def test_wrong_message_type_is_refused_before_delivery(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    system = await start(Probe())
    with pytest.raises(WrongMessage):
        await system.tell(A, "not a Work")


async def test_crash_restarts_with_backoff_keeps_mailbox_and_spares_others(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    system = await start(probe)
    assert await system.ask(B, Work("b1")) == "done:b1#1"
    await system.tell(A, Work("boom", fail=True))
    await system.tell(A, Work("queued"))  # waits in the mailbox across the restart
    with pytest.raises(ActorCrashed):
        await system.ask(A, Work("crash-ask", fail=True))
    assert await system.ask(A, Work("after")) == "done:after#4"
    assert "handle#3:queued" in probe.journal
    assert await system.ask(B, Work("b2")) == "done:b2#1"  # B never noticed
    info = {i.address: i for i in system.actors()}
    assert info[A].restarts == 2 and info[A].status == "running"
    assert info[B].restarts == 0
    assert metric(system, "bff_actor_restarts_total") == 2
    gaps = [b - a for a, b in zip(probe.activations, probe.activations[1:], strict=False)]
    assert gaps[-2:] == [pytest.approx(0.1), pytest.approx(0.2)]  # restart A: 0.1 then 0.2


async def test_restart_budget_exhausted_escalates_to_failed(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe(fail_activation=True)
    system = await start(probe, max_restarts=3)
    ready = system.health
    await system.tell(A, Work("w1"))
    with pytest.raises(ActorFailed):  # queued asks fail when the supervisor gives up
        await system.ask(A, Work("w2"))
    assert system.failed() == [A]
    assert probe.incarnations == 4  # first activation + 3 restarts, then it gave up
    gaps = [b - a for a, b in zip(probe.activations, probe.activations[1:], strict=False)]
    assert gaps == [pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.4)]
    assert metric(system, "bff_actor_escalations_total") == 1
    assert metric(system, "bff_actors_failed") == 1
    with pytest.raises(ActorFailed):
        await system.ask(A, Work("x"))
    check = await ready()
    assert not check.ok and "gave up on 1 actor" in check.detail
    assert "tnt-a" not in check.detail  # readiness is public: no tenant or actor ids
    probe.fail_activation = False
    assert await system.ask(B, Work("b")) == "done:b#5"  # others keep working
    # an admin kill clears a failed actor; the next message activates it afresh
    assert system.kill(A)
    assert (await ready()).ok
    assert await system.ask(A, Work("again")) == f"done:again#{probe.incarnations}"


async def test_a_failed_actor_is_retired_after_the_hold_time(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe(fail_activation=True)
    system = await start(probe, max_restarts=1, failed_hold_s=20.0)
    with pytest.raises(ActorFailed):
        await system.ask(A, Work("w"))
    await trio.sleep(19.0)
    assert system.failed() == [A]
    await trio.sleep(1.5)
    assert system.failed() == [] and system.actors() == []
    assert (await system.health()).ok
    probe.fail_activation = False
    assert await system.ask(A, Work("back")) == "done:back#3"


async def test_too_many_actors_is_overload_not_a_crash(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    system = await start(Probe(), max_active=1)
    await system.ask(A, Work("a"))
    with pytest.raises(OverloadedError, match="1 actors active"):
        await system.ask(B, Work("b"))


async def test_restart_budget_window_slides() -> None:
    budget = RestartBudget(2, 10.0, 0.1, 5.0, 0.0)
    assert budget.record_crash(0.0) and budget.record_crash(1.0)
    assert not budget.record_crash(2.0)  # three within 10 s
    budget = RestartBudget(2, 10.0, 0.1, 5.0, 0.0)
    assert budget.record_crash(0.0) and budget.record_crash(1.0)
    assert budget.record_crash(10.5)  # the first one left the window
    assert budget.backoff() == pytest.approx(0.2)
    jittery = RestartBudget(5, 10.0, 1.0, 1.0, 0.5)
    jittery.record_crash(0.0)
    assert all(1.0 <= jittery.backoff() <= 1.5 for _ in range(100))


async def test_kill_cancels_the_turn_as_a_crash_and_restarts(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    system = await start(probe)

    async def ask_and_record(results: list[object]) -> None:
        try:
            results.append(await system.ask(A, Work("held", gate="never")))
        except ActorCrashed as exc:
            results.append(exc)

    results: list[object] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask_and_record, results)
        await settle()
        await system.tell(A, Work("queued"))
        assert system.kill_many(kind="probe", count=5) == [A]
    assert isinstance(results[0], ActorCrashed) and "killed via admin" in str(results[0])
    assert await system.ask(A, Work("after")) == "done:after#2"
    assert "handle#2:queued" in probe.journal  # the mailbox survived the kill
    assert system.actors()[0].restarts == 1
    assert system.actors()[0].last_error == "killed via admin"


async def test_idle_actor_passivates_and_reactivates_on_demand(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    system = await start(probe, idle_timeout_s=2.0)
    assert await system.ask(A, Work("one")) == "done:one#1"
    await trio.sleep(1.5)
    assert await system.ask(A, Work("two")) == "done:two#1"  # activity resets the idle timer
    await trio.sleep(2.5)
    assert system.actors() == []
    assert probe.journal[-2:] == ["deactivate#1", "stopped#1"]
    assert metric(system, "bff_actor_passivations_total") == 1
    assert metric(system, "bff_actors_active") == 0
    assert await system.ask(A, Work("three")) == "done:three#2"
    assert metric(system, "bff_actor_activations_total") == 2


async def test_messages_during_stop_go_to_the_next_incarnation_after_it(
    start: Start, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe(deactivate_gate="stop")
    system = await start(probe, idle_timeout_s=1.0)
    await system.ask(A, Work("one"))
    await trio.sleep(1.5)  # passivation began; deactivate is held open
    assert probe.journal[-1] == "deactivate#1"
    results: list[str] = []

    async def ask_two() -> None:
        results.append(await system.ask(A, Work("two")))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask_two)
        await trio.sleep(0.5)
        assert probe.incarnations == 1  # the next incarnation waits for the old one to stop
        assert [i.status for i in system.actors()] == ["activating"]
        probe.gate("stop").set()
    assert results == ["done:two#2"]
    assert probe.journal[-4:] == ["deactivate#1", "stopped#1", "activate#2", "handle#2:two"]
