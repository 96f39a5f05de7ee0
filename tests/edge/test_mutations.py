"""The domain mutations over real HTTP (a BFF process, the simulator, Postgres, Redis, DPoP
desktops): each route's happy path answering the resulting resource, a missing key (400), a
replay answered from the first response (``Idempotent-Replayed``, one upstream call), the
audit rows and the operator's activity, a check-in visible in the next arrivals / in-house
read, the dashboard.hint reaching a device's stream, and the refund's step-up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from schemas.actor_events import MUTATION_ATTEMPTED, MUTATION_PROXIED, OPERATOR_ACTIVITY
from tests.support.desktop import Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.mutations import (
    BASE,
    FAST,
    P,
    audit,
    booked_arrivals,
    calls,
    error,
    in_house,
    new_key,
    operator_of,
    send,
    upstream,
)
from tests.support.procs import ServiceProcess
from tests.support.sim import SimHandle
from tests.support.sse import SseReader


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url, **FAST)


@pytest.fixture
def fd(bff: ServiceProcess, sim: SimHandle) -> Iterator[Desktop]:
    desk = Desktop(bff.url, sim.url, "fd.demo")
    yield desk
    desk.close()


def once(
    desk: Desktop,
    sim: SimHandle,
    service: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    replay_headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send the mutation, then the same again (a replay): the same answer, marked, and one
    call upstream. Without a key: 400 and nothing sent."""
    error(send(desk, path, body), 400, "IDEMPOTENCY_KEY_REQUIRED")
    key = new_key()
    first = send(desk, path, body, key, **(headers or {}))
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("application/json")
    again = send(desk, path, body, key, **(replay_headers or {}))
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert len(calls(sim, service, path.split("/")[-2], key)) == 1
    assert "idempotent-replayed" not in first.headers
    return first


def audited(database_url: str, stream: str) -> list[dict[str, Any]]:
    """The outcome rows of ``stream``, each after its own attempt."""
    open_: dict[str, dict[str, Any]] = {}
    ended = []
    for subject, payload in audit(database_url, stream):
        if subject == MUTATION_ATTEMPTED:
            open_[payload["attemptId"]] = payload
        elif subject == MUTATION_PROXIED:
            ended.append({**open_.pop(payload["attemptId"]), **payload})
    assert open_ == {}
    return ended


def rows(desk: Desktop, path: str) -> dict[str, dict[str, Any]]:
    answer = desk.get(BASE + path, params={"propertyId": P})
    assert answer.status_code == 200, answer.text
    return {r["reservationId"]: r for r in answer.json()["items"]}


