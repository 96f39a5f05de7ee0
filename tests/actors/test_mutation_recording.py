"""Mutation audit through the DeviceActor (``actors/mutations.py``), the PropertyActor's
``MutationApplied``, and operator activity (``actors/activity.py``) for mutations,
acknowledgements and decisions. In-memory ports (``actors/testing.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from actors.activity import activity_event
from actors.address import device, property_
from actors.device import CloseSession, OpenSession
from actors.errors import DependencyUnavailable
from actors.messages import Handled
from actors.mutations import (
    AuditContext,
    MutationRecorded,
    RecordMutationAttempt,
    RecordMutationOutcome,
    SessionEnded,
)
from actors.property import AcknowledgeAlert, DecideSuggestion, MutationApplied, SubscribeDevice
from actors.system import ActorSystem
from ledger.model import RecordedEvent
from schemas.actor_events import (
    LOCK_ATTEMPTED,
    LOCK_PROXIED,
    MUTATION_ATTEMPTED,
    MUTATION_PROXIED,
    OPERATOR_ACTIVITY,
    MutationAttempted,
    MutationProxied,
    OperatorActivity,
)
from tests.support.actor_world import World, running_world

T, P, D, OP, SID = "tnt-a", "p1", "d1", "op-1", "s1"


@pytest.fixture
async def env() -> AsyncIterator[tuple[ActorSystem, World]]:
    async with running_world({"melmastoon.reservation.": ["view:arrivals"]}) as started:
        yield started


def context(attempt: str = "att-1", action: Any = "lock.revoke_key", **more: Any) -> AuditContext:
    target = "lock:res-1" if action.startswith("lock.") else "reservation:res-1"
    fields: dict[str, Any] = {
        "attempt_id": attempt,
        "action": action,
        "target": target,
        "property_id": P,
        "operator_id": OP,
        "session_id": SID,
        "idempotency_key": "k-1",
        "mfa_attestation_id": "jti-1",
        "request": {"reason": "lost card"},
        **more,
    }
    return AuditContext(**fields)


def rows(world: World, stream: str) -> list[RecordedEvent]:
    return [e for e in world.ledger.events if (e.tenant, e.stream) == (T, stream)]


def activity(world: World, operator: str = OP) -> list[OperatorActivity]:
    decode = msgspec.json.Decoder(OperatorActivity).decode
    return [decode(e.payload) for e in rows(world, f"activity:{operator}")]


async def record(system: ActorSystem, message: Any) -> MutationRecorded:
    answer = await system.ask(device(T, D), message)
    assert isinstance(answer, MutationRecorded)
    return answer


async def test_an_attempt_and_its_outcome_are_recorded_with_the_operators_activity(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    ctx = context()
    await record(system, RecordMutationAttempt(context=ctx))
    [attempt] = rows(world, "lock:res-1")
    assert attempt.subject == LOCK_ATTEMPTED and attempt.device_id == D
    audit = msgspec.json.decode(attempt.payload, type=MutationAttempted)
    assert (audit.operator_id, audit.device_id, audit.session_id) == (OP, D, SID)
    assert (audit.mfa_attestation_id, audit.idempotency_key) == ("jti-1", "k-1")
    assert audit.property_id == P and audit.request == {"reason": "lost card"}
    assert activity(world) == []  # the activity comes with the outcome

    outcome = RecordMutationOutcome(
        context=ctx, outcome="success", status=200, result={"keyIds": ["key-1"]}
    )
    recorded = await record(system, outcome)
    _, outcome_row = rows(world, "lock:res-1")
    assert outcome_row.subject == LOCK_PROXIED and recorded.position == outcome_row.position
    proxied = msgspec.json.decode(outcome_row.payload, type=MutationProxied)
    assert (proxied.attempt_id, proxied.outcome, proxied.result) == (
        "att-1",
        "success",
        {"keyIds": ["key-1"]},
    )
    [shift] = activity(world)
    assert (shift.action, shift.outcome, shift.target) == (
        "lock.revoke_key",
        "success",
        "lock:res-1",
    )
    assert shift.ref == "lock:res-1#att-1" and shift.device_id == D
    [act_row] = rows(world, f"activity:{OP}")
    assert act_row.subject == OPERATOR_ACTIVITY
    assert act_row.position == outcome_row.position + 1  # one append: outcome, then activity


async def test_retried_records_write_nothing_twice(env: tuple[ActorSystem, World]) -> None:
    system, world = env
    ctx = context(action="reservation.check_in")
    first = await record(system, RecordMutationAttempt(context=ctx))
    again = await record(system, RecordMutationAttempt(context=ctx))
    assert first == again
    outcome = RecordMutationOutcome(context=ctx, outcome="unknown", reason="timeout", status=504)
    assert await record(system, outcome) == await record(system, outcome)
    assert [e.subject for e in rows(world, "reservation:res-1")] == [
        MUTATION_ATTEMPTED,
        MUTATION_PROXIED,
    ]
    assert len(activity(world)) == 1


async def test_a_refusal_is_an_attempt_and_its_refused_outcome_in_one_append(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    ctx = context(mfa_attestation_id=None)
    refused = RecordMutationOutcome(
        context=ctx, outcome="refused", reason="MFA_REQUIRED", status=401
    )
    await record(system, refused)
    attempt, outcome = rows(world, "lock:res-1")
    assert (attempt.subject, outcome.subject) == (LOCK_ATTEMPTED, LOCK_PROXIED)
    assert outcome.position == attempt.position + 1
    proxied = msgspec.json.decode(outcome.payload, type=MutationProxied)
    assert (proxied.outcome, proxied.reason, proxied.status) == ("refused", "MFA_REQUIRED", 401)
    assert [a.outcome for a in activity(world)] == ["refused"]


async def test_a_closed_session_records_no_new_attempt_but_still_its_outcome(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    address = device(T, D)
    open_ = OpenSession(
        session_id=SID, operator_id=OP, role="front_desk", property_ids=[P], jkt="j"
    )
    await system.ask(address, open_)
    ctx = context()
    await record(system, RecordMutationAttempt(context=ctx))
    await system.ask(address, CloseSession(session_id=SID, reason="revoked"))
    with pytest.raises(SessionEnded):
        await system.ask(address, RecordMutationAttempt(context=context("att-2")))
    await record(system, RecordMutationOutcome(context=ctx, outcome="failure", reason="x"))
    assert [e.subject for e in rows(world, "lock:res-1")] == [LOCK_ATTEMPTED, LOCK_PROXIED]


async def test_a_ledger_outage_is_an_answer_and_the_actor_stays_up(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    world.postgres.down = True
    with pytest.raises(DependencyUnavailable):
        await system.ask(device(T, D), RecordMutationAttempt(context=context()))
    world.postgres.down = False
    await record(system, RecordMutationAttempt(context=context()))
    assert len(rows(world, "lock:res-1")) == 1


async def test_an_applied_mutation_voids_its_views_and_hints_the_followers_once(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    address = property_(T, P)
    await system.ask(address, SubscribeDevice(device_id="d2"))
    world.views.index[(T, P)] = {"view:arrivals", "view:housekeepingBoard"}
    applied = MutationApplied(subject="melmastoon.reservation.checked_in.v1", key="att-9")
    assert await system.ask(address, applied) == Handled(acted=True)
    assert world.views.index[(T, P)] == {"view:housekeepingBoard"}
    assert await system.ask(address, applied) == Handled(acted=True)  # voided again, harmless
    hints = [(i.event, i.key) for i in world.feed.items(T, "d2")]
    assert hints == [("dashboard.hint", "hint:att-9")]


async def test_acknowledgements_and_decisions_are_in_the_operators_activity(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    address = property_(T, P)
    await system.ask(address, AcknowledgeAlert(alert_id="a1", operator_id=OP, device_id=D))
    await system.ask(address, AcknowledgeAlert(alert_id="a1", operator_id=OP, device_id=D))
    await system.ask(address, AcknowledgeAlert(alert_id="a1", operator_id="op-2", device_id="d2"))
    decide = DecideSuggestion(suggestion_id="s1", decision="accept", operator_id=OP, device_id=D)
    await system.ask(address, decide)
    mine = [(a.action, a.outcome, a.target) for a in activity(world)]
    assert mine == [
        ("alert.acknowledge", "success", "alert:a1"),
        ("suggestion.decide", "accept", "suggestion:s1"),
    ]
    assert [(a.action, a.outcome) for a in activity(world, "op-2")] == [
        ("alert.acknowledge", "unchanged")  # the first ack stands
    ]
    assert len(rows(world, "alert:a1")) == 1


def test_an_activity_row_with_a_key_has_a_stable_id() -> None:
    one = activity_event(tenant=T, operator_id=OP, device_id=D, action="x", key="k")
    two = activity_event(tenant=T, operator_id=OP, device_id=D, action="x", key="k")
    other = activity_event(tenant=T, operator_id="op-2", device_id=D, action="x", key="k")
    assert one.event_id == two.event_id != other.event_id
    assert one.stream == f"activity:{OP}" and one.subject == OPERATOR_ACTIVITY
    assert activity_event(tenant=T, operator_id=OP, device_id=D, action="x").event_id != (
        activity_event(tenant=T, operator_id=OP, device_id=D, action="x").event_id
    )
