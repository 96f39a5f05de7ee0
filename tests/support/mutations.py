"""Helpers for the mutation and lock route tests: sending a mutation as the desktop does, the
simulator's demo data to act on, the audit rows the BFF wrote, and the upstream's call log."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.desktop import Desktop
from tests.support.ledger import ledger_subjects
from tests.support.sim import SimHandle

BASE = "/bff/backoffice/v1"
T, P = "tnt-demo", "prop-demo-1"
SIM_PROPERTY = f"/tenants/{T}/properties/{P}"
FAST = {"BFF_BREAKER_OPEN_S": "0.5"}  # a circuit a test's outage opened closes soon after


def new_key() -> str:
    return uuid.uuid4().hex


def send(
    desk: Desktop, path: str, body: dict[str, Any], key: str | None = None, **headers: str
) -> httpx.Response:
    """``POST {BASE}{path}`` with ``Idempotency-Key: key`` (none when ``key`` is None)."""
    sent = dict(headers)
    if key is not None:
        sent["Idempotency-Key"] = key
    return desk.post(BASE + path, json=body, headers=sent)


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    message: str = body["message"]
    return message


def upstream(sim: SimHandle, service: str, path: str) -> list[dict[str, Any]]:
    """``GET`` the simulated upstream directly (what it holds now)."""
    answer: dict[str, Any] = sim.get(f"/{service}/v1{SIM_PROPERTY}{path}")
    items: list[dict[str, Any]] = answer.get("items", [answer])
    return items


def calls(sim: SimHandle, service: str, fragment: str, key: str) -> list[dict[str, Any]]:
    """The mutation calls ``service`` received on a path containing ``fragment`` with ``key``."""
    return [
        c
        for c in sim.calls(service)
        if fragment in c["path"] and c["idempotencyKey"] == key and not c.get("replayed")
    ]


def audit(database_url: str, stream: str) -> list[tuple[str, dict[str, Any]]]:
    """``(subject, payload)`` of the rows of ``stream`` (``lock:<rid>``, ``activity:<op>``)."""
    return ledger_subjects(database_url, stream)


def operator_of(desk: Desktop) -> str:
    answer = desk.get(BASE + "/_test/whoami")
    assert answer.status_code == 200, answer.text
    operator: str = answer.json()["operator_id"]
    return operator


def in_house(sim: SimHandle) -> list[dict[str, Any]]:
    return upstream(sim, "reservation", "/in-house")


def booked_arrivals(sim: SimHandle) -> list[dict[str, Any]]:
    """Today's arrivals that can check in now: booked, with a vacant room of their type."""
    rooms = upstream(sim, "property", "/rooms")
    vacant = {r["roomType"] for r in rooms if not r["occupied"] and not r["outOfOrder"]}
    found = [
        r
        for r in upstream(sim, "reservation", "/arrivals")
        if r["status"] == "booked" and r["roomType"] in vacant
    ]
    assert found, "the demo data has no arrival that can check in today"
    return found
