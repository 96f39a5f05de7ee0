"""The inbox routes over real HTTP (a BFF process, the simulator, Redis, Postgres, DPoP
desktops): suggestions read through once then served from the projection, decisions proxied
first and recorded once, degraded lists while ai-orchestrator (F-11) or notification-service
(F-12) is down, acknowledgements durable at once and delivered upstream exactly once by the
forwarder after an outage, and input validation naming the field."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.desktop import Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.ledger import ledger_subjects
from tests.support.procs import ServiceProcess, wait_until
from tests.support.sim import SimHandle

BASE = "/bff/backoffice/v1"
T, P = "tnt-demo", "prop-demo-1"
FAST = {
    "BFF_ACK_FORWARD_INTERVAL_S": "0.2",  # the forwarder looks often
    "BFF_BREAKER_OPEN_S": "0.5",  # a circuit opened by a test's outage closes soon after it
}


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url, **FAST)


@pytest.fixture
def fd(bff: ServiceProcess, sim: SimHandle) -> Iterator[Desktop]:
    desk = Desktop(bff.url, sim.url, "fd.demo")
    yield desk
    desk.close()


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    message: str = body["message"]
    return message


def suggestions(desk: Desktop, **params: str) -> httpx.Response:
    return desk.get(f"{BASE}/ai/suggestions", params={"propertyId": P, **params})


def alerts(desk: Desktop, **params: str) -> httpx.Response:
    return desk.get(f"{BASE}/alerts", params={"propertyId": P, **params})


def decide(desk: Desktop, sid: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return desk.post(f"{BASE}/ai/suggestions/{sid}/decide", json=body, headers=headers)


def acknowledge(desk: Desktop, alert_id: str, pid: str = P) -> httpx.Response:
    return desk.post(f"{BASE}/alerts/{alert_id}/acknowledge", json={"propertyId": pid})


def upstream_calls(
    sim: SimHandle, service: str, method: str, fragment: str
) -> list[dict[str, Any]]:
    return [
        c for c in sim.calls(service, kind="all") if c["method"] == method and fragment in c["path"]
    ]


def publish_alert(sim: SimHandle) -> str:
    alert_id = f"alr-pub-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    data = {
        "tenantId": T,
        "propertyId": P,
        "alertId": alert_id,
        "severity": "high",
        "category": "maintenance",
        "title": "Boiler pressure low",
        "occurredAt": now,
    }
    sim.post("/_sim/events", json={"subject": "melmastoon.alert.raised.v1", "data": data})
    return alert_id


def ack_row(database_url: str, alert_id: str) -> tuple[datetime | None, str | None]:
    """(forwarded_at, forward_outcome) of the ack the BFF recorded in Postgres."""
    import asyncpg
    import trio
    import trio_asyncio

    async def fetch() -> tuple[datetime | None, str | None]:
        async with trio_asyncio.open_loop():
            conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(database_url)
            try:
                row = await trio_asyncio.aio_as_trio(conn.fetchrow)(
                    "SELECT forwarded_at, forward_outcome FROM alert_acks"
                    " WHERE tenant = $1 AND alert_id = $2",
                    T,
                    alert_id,
                )
            finally:
                await trio_asyncio.aio_as_trio(conn.close)()
        assert row is not None, alert_id
        return row["forwarded_at"], row["forward_outcome"]

    return trio.run(fetch)


# --- suggestions -------------------------------------------------------------------------------


def test_suggestions_read_through_once_then_from_the_inbox(fd: Desktop, sim: SimHandle) -> None:
    first = ok(suggestions(fd))
    assert first["propertyId"] == P and first["degraded"] is False
    assert first["items"], first
    now = datetime.now(UTC)
    for item in first["items"]:
        assert {"suggestionId", "propertyId", "category", "title", "expiresAt"} <= set(item)
        assert datetime.fromisoformat(item["expiresAt"]) > now
    assert ok(suggestions(fd))["items"] == first["items"]  # served from the projection
    assert len(upstream_calls(sim, "ai", "GET", "/suggestions")) == 1
    category = first["items"][0]["category"]
    only = ok(suggestions(fd, category=category))["items"]
    assert only and {i["category"] for i in only} == {category}
    assert len(upstream_calls(sim, "ai", "GET", "/suggestions")) == 1


def test_ai_down_degrades_the_list_silently(fd: Desktop, sim: SimHandle) -> None:
    sim.fault("ai", "error")
    body = ok(suggestions(fd))
    assert body == {"propertyId": P, "items": [], "degraded": True}
    sim.clear_faults()
    healed = ok(suggestions(fd))
    assert healed["degraded"] is False and healed["items"]


def test_a_decision_goes_to_ai_first_and_is_recorded_once(
    fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    [first, second, *_] = ok(suggestions(fd))["items"]
    sid = first["suggestionId"]
    answer = ok(decide(fd, sid, {"propertyId": P, "decision": "accept"}))
    assert answer["suggestionId"] == sid and answer["status"] == "accepted"
    assert sid not in {i["suggestionId"] for i in ok(suggestions(fd))["items"]}
    [(subject, row)] = ledger_subjects(database_url, f"suggestion:{sid}")
    assert subject.endswith("ai_suggestion.decided.v1") and row["decision"] == "accept"
    again = decide(fd, sid, {"propertyId": P, "decision": "reject"})
    error(again, 409, "CONFLICT")  # ai-orchestrator's answer: already decided
    assert len(ledger_subjects(database_url, f"suggestion:{sid}")) == 1

    modified = {"propertyId": P, "decision": "modify", "modification": {"price": "180"}}
    sid2 = second["suggestionId"]
    assert ok(decide(fd, sid2, modified))["status"] == "modified"
    [decided] = upstream_calls(sim, "ai", "POST", f"/{sid2}/decide")
    assert decided["body"]["modifications"] == {"price": "180"}


def test_ai_down_fails_the_decision_and_records_nothing(
    fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    sid = ok(suggestions(fd))["items"][0]["suggestionId"]
    sim.fault("ai", "error")
    error(decide(fd, sid, {"propertyId": P, "decision": "accept"}), 502, "UPSTREAM_UNAVAILABLE")
    assert len(upstream_calls(sim, "ai", "POST", f"/{sid}/decide")) == 1  # no retry
    assert ledger_subjects(database_url, f"suggestion:{sid}") == []
    sim.clear_faults()
    assert sid in {i["suggestionId"] for i in ok(suggestions(fd))["items"]}


# --- alerts ------------------------------------------------------------------------------------


def test_acknowledge_is_forwarded_inline_and_idempotent(
    fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    listed = ok(alerts(fd))
    assert listed["degraded"] is False and listed["filter"] == "open"
    assert listed["items"] and {a["status"] for a in listed["items"]} == {"open"}
    alert_id = listed["items"][0]["alertId"]
    first = ok(acknowledge(fd, alert_id))
    assert first["changed"] is True and first["forwarded"] is True
    assert first["acknowledgedBy"] == "opr-fd-demo"
    second = ok(acknowledge(fd, alert_id))
    assert second["changed"] is False and second["forwarded"] is True
    assert second["acknowledgedAt"] == first["acknowledgedAt"]
    assert len(upstream_calls(sim, "notification", "POST", f"/{alert_id}/acknowledge")) == 1
    acked = ok(alerts(fd, filter="acknowledged"))["items"]
    assert alert_id in {a["alertId"] for a in acked}
    assert alert_id not in {a["alertId"] for a in ok(alerts(fd))["items"]}
    every = {a["alertId"] for a in ok(alerts(fd, filter="all"))["items"]}
    assert every >= {a["alertId"] for a in acked} | {alert_id}
    assert len(ledger_subjects(database_url, f"alert:{alert_id}")) == 1


def test_ack_while_notification_is_down_is_delivered_once_later(
    fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    alert_id = publish_alert(sim)  # notification-service's own alert, as if it raised it
    assert alert_id in {a["alertId"] for a in ok(alerts(fd))["items"]}  # (also fills the inbox)
    sim.fault("notification", "error")
    started = time.monotonic()
    first = ok(acknowledge(fd, alert_id))
    assert time.monotonic() - started < 3
    assert first["changed"] is True and first["forwarded"] is False
    degraded = ok(alerts(fd, filter="acknowledged"))  # F-12: from the inbox, with the ack
    assert degraded["degraded"] is True
    assert alert_id in {a["alertId"] for a in degraded["items"]}
    sim.clear_faults()

    def delivered() -> list[dict[str, Any]]:
        calls = upstream_calls(sim, "notification", "POST", f"/{alert_id}/acknowledge")
        return [c for c in calls if c["status"] == 200]

    wait_until(lambda: ack_row(database_url, alert_id)[0] is not None, 20, "the forwarder")
    assert ack_row(database_url, alert_id)[1] == "acknowledged"
    # Marked forwarded: no forwarder round offers it again. It reached the upstream once.
    [only] = delivered()
    assert only["replayed"] is False
    keys = {c["idempotencyKey"] for c in upstream_calls(sim, "notification", "POST", alert_id)}
    assert len(keys) == 1  # every offer of the ack was the same request
    again = ok(acknowledge(fd, alert_id))
    assert again["changed"] is False and again["forwarded"] is True
    assert again["acknowledgedAt"] == first["acknowledgedAt"]
    upstream = ok(alerts(fd, filter="acknowledged"))
    assert upstream["degraded"] is False
    [item] = [a for a in upstream["items"] if a["alertId"] == alert_id]
    assert item["acknowledgedBy"] == "opr-fd-demo"
    assert len(delivered()) == 1


def test_an_alert_is_acknowledged_only_at_its_own_property(
    fd: Desktop, bff: ServiceProcess, sim: SimHandle
) -> None:
    """Acks are keyed by tenant and alert: one made "at" another property would take the
    alert's only acknowledgement away from the property it belongs to."""
    alert_id = ok(alerts(fd))["items"][0]["alertId"]
    gm = Desktop(bff.url, sim.url, "gm.demo")  # in scope at both demo properties
    try:
        error(acknowledge(gm, alert_id, pid="prop-demo-2"), 404, "NOT_FOUND")
        assert ok(acknowledge(fd, alert_id))["changed"] is True
        error(acknowledge(gm, alert_id, pid="prop-demo-2"), 404, "NOT_FOUND")
    finally:
        gm.close()