def test_a_check_in_is_in_the_next_reads_and_hinted_to_the_propertys_devices(
    bff: ServiceProcess, fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    arrival = booked_arrivals(sim)[0]["id"]
    assert rows(fd, "/arrivals")[arrival]["status"] == "booked"  # now cached
    assert arrival not in rows(fd, "/in-house")
    watcher = Desktop(bff.url, sim.url, "gm.demo")
    try:
        with SseReader(watcher, f"?propertyId={P}", channels="dashboard") as stream:
            answer = once(
                fd, sim, "reservation", f"/reservations/{arrival}/check-in", {"propertyId": P}
            )
            hint = stream.next_of("dashboard.hint")
    finally:
        watcher.close()
    assert answer.json()["status"] == "checked_in" and answer.json()["roomNumber"]
    assert hint.data["subject"] == "melmastoon.reservation.checked_in.v1"
    assert "arrivals" in hint.data["views"] and "inHouse" in hint.data["views"]
    assert rows(fd, "/arrivals")[arrival]["status"] == "checked_in"
    assert rows(fd, "/in-house")[arrival]["status"] == "checked_in"
    [row] = audited(database_url, f"reservation:{arrival}")
    assert (row["action"], row["outcome"], row["result"]) == (
        "reservation.check_in",
        "success",
        {"status": "checked_in"},
    )


def test_check_out_replays_and_is_audited(fd: Desktop, sim: SimHandle, database_url: str) -> None:
    guest = in_house(sim)[0]["id"]
    answer = once(fd, sim, "reservation", f"/reservations/{guest}/check-out", {"propertyId": P})
    assert answer.json()["status"] == "checked_out"
    again = send(fd, f"/reservations/{guest}/check-out", {"propertyId": P}, new_key())
    error(again, 409, "CONFLICT")  # a new key: a new attempt, refused by reservation-service
    outcomes = [
        (r["outcome"], r.get("reason")) for r in audited(database_url, f"reservation:{guest}")
    ]
    assert outcomes[0] == ("success", None) and outcomes[1][0] == "failure"


def test_folio_charge_in_the_folios_currency(
    fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    folio = in_house(sim)[0]["folioId"]
    [before] = upstream(sim, "billing", f"/folios/{folio}")
    body = {
        "propertyId": P,
        "amountMinor": 2500,
        "currency": before["currency"],
        "description": "Minibar",
        "code": "MINIBAR",
    }
    answer = once(fd, sim, "billing", f"/folios/{folio}/charges", body)
    assert answer.json()["chargesMinor"] == before["chargesMinor"] + 2500
    wrong = "JPY" if before["currency"] != "JPY" else "EUR"
    message = error(
        send(fd, f"/folios/{folio}/charges", {**body, "currency": wrong}, new_key()),
        400,
        "VALIDATION_FAILED",
    )
    assert message.startswith("currency")
    [after] = upstream(sim, "billing", f"/folios/{folio}")
    assert after["chargesMinor"] == before["chargesMinor"] + 2500  # the wrong one never posted
    bad_code = send(fd, f"/folios/{folio}/charges", {**body, "code": "CASINO"}, new_key())
    assert "code" in error(bad_code, 400, "VALIDATION_FAILED")
    results = [(r["outcome"], r.get("reason")) for r in audited(database_url, f"folio:{folio}")]
    assert results == [("success", None), ("failure", "VALIDATION_FAILED")]


def test_folio_refund_needs_a_step_up(fd: Desktop, sim: SimHandle, database_url: str) -> None:
    guest = next(
        r
        for r in in_house(sim)
        if upstream(sim, "billing", f"/folios/{r['folioId']}")[0]["paymentsMinor"] > 0
    )
    folio = guest["folioId"]
    [before] = upstream(sim, "billing", f"/folios/{folio}")
    body = {"propertyId": P, "amountMinor": 100, "currency": before["currency"], "reason": "Late"}
    error(send(fd, f"/folios/{folio}/refunds", body, new_key()), 401, "MFA_REQUIRED")
    # Checked before the idempotency layer: every send, a replay too, spends an attestation.
    attested = [
        {"X-MFA-Attestation": fd.device.step_up("folio.refund").attestation_token} for _ in range(2)
    ]
    answer = once(fd, sim, "billing", f"/folios/{folio}/refunds", body, *attested)
    assert answer.json()["paymentsMinor"] == before["paymentsMinor"] - 100
    used = send(fd, f"/folios/{folio}/refunds", body, new_key(), **attested[0])
    error(used, 401, "MFA_INVALID_OR_USED")
    results = audited(database_url, f"folio:{folio}")
    assert [(r["outcome"], r.get("reason")) for r in results] == [
        ("refused", "MFA_REQUIRED"),
        ("refused", "IDEMPOTENCY_KEY_REQUIRED"),
        ("success", None),
        ("refused", "MFA_INVALID_OR_USED"),
    ]
    assert results[2]["mfaAttestationId"] and results[2]["idempotencyKey"]


def test_board_transitions(fd: Desktop, sim: SimHandle, database_url: str) -> None:
    task = next(t for t in upstream(sim, "housekeeping", "/tasks") if t["status"] == "pending")
    body = {"propertyId": P, "to": "in_progress"}
    done = once(fd, sim, "housekeeping", f"/housekeeping/tasks/{task['id']}/transition", body)
    assert done.json()["status"] == "in_progress"
    unknown = send(
        fd, f"/housekeeping/tasks/{task['id']}/transition", {**body, "to": "x"}, new_key()
    )
    assert "to" in error(unknown, 400, "VALIDATION_FAILED")
    order = next(w for w in upstream(sim, "maintenance", "/work-orders") if w["status"] == "open")
    body = {"propertyId": P, "to": "in_progress", "note": "on it"}
    path = f"/maintenance/work-orders/{order['id']}/transition"
    assert once(fd, sim, "maintenance", path, body).json()["status"] == "in_progress"
    assert [r["outcome"] for r in audited(database_url, f"housekeeping-task:{task['id']}")] == [
        "success"
    ]
    [row] = audited(database_url, f"work-order:{order['id']}")
    assert row["request"] == {"to": "in_progress", "assigneeId": None, "note": "on it"}


def test_the_operators_shift_is_in_their_activity_stream(
    fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    arrival = booked_arrivals(sim)[0]["id"]
    assert (
        send(fd, f"/reservations/{arrival}/check-in", {"propertyId": P}, new_key()).status_code
        == 200
    )
    error(
        send(fd, f"/reservations/{arrival}/check-in", {"propertyId": P}, new_key()), 409, "CONFLICT"
    )
    operator = operator_of(fd)
    shift = [p for s, p in audit(database_url, f"activity:{operator}") if s == OPERATOR_ACTIVITY]
    mine = [(a["action"], a["outcome"], a["target"]) for a in shift]
    target = f"reservation:{arrival}"
    assert mine == [
        ("reservation.check_in", "success", target),
        ("reservation.check_in", "failure", target),
    ]
    assert all(a["deviceId"] == fd.device_id and a["ref"].startswith(target) for a in shift)


def test_another_propertys_mutation_is_out_of_scope(fd: Desktop, sim: SimHandle) -> None:
    arrival = booked_arrivals(sim)[0]["id"]
    answer = send(fd, f"/reservations/{arrival}/check-in", {"propertyId": "prop-demo-2"}, new_key())
    error(answer, 403, "PROPERTY_OUT_OF_SCOPE")
    assert sim.calls("reservation") == []


def test_a_check_in_timeout_is_retried_once_with_the_same_key_then_504(
    fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    arrival = booked_arrivals(sim)[0]["id"]
    path, key = f"/reservations/{arrival}/check-in", new_key()
    sim.fault("reservation", "hang")
    error(send(fd, path, {"propertyId": P}, key), 504, "UPSTREAM_TIMEOUT")
    sent = [c for c in sim.calls("reservation") if arrival in c["path"]]
    assert [c["idempotencyKey"] for c in sent] == [key, key]  # the one retry, same key
    [row] = audited(database_url, f"reservation:{arrival}")
    assert (row["outcome"], row["reason"], row["status"]) == ("unknown", "timeout", 504)
    sim.clear_faults()
    retried = send(fd, path, {"propertyId": P}, key)  # the key was given back: it runs again
    assert retried.status_code == 200, retried.text
    assert [r["outcome"] for r in audited(database_url, f"reservation:{arrival}")] == [
        "unknown",
        "success",
    ]
