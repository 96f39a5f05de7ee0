"""A desktop's offline outbox drained twice through the BFF: the proof that a queued mutation is
applied upstream exactly once however often it is sent (issue #13, API contract §4 and §9).

    python -m ops.sim.outbox [--count 200] [--bff-url $BFF_URL] [--sim-url $SIM_URL]
                             [--username fd.demo] [--property prop-demo-1] [--seed N]
                             [--give-up-s 120] [--quiet]

against a running stack (``./ops/stack up``). What it does is what the Electron app does:

1. enrols a device and signs in at the simulated iam (the desktop was online once);
2. offline: reads the demo hotel straight from the simulated domain services (standing in for
   the desktop's local replica) and queues ``count`` mixed mutations — check-in, check-out,
   folio charge, folio refund (MFA), housekeeping and maintenance transitions, lock key issue
   and revoke (MFA) — each with its own ``Idempotency-Key`` and its body bytes fixed when it is
   queued, and each valid when the queue runs in order;
3. back online: sends the whole queue in order (a sensitive mutation gets its step-up
   attestation when it is first sent, as the operator is prompted then), then sends the very
   same requests again (a desktop that lost track of what it had sent);
4. asks the simulator (``GET /_sim/calls``) how often each key was *applied* upstream: a call
   that executed (2xx, not answered from the upstream's own idempotency store, not an injected
   error or hang), once no call of the queue is still running there;
5. reads what the upstreams hold: every charge and refund on its folio exactly once, every
   reservation and board item where the last mutation of its chain put it.

It prints one line per mutation (first answer; every answer of the second send, e.g. ``200
replayed``; times applied) and a summary line. The exit status is 0 only when every mutation
was applied exactly once, every first answer was a success, every second answer was that
success replayed (same status, same body bytes, ``Idempotent-Replayed: true``) and the
upstreams hold what the queue did. A desktop re-prompts for MFA when an attestation is refused
as used; a second-pass re-prompt is counted and warned about (a done key needs none).

The building blocks (:func:`read_demo`, :func:`plan_queue`, :class:`OutboxClient`,
:func:`upstream_applications`) are what ``tests/system/test_outbox_replay.py`` and the
randomized ``tests/system/test_exactly_once.py`` drive with faults, concurrency and restarts.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx
import msgspec
import trio

from ops.sim.catalog import STEP_UP_CODE
from ops.sim.desktop import DemoDevice
from schemas.upstream.billing import Folio
from schemas.upstream.housekeeping import TaskList
from schemas.upstream.iam import StepUpAction, StepUpResponse
from schemas.upstream.maintenance import WorkOrderList
from schemas.upstream.property import RoomList
from schemas.upstream.reservation import ReservationList

T = TypeVar("T")
API = "/bff/backoffice/v1"

Kind = Literal[
    "check_in",
    "check_out",
    "charge",
    "refund",
    "housekeeping",
    "maintenance",
    "issue_key",
    "revoke_key",
]


@dataclass(frozen=True)
class KindSpec:
    upstream: str  # the simulated service that applies it
    mfa: StepUpAction | None = None
    weight: float = 1.0  # how often the planner picks it, relative to the others


KINDS: dict[Kind, KindSpec] = {
    "check_in": KindSpec("reservation", weight=1.0),
    "issue_key": KindSpec("lock", weight=1.4),
    "charge": KindSpec("billing", weight=2.6),
    "refund": KindSpec("billing", mfa="folio.refund", weight=0.9),
    "revoke_key": KindSpec("lock", mfa="lock.revoke", weight=0.9),
    "housekeeping": KindSpec("housekeeping", weight=2.0),
    "maintenance": KindSpec("maintenance", weight=1.4),
    "check_out": KindSpec("reservation", weight=0.6),
}

# The next status each board item may go to without an assignee, and never to a terminal one
# (``inspected``, ``closed``), so a chain of transitions can go on as long as the queue needs.
TASK_NEXT: dict[str, tuple[str, ...]] = {
    "pending": ("in_progress", "in_progress", "dnd"),
    "assigned": ("in_progress",),
    "in_progress": ("done",),
    "done": ("pending",),
    "dnd": ("pending",),
}
ORDER_NEXT: dict[str, tuple[str, ...]] = {
    "open": ("in_progress",),
    "assigned": ("in_progress",),
    "in_progress": ("on_hold", "resolved"),
    "on_hold": ("in_progress",),
    "resolved": ("in_progress",),
}
REFUND_STEP_MINOR = 100


# --- the demo hotel, as the desktop's replica holds it ------------------------------------------


@dataclass
class Stay:
    """A reservation the outbox may act on: due today (``booked``) or in house."""

    reservation_id: str
    folio_id: str
    room_type: str
    currency: str
    status: str  # "booked" | "checked_in" | "checked_out"
    refundable_minor: int = 0  # what was paid and may be refunded


@dataclass
class DemoData:
    tenant_id: str
    property_id: str
    stays: list[Stay]
    vacant: dict[str, int]  # rooms free (not occupied, not out of order) per room type
    tasks: dict[str, str]  # housekeeping task id → status
    orders: dict[str, str]  # work order id → status (those that block no room)


async def read_demo(
    http: httpx.AsyncClient, sim_url: str, tenant_id: str, property_id: str
) -> DemoData:
    """Today's arrivals and in-house guests (with what their folios paid), free rooms, the
    housekeeping board and the work orders, read straight from the simulated services."""
    base = sim_url.rstrip("/")
    scope = f"tenants/{tenant_id}/properties/{property_id}"

    async def get(path: str, model: type[T]) -> T:
        answer = await http.get(f"{base}{path}", timeout=30)
        answer.raise_for_status()
        return msgspec.json.decode(answer.content, type=model)

    arrivals = await get(f"/reservation/v1/{scope}/arrivals", ReservationList)
    in_house = await get(f"/reservation/v1/{scope}/in-house", ReservationList)
    rooms = await get(f"/property/v1/{scope}/rooms", RoomList)
    tasks = await get(f"/housekeeping/v1/{scope}/tasks", TaskList)
    orders = await get(f"/maintenance/v1/{scope}/work-orders", WorkOrderList)
    stays = {
        r.id: Stay(r.id, r.folio_id, r.room_type, r.currency, r.status)
        for r in [*arrivals.items, *in_house.items]
        if r.status == "booked" or (r.status == "checked_in" and r.room_id)
    }
    for stay in stays.values():
        if stay.status == "checked_in":
            folio = await get(f"/billing/v1/{scope}/folios/{stay.folio_id}", Folio)
            stay.refundable_minor = max(0, folio.payments_minor)
    vacant = Counter(r.room_type for r in rooms.items if not r.occupied and not r.out_of_order)
    return DemoData(
        tenant_id=tenant_id,
        property_id=property_id,
        stays=sorted(stays.values(), key=lambda s: s.reservation_id),
        vacant=dict(vacant),
        tasks={t.id: t.status for t in tasks.items if t.status in TASK_NEXT},
        orders={
            w.id: w.status for w in orders.items if w.status in ORDER_NEXT and not w.blocks_room
        },
    )


# --- the queue ---------------------------------------------------------------------------------


@dataclass
class QueuedMutation:
    """One request of the outbox, fixed when queued: a retry or a replay sends these bytes."""

    index: int
    kind: Kind
    chain: str  # what it acts on; a chain's mutations are valid only in queue order
    path: str  # under the BFF's URL
    body: bytes
    key: str
    attestation: str | None = None  # obtained when first sent, then sent as it is

    @property
    def spec(self) -> KindSpec:
        return KINDS[self.kind]

    @property
    def target(self) -> str:
        return self.chain.split(":", 1)[1]

    def changed(self, **fields: Any) -> QueuedMutation:
        """The same key with another body (for the 422 case): ``fields`` override the body's."""
        body = {**msgspec.json.decode(self.body), **fields}
        return QueuedMutation(self.index, self.kind, self.chain, self.path, _encode(body), self.key)


