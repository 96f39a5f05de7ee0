"""Door-lock keys over real HTTP (a BFF process, the simulator, Postgres, Redis, DPoP
desktops): issue and revoke with their audit rows in ``lock:<reservationId>``, the refusals that
are audited (MFA missing, attestation already used), lock-integration down (F-10: 502 and the
failure recorded) or hanging (504, outcome unknown), replays that never reach lock-integration
twice, and ``./ops/ledger verify`` flagging an attempt left without its outcome (F-27)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio

from actors.address import device
from actors.mutations import AuditContext, attempt_row
from ledger.appendlog import Ledger
from ledger.database import Database
from schemas.actor_events import LOCK_ATTEMPTED, LOCK_PROXIED, OPERATOR_ACTIVITY
from tests.support.desktop import Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.mutations import (
    BASE,
    FAST,
    P,
    T,
    audit,
    calls,
    error,
    in_house,
    new_key,
    operator_of,
    send,
    upstream,
)
from tests.support.procs import ServiceProcess, wait_until
from tests.support.sim import SimHandle

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url, **FAST)


@pytest.fixture
def fd(bff: ServiceProcess, sim: SimHandle) -> Iterator[Desktop]:
    desk = Desktop(bff.url, sim.url, "fd.demo")
    yield desk
    desk.close()


@pytest.fixture
def guest(sim: SimHandle) -> str:
    """A checked-in reservation (keys are issued to those only)."""
    reservation: str = in_house(sim)[0]["id"]
    return reservation


def issue(desk: Desktop, rid: str, key: str | None, **body: Any) -> Any:
    return send(desk, f"/locks/{rid}/issue-key", {"propertyId": P, **body}, key)


def revoke(desk: Desktop, rid: str, key: str | None, attestation: str | None = None) -> Any:
    headers = {} if attestation is None else {"X-MFA-Attestation": attestation}
    return send(desk, f"/locks/{rid}/revoke-key", {"propertyId": P}, key, **headers)


def outcomes(database_url: str, rid: str) -> list[tuple[str, dict[str, Any]]]:
    """The lock audit of ``rid``: ``(outcome, attempt)`` per attempt, in order, checking that
    every attempt is followed by its own outcome."""
    found = []
    attempts: dict[str, dict[str, Any]] = {}
    for subject, payload in audit(database_url, f"lock:{rid}"):
        if subject == LOCK_ATTEMPTED:
            attempts[payload["attemptId"]] = payload
        else:
            assert subject == LOCK_PROXIED
            found.append((payload["outcome"], {**attempts.pop(payload["attemptId"]), **payload}))
    assert attempts == {}, f"attempts without an outcome: {attempts}"
    return found


def test_issue_and_revoke_are_proxied_once_and_audited(
    fd: Desktop, sim: SimHandle, guest: str, database_url: str
) -> None:
    key = new_key()
    issued = issue(fd, guest, key, keyCount=2)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert body["reservationId"] == guest and len(body["keys"]) == 2
    assert body["keyId"] == body["keys"][0]["id"]
    again = issue(fd, guest, key, keyCount=2)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == body
    assert len(calls(sim, "lock", f"/reservations/{guest}/keys", key)) == 1

    attestation = fd.device.step_up("lock.revoke").attestation_token
    revoke_key = new_key()
    revoked = revoke(fd, guest, revoke_key, attestation)
    assert revoked.status_code == 200, revoked.text
    assert sorted(k["id"] for k in revoked.json()["revoked"]) == sorted(
        k["id"] for k in body["keys"]
    )
    active = upstream(sim, "lock", f"/reservations/{guest}/keys")
    assert {k["status"] for k in active} == {"revoked"}

    (first, issued_row), (second, revoked_row) = outcomes(database_url, guest)
    assert (first, second) == ("success", "success")
    operator = operator_of(fd)
    for row in (issued_row, revoked_row):
        assert (row["operatorId"], row["deviceId"], row["propertyId"]) == (
            operator,
            fd.device_id,
            P,
        )
        assert row["sessionId"] == fd.session_id and row["status"] == 200
    assert issued_row["idempotencyKey"] == key and issued_row["mfaAttestationId"] is None
    assert issued_row["result"] == {"keyIds": [k["id"] for k in body["keys"]]}
    assert revoked_row["idempotencyKey"] == revoke_key and revoked_row["mfaAttestationId"]
    assert attestation not in str(revoked_row)  # the attestation's id, never the token

    shift = [p for s, p in audit(database_url, f"activity:{operator}") if s == OPERATOR_ACTIVITY]
    assert [(a["action"], a["outcome"]) for a in shift] == [
        ("lock.issue_key", "success"),
        ("lock.revoke_key", "success"),
    ]


def test_revoke_refusals_are_audited(
    fd: Desktop, sim: SimHandle, guest: str, database_url: str
) -> None:
    assert "lock.revoke" in error(revoke(fd, guest, new_key()), 401, "MFA_REQUIRED")
    attestation = fd.device.step_up("lock.revoke").attestation_token
    assert revoke(fd, guest, new_key(), attestation).status_code == 200
    used = revoke(fd, guest, new_key(), attestation)
    error(used, 401, "MFA_INVALID_OR_USED")
    error(revoke(fd, guest, None, attestation), 400, "IDEMPOTENCY_KEY_REQUIRED")
    audited = outcomes(database_url, guest)
    assert [o for o, _ in audited] == ["refused", "success", "refused", "refused"]
    reasons = [row["reason"] for o, row in audited if o == "refused"]
    assert reasons == ["MFA_REQUIRED", "MFA_INVALID_OR_USED", "IDEMPOTENCY_KEY_REQUIRED"]
    assert all(row["status"] in (400, 401) for o, row in audited if o == "refused")
    assert len(sim.calls("lock")) == 1  # only the attested revoke reached lock-integration


def test_lock_integration_down_is_502_and_a_recorded_failure(
    fd: Desktop, sim: SimHandle, guest: str, database_url: str
) -> None:
    sim.fault("lock", "error")
    key = new_key()
    error(issue(fd, guest, key), 502, "UPSTREAM_UNAVAILABLE")
    [(outcome, row)] = outcomes(database_url, guest)
    assert outcome == "failure" and row["reason"] == "unavailable" and row["status"] == 502
    sim.clear_faults()
    retried = issue(fd, guest, key)  # the key was given back: the retry runs
    assert retried.status_code == 200, retried.text
    assert [o for o, _ in outcomes(database_url, guest)] == ["failure", "success"]


def test_a_lock_timeout_is_504_and_its_outcome_unknown(
    fd: Desktop, sim: SimHandle, guest: str, database_url: str
) -> None:
    sim.fault("lock", "hang")
    error(issue(fd, guest, new_key()), 504, "UPSTREAM_TIMEOUT")
    [(outcome, row)] = outcomes(database_url, guest)
    assert (outcome, row["reason"], row["status"]) == ("unknown", "timeout", 504)
    assert len([c for c in sim.calls("lock", kind="all") if c["method"] == "POST"]) == 1


def test_bad_requests_are_refused_before_anything_is_attempted(
    fd: Desktop, sim: SimHandle, guest: str, database_url: str
) -> None:
    assert "keyCount" in error(issue(fd, guest, new_key(), keyCount=9), 400, "VALIDATION_FAILED")
    assert "color" in error(issue(fd, guest, new_key(), color="red"), 400, "VALIDATION_FAILED")
    assert "reservationId" in error(issue(fd, "bad*id", new_key()), 400, "VALIDATION_FAILED")
    other = send(fd, f"/locks/{guest}/issue-key", {"propertyId": "prop-demo-2"}, new_key())
    error(other, 403, "PROPERTY_OUT_OF_SCOPE")
    # The auth chain refused the scope (it reads the body's propertyId): no one to attribute
    # a lock attempt to yet, so none of these is an audit row.
    assert outcomes(database_url, guest) == []
    assert sim.calls("lock") == []


def test_verify_reports_an_attempt_left_without_its_outcome(
    fd: Desktop, guest: str, database_url: str
) -> None:
    assert issue(fd, guest, new_key()).status_code == 200
    code, out = verify(database_url)
    assert code == 0, out
    assert "lock audit: 1 attempts, 0 without an outcome" in out
    context = AuditContext(
        attempt_id="crashed-attempt-1",
        action="lock.revoke_key",
        target=f"lock:{guest}",
        property_id=P,
        operator_id="op-x",
        session_id="ses-x",
    )
    trio.run(append_by_hand, database_url, context)
    code, out = verify(database_url)
    assert code == 1, out
    assert "[lock-audit]" in out and "crashed-attempt-1" in out and f"lock:{guest}" in out
    assert "lock audit: 2 attempts, 1 without an outcome" in out


async def append_by_hand(database_url: str, context: AuditContext) -> None:
    """The attempt row a BFF that crashed mid-action leaves behind."""
    async with trio_asyncio.open_loop():
        db = Database(database_url, timeout=10)
        await db.open()
        try:
            ledger = Ledger(db)
            async with trio.open_nursery() as nursery:
                await nursery.start(ledger.run)
                address = device(T, "dev-crashed")
                await ledger.append([attempt_row(address, context, datetime.now(UTC))])
                nursery.cancel_scope.cancel()
        finally:
            await db.close()


def verify(database_url: str) -> tuple[int, str]:
    async def run() -> tuple[int, str]:
        env = {**os.environ, "BFF_DATABASE_URL": database_url}
        argv = [str(ROOT / "ops" / "ledger"), "verify", "--attempt-grace-s", "0"]
        with trio.fail_after(60):
            done = await trio.run_process(
                [*argv, "--max-lag-s", "3600"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=env,
            )
        return done.returncode, done.stdout.decode() + done.stderr.decode()

    return trio.run(run)


def test_a_desktop_hanging_up_mid_action_still_gets_its_outcome_recorded(
    fd: Desktop, sim: SimHandle, guest: str, database_url: str
) -> None:
    sim.fault("lock", "latency", latency_ms=800)
    key = new_key()
    path = f"{BASE}/locks/{guest}/issue-key"
    with pytest.raises(httpx.TimeoutException):
        fd.http.post(
            path,
            json={"propertyId": P},
            headers=fd.headers("POST", path, **{"Idempotency-Key": key}),
            timeout=0.3,
        )
    wait_until(lambda: len(audit(database_url, f"lock:{guest}")) == 2, 10, "the outcome row")
    [(outcome, row)] = outcomes(database_url, guest)
    assert outcome == "success" and row["idempotencyKey"] == key
    sim.clear_faults()
    wait_until(
        lambda: issue(fd, guest, key).headers.get("idempotent-replayed") == "true",
        10,
        "the stored answer to be replayed",
    )
    assert len(calls(sim, "lock", f"/reservations/{guest}/keys", key)) == 1
