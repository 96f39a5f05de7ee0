"""Issue #13 "Done when": a desktop-like client replays a queue of 200 mixed mutations twice
after a simulated offline period, and the simulator shows each applied once.

The outbox tool's own logic (``ops/sim/outbox.py``, the same code ``python -m ops.sim.outbox``
runs against the local stack) drives a BFF and a simulator started by fixtures. Beyond the call
log, the tool reads what the upstreams hold (each charge and refund is on its folio once, each
reservation and board item ended where its last mutation put it), and the test reads what the
BFF recorded: one audited attempt reached lock-integration per lock action, with its outcome.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter

import httpx
import trio

from ops.sim.outbox import (
    KINDS,
    Endpoint,
    OutboxClient,
    OutboxReport,
    Planner,
    Reply,
    read_demo,
    run_outbox,
)
from tests.support.fixtures import ServiceFactory
from tests.support.ledger import ledger_subjects
from tests.support.sim import SimHandle

COUNT = 200
PROPERTY = "prop-demo-1"


async def test_a_queue_of_200_mixed_mutations_replayed_twice_is_applied_once(
    start_bff: ServiceFactory, sim: SimHandle, database_url: str
) -> None:
    bff = start_bff(SIM_URL=sim.url)
    device = sim.device()
    device.sign_in("fd.demo")
    seed = random.SystemRandom().randrange(2**32)
    print(f"outbox plan seed {seed}")

    report = await run_outbox(
        device, bff.url, count=COUNT, property_id=PROPERTY, rng=random.Random(seed)
    )

    print(report.summary())
    assert report.ok, "\n".join([report.summary(), *report.problems()[:40]])
    kinds = Counter(m.kind for m in report.queue)
    assert len(report.queue) == COUNT and set(kinds) == set(KINDS), kinds
    assert not any(a.replayed for a in report.first)
    assert all(a.replayed and a.trail == ["200 replayed"] for a in report.second)
    assert report.reprompted() == 0
    await _assert_lock_audit(database_url, report)


async def _assert_lock_audit(database_url: str, report: OutboxReport) -> None:
    """Each lock action reached lock-integration in exactly one audited attempt, which has its
    successful outcome (``lock:<reservationId>``); the second pass, all replays, recorded no
    attempt (a refusal would be an attempt with a ``refused`` outcome)."""
    locks = [m for m in report.queue if m.kind in ("issue_key", "revoke_key")]
    for reservation in {m.target for m in locks}:
        stream = f"lock:{reservation}"
        rows = await trio.to_thread.run_sync(ledger_subjects, database_url, stream)
        keys = {p["attemptId"]: p["idempotencyKey"] for s, p in rows if s.endswith("attempted.v1")}
        ended = {p["attemptId"]: p for s, p in rows if s.endswith("proxied.v1")}
        assert set(ended) == set(keys), f"{stream}: an attempt without its outcome: {rows}"
        succeeded = Counter(keys[a] for a, p in ended.items() if p["outcome"] == "success")
        mine = [m.key for m in locks if m.target == reservation]
        assert succeeded == Counter(mine), f"{stream}: {rows}"
        assert len(ended) == len(mine), f"{stream}: {rows}"


def test_the_outbox_tool_exits_non_zero_when_a_mutation_is_not_applied_once(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    """The tool's verdict is not a formality: with the BFF pointed at the simulator but every
    lock-integration call failing (an injected error the client retries until it gives up), the
    run fails and says which mutations were never applied."""
    bff = start_bff(SIM_URL=sim.url)
    sim.fault("lock", "error", status=500)
    argv = ["--count", "12", "--quiet", "--seed", "7", "--give-up-s", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "ops.sim.outbox", *argv],
        env={**os.environ, "BFF_URL": bff.url, "SIM_URL": sim.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "issue_key" in done.stdout and "applied 0 times upstream" in done.stdout
    assert done.stdout.rstrip().endswith("FAIL"), done.stdout


async def test_an_identical_resend_of_a_sensitive_mutation_is_answered_with_the_replay(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    """A done refund sent again as it was — its attestation already spent — is the first
    answer replayed, not 401 MFA_INVALID_OR_USED: the step-up is checked only when the key
    runs (API contract §4; the outbox drained twice needs no second MFA prompt)."""
    bff = start_bff(SIM_URL=sim.url)
    device = sim.device()
    device.sign_in("fd.demo")
    async with httpx.AsyncClient() as http:
        data = await read_demo(http, sim.url, "tnt-demo", PROPERTY)
        [refund] = Planner(data, random.Random(1)).plan(1, kinds=("refund",))
        client = OutboxClient(device, Endpoint(bff.url), http)
        first = await client.send(refund)
        assert first.ok and not first.replayed, first.trail
        again = Reply.of(await client.post(refund))  # the same bytes, the same attestation
    assert (again.status, again.replayed, again.body) == (first.status, True, first.body)