def _encode(body: dict[str, Any]) -> bytes:
    return msgspec.json.encode(body)


class Planner:
    """Queues mutations that are all valid when applied in order: it follows each entity's
    state as the queued mutations will leave it. Check-ins never count on a room a queued
    check-out frees (so chains stay valid in any interleaving), refunds never exceed what the
    folio was paid, and board items never reach a terminal status."""

    def __init__(self, data: DemoData, rng: random.Random) -> None:
        self.property_id = data.property_id
        self.rng = rng
        self.stays = {s.reservation_id: Stay(**vars(s)) for s in data.stays}
        self.vacant = dict(data.vacant)
        self.tasks = dict(data.tasks)
        self.orders = dict(data.orders)

    def plan(self, count: int, kinds: Iterable[Kind] = tuple(KINDS)) -> list[QueuedMutation]:
        """``count`` mutations of ``kinds``; the first ones cover every kind the demo data
        allows."""
        wanted = list(kinds)
        queue: list[QueuedMutation] = []
        for kind in wanted:
            if len(queue) < count and self.candidates(kind):
                queue.append(self.next(kind))
        while len(queue) < count:
            possible = [k for k in wanted if self.candidates(k)]
            if not possible:
                raise ValueError(f"the demo data allows only {len(queue)} mutations")
            kind = self.rng.choices(possible, [KINDS[k].weight for k in possible])[0]
            queue.append(self.next(kind))
        return queue

    def candidates(self, kind: Kind) -> list[str]:
        stays = self.stays.values()
        if kind == "check_in":
            return [
                s.reservation_id
                for s in stays
                if s.status == "booked" and self.vacant.get(s.room_type, 0) > 0
            ]
        if kind == "refund":
            return [
                s.reservation_id
                for s in stays
                if s.status == "checked_in" and s.refundable_minor >= REFUND_STEP_MINOR
            ]
        if kind in ("check_out", "issue_key", "revoke_key"):
            return [s.reservation_id for s in stays if s.status == "checked_in"]
        if kind == "charge":
            return [s.reservation_id for s in stays if s.status in ("booked", "checked_in")]
        if kind == "housekeeping":
            return list(self.tasks)
        return list(self.orders)

    def next(self, kind: Kind) -> QueuedMutation:
        """One more mutation of ``kind`` on a random candidate, and its effect on the state."""
        target = self.rng.choice(self.candidates(kind))
        key = f"outbox-{uuid.uuid4().hex}"
        body: dict[str, Any] = {"propertyId": self.property_id}
        if kind in ("housekeeping", "maintenance"):
            return self._transition(kind, target, body, key)
        path = self._on_stay(kind, self.stays[target], body, tag=key[7:19])
        return QueuedMutation(0, kind, f"rsv:{target}", API + path, _encode(body), key)

    def _on_stay(self, kind: Kind, stay: Stay, body: dict[str, Any], tag: str) -> str:
        """The path of a mutation on ``stay``; fills ``body`` and moves the stay's state."""
        rid, folio = stay.reservation_id, stay.folio_id
        if kind == "check_in":
            self.vacant[stay.room_type] -= 1
            stay.status = "checked_in"
            return f"/reservations/{rid}/check-in"
        if kind == "check_out":
            stay.status = "checked_out"
            return f"/reservations/{rid}/check-out"
        if kind == "charge":
            amount = self.rng.randint(5, 250) * 100
            body |= {"amountMinor": amount, "currency": stay.currency}
            body["description"] = f"Outbox charge {tag}"
            return f"/folios/{folio}/charges"
        if kind == "refund":
            steps = min(stay.refundable_minor // REFUND_STEP_MINOR, self.rng.randint(1, 20))
            stay.refundable_minor -= steps * REFUND_STEP_MINOR
            body |= {"amountMinor": steps * REFUND_STEP_MINOR, "currency": stay.currency}
            body["reason"] = f"Outbox refund {tag}"
            return f"/folios/{folio}/refunds"
        return f"/locks/{rid}/{'issue-key' if kind == 'issue_key' else 'revoke-key'}"

    def _transition(
        self, kind: Kind, target: str, body: dict[str, Any], key: str
    ) -> QueuedMutation:
        board, moves, prefix, route = (
            (self.tasks, TASK_NEXT, "task", "/housekeeping/tasks/{}/transition")
            if kind == "housekeeping"
            else (self.orders, ORDER_NEXT, "wo", "/maintenance/work-orders/{}/transition")
        )
        to = self.rng.choice(moves[board[target]])
        board[target] = to
        body["to"] = to
        path = API + route.format(target)
        return QueuedMutation(0, kind, f"{prefix}:{target}", path, _encode(body), key)


def plan_queue(data: DemoData, count: int, rng: random.Random) -> list[QueuedMutation]:
    """``count`` mixed mutations over ``data``, numbered from 1, valid in queue order."""
    queue = Planner(data, rng).plan(count)
    for index, mutation in enumerate(queue, start=1):
        mutation.index = index
    return queue


def chains(queue: Iterable[QueuedMutation]) -> list[list[QueuedMutation]]:
    """The queue split by what each mutation acts on, each chain in queue order: chains are
    independent of each other, so they may run concurrently."""
    found: dict[str, list[QueuedMutation]] = {}
    for mutation in queue:
        found.setdefault(mutation.chain, []).append(mutation)
    return list(found.values())


# --- sending ----------------------------------------------------------------------------------


@dataclass
class Endpoint:
    """Where the BFF is now (a test moves it when it restarts the BFF on another port)."""

    url: str


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries a retryable answer or a lost connection: the same request, with
    jittered exponential backoff, ``Retry-After`` honoured up to ``cap_s``, until ``give_up_s``."""

    give_up_s: float = 120.0
    timeout_s: float = 15.0
    base_s: float = 0.05
    cap_s: float = 2.0
    max_mfa_prompts: int = 5

    def pause(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = min(self.cap_s, self.base_s * float(2 ** min(attempt, 16)))
        wait = backoff / 2 + rng.uniform(0, backoff / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap_s))
        return wait


@dataclass
class Answer:
    """The final answer to one send of a mutation, and everything seen on the way to it."""

    status: int  # 0: no final answer before the client gave up
    code: str | None = None  # the error code of a final error
    replayed: bool = False  # Idempotent-Replayed: true
    body: bytes = b""
    trail: list[str] = field(default_factory=list)  # each response, e.g. "504 UPSTREAM_TIMEOUT"
    mfa_prompts: int = 0  # step-ups this send needed

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def brief(self) -> str:
        return _label(self.status, self.replayed, self.code)


@dataclass(frozen=True)
class Reply:
    """One response as the client reads it: the envelope's code and ``retryable``, the
    ``Retry-After`` and ``Idempotent-Replayed`` headers, the body bytes."""

    status: int
    code: str | None
    retryable: bool
    retry_after: float | None
    replayed: bool
    body: bytes

    @classmethod
    def of(cls, answer: httpx.Response) -> Reply:
        code, retryable = _error_of(answer)
        raw = answer.headers.get("Retry-After")
        return cls(
            status=answer.status_code,
            code=code,
            retryable=retryable,
            retry_after=float(raw) if raw and raw.isdigit() else None,
            replayed=answer.headers.get("Idempotent-Replayed") == "true",
            body=answer.content,
        )

    def label(self) -> str:
        return _label(self.status, self.replayed, self.code)


def _label(status: int, replayed: bool, code: str | None) -> str:
    """``200``, ``200 replayed``, ``504 UPSTREAM_TIMEOUT``."""
    return f"{status}{' replayed' if replayed else ''}{f' {code}' if code else ''}"


def _error_of(answer: httpx.Response) -> tuple[str | None, bool]:
    """The envelope's code and ``retryable`` (a 5xx without an envelope is retryable)."""
    if answer.status_code < 400:
        return None, False
    try:
        error = msgspec.json.decode(answer.content)["error"]
        return str(error["code"]), bool(error["retryable"])
    except (msgspec.DecodeError, KeyError, TypeError):
        return None, answer.status_code >= 500


class OutboxClient:
    """A signed-in desktop sending outbox mutations to the BFF: a fresh DPoP proof per request,
    the key and the fixed body bytes on every retry, a step-up when a sensitive mutation has no
    attestation (or its attestation was refused as used or invalid)."""

    def __init__(
        self,
        device: DemoDevice,
        bff: Endpoint,
        http: httpx.AsyncClient,
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.device = device
        self.bff = bff
        self.http = http
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random()

    async def attest(self, action: StepUpAction) -> str:
        """A step-up attestation from the simulated iam (the operator typed the MFA code)."""
        url = self.device.url("/iam/v1/step-up")
        answer = await self.http.post(
            url,
            headers=self.device.auth_headers("POST", url),
            json={"action": action, "code": STEP_UP_CODE},
            timeout=self.policy.timeout_s,
        )
        answer.raise_for_status()
        return msgspec.json.decode(answer.content, type=StepUpResponse).attestation_token

    async def post(self, mutation: QueuedMutation, timeout: float | None = None) -> httpx.Response:
        """One request for ``mutation`` (no retry): what the tests use to look at one answer."""
        url = self.bff.url.rstrip("/") + mutation.path
        headers = self.device.auth_headers("POST", url)
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = mutation.key
        if mutation.attestation is not None:
            headers["X-MFA-Attestation"] = mutation.attestation
        return await self.http.post(
            url,
            content=mutation.body,
            headers=headers,
            timeout=timeout if timeout is not None else self.policy.timeout_s,
        )

    async def send(self, mutation: QueuedMutation, first_timeout: float | None = None) -> Answer:
        """Send until a final answer (or ``give_up_s``): lost connections and retryable errors
        are retried as they are; a refused attestation means a fresh step-up. ``first_timeout``
        lets a test's impatient client give up on its first request early."""
        answer = Answer(status=0)
        deadline = trio.current_time() + self.policy.give_up_s
        sends = 0
        while True:
            if mutation.spec.mfa is not None and mutation.attestation is None:
                mutation.attestation = await self.attest(mutation.spec.mfa)
                answer.mfa_prompts += 1
            sends += 1
            reply = await self._one(mutation, first_timeout if sends == 1 else None, answer)
            if reply is not None and self._needs_step_up(mutation, reply, answer):
                mutation.attestation = None
                continue
            if reply is not None and not reply.retryable:
                answer.status, answer.code, answer.replayed = (
                    reply.status,
                    reply.code,
                    reply.replayed,
                )
                answer.body = reply.body
                return answer
            if trio.current_time() >= deadline:
                return answer
            retry_after = reply.retry_after if reply is not None else None
            await trio.sleep(self.policy.pause(sends, retry_after, self.rng))

    async def _one(
        self, mutation: QueuedMutation, timeout: float | None, answer: Answer
    ) -> Reply | None:
        try:
            response = await self.post(mutation, timeout)
        except httpx.TransportError as exc:
            answer.trail.append(type(exc).__name__)
            return None
        reply = Reply.of(response)
        answer.trail.append(reply.label())
        return reply

    def _needs_step_up(self, mutation: QueuedMutation, reply: Reply, answer: Answer) -> bool:
        return (
            mutation.spec.mfa is not None
            and reply.code in ("MFA_INVALID_OR_USED", "MFA_REQUIRED")
            and answer.mfa_prompts < self.policy.max_mfa_prompts
        )


# --- what the upstreams applied ---------------------------------------------------------------


@dataclass
class Applications:
    """Per key, from the simulator's call log: how often it was applied upstream, and anything
    that would make the count meaningless."""

    applied: dict[str, int]
    calls: dict[str, list[dict[str, Any]]]  # every call per key
    pending: int  # calls still running upstream (not counting hangs, which never end)
    misrouted: list[str]  # keys that reached an upstream other than their kind's

    def of(self, mutation: QueuedMutation) -> int:
        return self.applied.get(mutation.key, 0)


def applied(call: dict[str, Any]) -> bool:
    """Did this call execute at the upstream? Not when it was answered from the upstream's own
    idempotency store (``replayed``), failed by an injected error, hung, or refused (4xx)."""
    return bool(
        call["mutation"]
        and not call["replayed"]
        and call.get("fault") not in ("error", "hang")
        and 200 <= call["status"] < 300
    )


async def upstream_applications(
    http: httpx.AsyncClient, sim_url: str, queue: Iterable[QueuedMutation]
) -> Applications:
    answer = await http.get(
        sim_url.rstrip("/") + "/_sim/calls", params={"kind": "mutations"}, timeout=30
    )
    answer.raise_for_status()
    wanted = {m.key: m for m in queue}
    calls: dict[str, list[dict[str, Any]]] = {}
    for call in msgspec.json.decode(answer.content)["items"]:
        key = call.get("idempotencyKey")
        if key in wanted:
            calls.setdefault(key, []).append(call)
    return Applications(
        applied={k: sum(applied(c) for c in found) for k, found in calls.items()},
        calls=calls,
        pending=sum(
            1
            for found in calls.values()
            for c in found
            if c["status"] == 0 and c.get("fault") != "hang"
        ),
        misrouted=sorted(
            k
            for k, found in calls.items()
            if any(c["service"] != wanted[k].spec.upstream for c in found)
        ),
    )


async def settled_applications(
    http: httpx.AsyncClient, sim_url: str, queue: list[QueuedMutation], timeout: float = 30.0
) -> Applications:
    """:func:`upstream_applications` once no call of the queue is still running upstream (a
    call whose client gave up may still be applied: the count is final only then)."""
    with trio.fail_after(timeout):
        while True:
            found = await upstream_applications(http, sim_url, queue)
            if found.pending == 0:
                return found
            await trio.sleep(0.05)


async def upstream_state_problems(
    http: httpx.AsyncClient, sim_url: str, data: DemoData, queue: list[QueuedMutation]
) -> list[str]:
    """What the upstreams hold once the queue ran, not only what they were sent: every charge
    and refund is on its folio exactly once, and every reservation and board item is where
    the last mutation of its chain put it."""
    base = f"{sim_url.rstrip('/')}"
    scope = f"tenants/{data.tenant_id}/properties/{data.property_id}"

    async def get(path: str) -> Any:
        answer = await http.get(base + path, timeout=30)
        answer.raise_for_status()
        return msgspec.json.decode(answer.content)

    problems: list[str] = []
    lines: Counter[str] = Counter()
    for folio_id in sorted({m.path.split("/")[-2] for m in queue if m.kind in _FOLIO}):
        folio = await get(f"/billing/v1/{scope}/folios/{folio_id}")
        lines.update(line["description"] for line in folio["lines"])
    for m in queue:
        if m.kind in _FOLIO:
            times = lines[_FOLIO[m.kind](m)]
            if times != 1:
                problems.append(f"#{m.index} {m.kind} {m.key}: on its folio {times} times")
    expected = _last_status(queue)
    tasks = await get(f"/housekeeping/v1/{scope}/tasks")
    orders = await get(f"/maintenance/v1/{scope}/work-orders")
    found = {f"task:{t['id']}": t["status"] for t in tasks["items"]}
    found |= {f"wo:{w['id']}": w["status"] for w in orders["items"]}
    for chain in [c for c in expected if c.startswith("rsv:")]:
        reservation = await get(f"/reservation/v1/{scope}/reservations/{chain[4:]}")
        found[chain] = reservation["status"]
    problems += [
        f"{chain} is {found.get(chain)}, its last mutation made it {status}"
        for chain, status in expected.items()
        if found.get(chain) != status
    ]
    return problems


_FOLIO: dict[Kind, Any] = {
    "charge": lambda m: msgspec.json.decode(m.body)["description"],
    "refund": lambda m: msgspec.json.decode(m.body)["reason"],
}


def _last_status(queue: list[QueuedMutation]) -> dict[str, str]:
    """Per chain, the status its last status-changing mutation leaves it in."""
    last: dict[str, str] = {}
    for m in queue:
        if m.kind in ("housekeeping", "maintenance"):
            last[m.chain] = msgspec.json.decode(m.body)["to"]
        elif m.kind in ("check_in", "check_out"):
            last[m.chain] = "checked_in" if m.kind == "check_in" else "checked_out"
    return last


# --- the outbox, drained twice ------------------------------------------------------------------


@dataclass
class OutboxReport:
    queue: list[QueuedMutation]
    first: list[Answer]
    second: list[Answer]
    applications: Applications
    state_problems: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = list(self.state_problems)
        for m, one, two in zip(self.queue, self.first, self.second, strict=True):
            what = f"#{m.index} {m.kind} {m.target} key {m.key}"
            times = self.applications.of(m)
            if times != 1:
                found.append(f"{what}: applied {times} times upstream")
            if not one.ok:
                found.append(f"{what}: first pass answered {' → '.join(one.trail)}")
            if not (two.replayed and two.status == one.status and two.body == one.body):
                found.append(f"{what}: second pass answered {' → '.join(two.trail)}, not a replay")
        found += [f"key {k} reached the wrong upstream" for k in self.applications.misrouted]
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()

    def reprompted(self) -> int:
        """Second-pass sends that needed a fresh step-up (their first attestation was spent)."""
        return sum(1 for a in self.second if a.mfa_prompts)

    def lines(self) -> list[str]:
        head = f"{'#':>4}  {'kind':<12} {'target':<26} {'first':<14} {'second':<30} applied"
        rows = [head]
        for m, one, two in zip(self.queue, self.first, self.second, strict=True):
            second = " → ".join(two.trail)
            rows.append(
                f"{m.index:>4}  {m.kind:<12} {m.target:<26} {one.brief():<14} {second:<30}"
                f" {self.applications.of(m)}"
            )
        return rows

    def summary(self) -> str:
        n = len(self.queue)
        once = sum(1 for m in self.queue if self.applications.of(m) == 1)
        first_ok = sum(1 for a in self.first if a.ok)
        replays = sum(
            1
            for one, two in zip(self.first, self.second, strict=True)
            if two.replayed and two.status == one.status and two.body == one.body
        )
        kinds = Counter(m.kind for m in self.queue)
        mix = ", ".join(f"{kinds[k]} {k}" for k in KINDS if kinds[k])
        verdict = "PASS" if self.ok else "FAIL"
        return (
            f"outbox: {n} mutations ({mix}) sent twice: first pass {first_ok}/{n} succeeded,"
            f" second pass {replays}/{n} replayed the first answer, applied upstream exactly"
            f" once {once}/{n}; second-pass MFA re-prompts {self.reprompted()} — {verdict}"
        )


async def drain(client: OutboxClient, queue: list[QueuedMutation]) -> list[Answer]:
    """Send the queue in order, one mutation at a time, each until its final answer."""
    return [await client.send(m) for m in queue]


async def replay_twice(
    client: OutboxClient, http: httpx.AsyncClient, data: DemoData, queue: list[QueuedMutation]
) -> OutboxReport:
    """Drain the queue, drain it again, then count what the upstreams applied and check what
    they hold."""
    sim_url = client.device.sim_url
    first = await drain(client, queue)
    second = await drain(client, queue)
    applications = await settled_applications(http, sim_url, queue)
    state = await upstream_state_problems(http, sim_url, data, queue)
    return OutboxReport(queue, first, second, applications, state)


async def run_outbox(
    device: DemoDevice,
    bff_url: str,
    *,
    count: int,
    property_id: str,
    rng: random.Random,
    policy: RetryPolicy | None = None,
) -> OutboxReport:
    """Read the demo data, queue ``count`` mutations, drain them twice and count what the
    upstreams applied. ``device`` is enrolled and signed in."""
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with httpx.AsyncClient(limits=limits) as http:
        data = await read_demo(http, device.sim_url, device.tenant_id, property_id)
        queue = plan_queue(data, count, rng)
        client = OutboxClient(device, Endpoint(bff_url), http, policy=policy, rng=rng)
        return await replay_twice(client, http, data, queue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="mutations to queue (1-2000)")
    parser.add_argument("--bff-url", default=os.environ.get("BFF_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--sim-url", default=os.environ.get("SIM_URL", "http://127.0.0.1:8090"))
    parser.add_argument("--tenant", default="tnt-demo")
    parser.add_argument("--property", default="prop-demo-1")
    parser.add_argument("--username", default="fd.demo")
    parser.add_argument("--seed", type=int, default=None, help="the plan's seed (printed)")
    parser.add_argument("--quiet", action="store_true", help="only problems and the summary")
    parser.add_argument(
        "--give-up-s",
        type=float,
        default=RetryPolicy.give_up_s,
        help="how long one send keeps retrying before the mutation counts as unanswered",
    )
    args = parser.parse_args()
    if not 1 <= args.count <= 2000:
        parser.error("--count must be between 1 and 2000")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    device = DemoDevice(args.sim_url, args.tenant, "Outbox desktop")
    device.enroll()
    device.sign_in(args.username)
    print(f"device {device.device_id} signed in as {args.username}; plan seed {seed}", flush=True)
    report = trio.run(
        lambda: run_outbox(
            device,
            args.bff_url,
            count=args.count,
            property_id=args.property,
            rng=random.Random(seed),
            policy=RetryPolicy(give_up_s=args.give_up_s),
        )
    )
    if not args.quiet:
        print("\n".join(report.lines()))
    for problem in report.problems():
        print(f"PROBLEM {problem}")
    if report.reprompted():
        print(
            f"WARNING {report.reprompted()} sensitive mutations were refused"
            " (MFA_INVALID_OR_USED) when sent again as they were, and replayed only after a"
            " fresh step-up: API contract §4 expects the replay for the same key and request"
        )
    print(report.summary())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