def test_notification_down_serves_the_inbox(fd: Desktop, sim: SimHandle) -> None:
    before = ok(alerts(fd, filter="all"))["items"]
    sim.fault("notification", "error")
    body = ok(alerts(fd, filter="all"))
    assert body["degraded"] is True
    assert [a["alertId"] for a in body["items"]] == [a["alertId"] for a in before]


def test_an_alert_raised_by_event_reaches_the_inbox(
    start_bff: ServiceFactory, bus_sim: SimHandle
) -> None:
    bff = start_bff(SIM_URL=bus_sim.url, **FAST)
    desk = Desktop(bff.url, bus_sim.url, "fd.demo")
    try:
        bus_sim.fault("notification", "error")  # only the projection can know it
        alert_id = publish_alert(bus_sim)

        def listed() -> bool:
            body = ok(alerts(desk))
            return body["degraded"] and alert_id in {a["alertId"] for a in body["items"]}

        wait_until(listed, 15, "the published alert in the degraded list")
        assert ok(acknowledge(desk, alert_id))["forwarded"] is False
        acked = ok(alerts(desk, filter="acknowledged"))["items"]
        assert alert_id in {a["alertId"] for a in acked}
    finally:
        desk.close()


# --- input -------------------------------------------------------------------------------------


def test_bad_input_names_the_field(fd: Desktop) -> None:
    assert "filter" in error(alerts(fd, filter="closed"), 400, "VALIDATION_FAILED")
    assert "category" in error(suggestions(fd, category="weather"), 400, "VALIDATION_FAILED")
    assert "propertyId" in error(fd.get(f"{BASE}/alerts"), 400, "VALIDATION_FAILED")
    bad = fd.post(f"{BASE}/alerts/alr-1/acknowledge", json={"propertyId": 7})
    assert "propertyId" in error(bad, 400, "VALIDATION_FAILED")
    assert "propertyId" in error(
        fd.post(f"{BASE}/alerts/alr-1/acknowledge", json={}), 400, "VALIDATION_FAILED"
    )
    assert "alertId" in error(acknowledge(fd, "a~b"), 400, "VALIDATION_FAILED")
    assert "alertId" in error(acknowledge(fd, "..."), 400, "VALIDATION_FAILED")
    assert "decision" in error(
        decide(fd, "sug-1", {"propertyId": P, "decision": "maybe"}), 400, "VALIDATION_FAILED"
    )
    assert "modification" in error(
        decide(fd, "sug-1", {"propertyId": P, "decision": "modify"}), 400, "VALIDATION_FAILED"
    )
    error(acknowledge(fd, "alr-1", "prop-demo-2"), 403, "PROPERTY_OUT_OF_SCOPE")
    error(alerts(fd, propertyId="prop-other-1"), 403, "PROPERTY_OUT_OF_SCOPE")
    long_key = decide(
        fd, "sug-1", {"propertyId": P, "decision": "accept"}, **{"Idempotency-Key": "k" * 200}
    )
    assert "Idempotency-Key" in error(long_key, 400, "VALIDATION_FAILED")
