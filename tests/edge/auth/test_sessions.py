"""Sessions over real processes: sign-out, revocation seen by every instance, force-logout
through the bus, MFA step-up, heartbeat (token refresh: test_refresh.py)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import httpx
import redis
import trio

from edge.bus.redis_streams import stream_key
from tests.support.desktop import APP_VERSION, Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.ledger import ledger_subjects as _ledger_subjects
from tests.support.procs import free_port, wait_until
from tests.support.pubsub import Bus
from tests.support.sim import SimClient, SimHandle
from tests.support.stack import StackFactory

WHOAMI = "/bff/backoffice/v1/_test/whoami"
SENSITIVE = "/bff/backoffice/v1/_test/sensitive"


def _rejected(desk: Desktop) -> Callable[[], bool]:
    return lambda: desk.get(WHOAMI).status_code == 401


def _code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def test_first_call_opens_the_session_in_the_ledger(
    start_bff: ServiceFactory, sim: SimHandle, database_url: str
) -> None:
    bff = start_bff(SIM_URL=sim.url)
    desk = Desktop(bff.url, sim.url)
    for _ in range(3):
        assert desk.get(WHOAMI).status_code == 200
    trail = _ledger_subjects(database_url, f"device:{desk.device_id}")
    opened = [p for s, p in trail if s.endswith("session.opened.v1")]
    assert len(opened) == 1 and opened[0]["sessionId"] == desk.session_id


def test_sign_out_is_rejected_on_every_instance(
    start_stack: StackFactory, database_url: str
) -> None:
    stack = start_stack(2)  # ./ops/stack up --instances 2: each call to an instance of our pick
    first, second = stack.instances
    sim = SimClient(stack.sim)
    desk = Desktop(first, sim.url, public_url=stack.lb)
    other = Desktop(second, sim.url, device=desk.device, public_url=stack.lb)
    assert desk.get(WHOAMI).status_code == 200 and other.get(WHOAMI).status_code == 200
    out = desk.post("/bff/backoffice/v1/auth/sign-out")
    assert out.status_code == 200, out.text
    assert out.json()["signedOut"] is True
    for client in (desk, other):  # the token has not expired, but the session is over
        rejected = client.get(WHOAMI)
        assert rejected.status_code == 401 and _code(rejected) == "SESSION_EXPIRED"
    closed = [
        p
        for s, p in _ledger_subjects(database_url, f"device:{desk.device_id}")
        if s.endswith("session.closed.v1")
    ]
    assert [c["reason"] for c in closed] == ["sign_out"]
    assert any(c["path"].endswith("/revoke") for c in sim.calls("iam"))


def _device_state(admin: str, desk: Desktop) -> dict[str, Any]:
    """The DeviceActor's state in one instance (admin endpoint, ``getState``)."""
    path = f"{admin}/admin/actors/device/{desk.device.tenant_id}/{desk.device_id}/ask"
    answer = httpx.post(path, json={"type": "getState"}, timeout=10)
    assert answer.status_code == 200, answer.text
    state: dict[str, Any] = answer.json()["reply"]
    return state


def _device_actor(admin: str, desk: Desktop) -> dict[str, Any]:
    """The DeviceActor's entry in one instance's list of live actors."""
    listing = httpx.get(f"{admin}/admin/actors", params={"kind": "device"}, timeout=10).json()
    [actor] = [a for a in listing["actors"] if a["id"] == desk.device_id]
    return actor  # type: ignore[no-any-return]


def _closed_by_actor(admin: str, desk: Desktop) -> Callable[[], bool]:
    return lambda: desk.session_id in _device_state(admin, desk)["closedSessions"]


def test_force_logout_through_the_bus_reaches_both_instances(
    start_stack: StackFactory, bus: Bus, database_url: str
) -> None:
    """The simulator's iam publishes session.revoked; EACH instance consumes it from its own
    subscription and its own DeviceActor closes the session. (The instances share the session
    tier, so "both reject the token" alone would pass with only one consumer.)"""
    stack = start_stack(2, **bus.env)  # ./ops/stack up --instances 2 on this bus
    for name in stack.ids:
        bus.wait_subscribed(name, "melmastoon.iam")
    sim = SimClient(stack.sim)
    desk = Desktop(stack.instances[0], sim.url, public_url=stack.lb)
    other = Desktop(stack.instances[1], sim.url, device=desk.device, public_url=stack.lb)
    assert desk.get(WHOAMI).status_code == 200 and other.get(WHOAMI).status_code == 200
    urls = stack.admins
    before: dict[str, dict[str, Any]] = {}
    for admin in urls:  # each instance hosts the device's actor, with the session open
        state = _device_state(admin, desk)
        assert state["sessionId"] == desk.session_id and state["closedSessions"] == []
        before[admin] = _device_actor(admin, desk)

    sim.post(f"/_sim/iam/sessions/{desk.session_id}/revoke", json={"reason": "security"})
    for client in (desk, other):
        wait_until(_rejected(client), 15, "force-logout")
    for admin in urls:
        wait_until(_closed_by_actor(admin, desk), 15, f"the actor at {admin} to close it")
        state = _device_state(admin, desk)
        assert state["sessionId"] is None and state["sessionRef"] is None
        after = _device_actor(admin, desk)
        # the same activation handled the event (not a restart or re-activation replaying it)
        assert after["restarts"] == 0 and after["ageSeconds"] >= before[admin]["ageSeconds"]
    closed = [
        p
        for s, p in _ledger_subjects(database_url, f"device:{desk.device_id}")
        if s.endswith("session.closed.v1")
    ]
    assert [c["reason"] for c in closed] == ["security"]  # recorded once, by one instance


def test_disabled_operator_loses_every_session(
    start_bff: ServiceFactory, bus_sim: SimHandle
) -> None:
    bff = start_bff(SIM_URL=bus_sim.url, BFF_BUS="embedded")
    desks = [Desktop(bff.url, bus_sim.url, "hk.demo") for _ in range(2)]
    for desk in desks:
        assert desk.get(WHOAMI).status_code == 200
    bystander = Desktop(bff.url, bus_sim.url, "fd.demo")
    assert bystander.get(WHOAMI).status_code == 200
    bus_sim.post("/_sim/iam/operators/hk.demo/disable")
    for desk in desks:
        wait_until(_rejected(desk), 10, "user.disabled logout")
    assert bystander.get(WHOAMI).status_code == 200


def _subscribed(prefix: str, *instances: str) -> Callable[[], bool]:
    """Each instance's consumer group on iam's topic exists (embedded bus): an event published
    from now on reaches every instance."""

    def check() -> bool:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            info = client.xinfo_groups(stream_key(prefix, "melmastoon.iam"))
        except redis.ResponseError:
            return False
        finally:
            client.close()
        return {f"bff:{i}" for i in instances} <= {g["name"].decode() for g in info}

    return check


def _whoami(desk: Desktop, bff_url: str) -> httpx.Response:
    """``desk``'s tokens presented to the instance at ``bff_url``."""
    url = bff_url.rstrip("/") + WHOAMI
    return httpx.get(url, headers=desk.device.auth_headers("GET", url), timeout=15)


def _expired(desk: Desktop, bff_url: str) -> Callable[[], bool]:
    def check() -> bool:
        answer = _whoami(desk, bff_url)
        return answer.status_code == 401 and _code(answer) == "SESSION_EXPIRED"

    return check


def _closed_sessions(database_url: str, device_id: str) -> list[tuple[str, str]]:
    return [
        (p["sessionId"], p["reason"])
        for s, p in _ledger_subjects(database_url, f"device:{device_id}")
        if s.endswith("session.closed.v1")
    ]


def test_disabling_one_operator_on_a_shared_desk_signs_out_only_them(
    start_bff: ServiceFactory, bus_sim: SimHandle, redis_prefix: str, database_url: str
) -> None:
    """F-31 on a shared front desk: X signs in on desk D, then Y on the same D. iam disables X
    and publishes only ``iam.user.disabled.v1`` (naming X's sessions): X's session is rejected
    by both instances within the force-logout goal (5 s), Y's is untouched."""
    admins = {f"desk-{n}": free_port() for n in (1, 2)}
    first, second = [
        start_bff(SIM_URL=bus_sim.url, BFF_INSTANCE_ID=name, BFF_ADMIN_PORT=str(port))
        for name, port in admins.items()
    ]
    wait_until(_subscribed(redis_prefix, *admins), 15, "both instances' consumer groups")
    x = Desktop(first.url, bus_sim.url, "hk.demo")
    y = Desktop(second.url, bus_sim.url, "fd.demo", device=copy.copy(x.device))  # own tokens
    assert x.device_id == y.device_id and x.session_id != y.session_id
    urls = (first.url, second.url)
    for url in urls:  # X's session opens on D first, then Y's
        assert _whoami(x, url).status_code == 200
    for url in urls:
        assert _whoami(y, url).status_code == 200

    started = time.monotonic()
    bus_sim.post("/_sim/iam/operators/hk.demo/disable")
    for url in urls:
        wait_until(_expired(x, url), 5 - (time.monotonic() - started), f"X rejected at {url}")
    admin_urls = [f"http://127.0.0.1:{port}" for port in admins.values()]
    for admin in admin_urls:  # both instances consumed the event and handled it
        wait_until(_closed_by_actor(admin, x), 15, f"the actor at {admin} to close X's session")
    for url in urls:
        assert _whoami(y, url).status_code == 200, "Y was signed out in X's place"
    for admin in admin_urls:
        state = _device_state(admin, y)
        assert y.session_id not in state["closedSessions"]
        assert state["sessionId"] == y.session_id
    assert _closed_sessions(database_url, x.device_id) == [(x.session_id, "user_disabled")]


def test_a_session_revocation_with_a_malformed_device_id_still_revokes_the_session(
    start_bff: ServiceFactory, bus_sim: SimHandle, redis_prefix: str, database_url: str
) -> None:
    """iam's ``session.revoked`` carrying a malformed ``deviceId`` (or a wrong one): the BFF
    revokes by ``(tenantId, sessionId)`` — it does not fail open — and the device that holds
    the session records the close."""
    bff = start_bff(SIM_URL=bus_sim.url, BFF_INSTANCE_ID="bad-device")
    wait_until(_subscribed(redis_prefix, "bad-device"), 15, "the instance's consumer group")
    desk = Desktop(bff.url, bus_sim.url, "fd.demo")
    assert desk.get(WHOAMI).status_code == 200
    data = {
        "tenantId": desk.device.tenant_id,
        "sessionId": desk.session_id,
        "operatorId": "opr-fd-demo",
        "deviceId": "not a device/*",
        "reason": "security",
    }
    bus_sim.post(
        "/_sim/events", json={"subject": "melmastoon.iam.session.revoked.v1", "data": data}
    )
    wait_until(_expired(desk, bff.url), 10, "the revoked session to be rejected")
    wait_until(
        lambda: _closed_sessions(database_url, desk.device_id) == [(desk.session_id, "security")],
        10,
        "the holding device to record the close",
    )


def test_mfa_step_up_is_single_use(start_bff: ServiceFactory, sim: SimHandle) -> None:
    bff = start_bff(SIM_URL=sim.url)
    desk = Desktop(bff.url, sim.url)
    missing = desk.post(SENSITIVE, json={"action": "lock.revoke"})
    assert missing.status_code == 401 and _code(missing) == "MFA_REQUIRED"
    token = desk.device.step_up("lock.revoke").attestation_token
    header = {"X-MFA-Attestation": token}
    ok = desk.post(SENSITIVE, json={"action": "lock.revoke"}, headers=header)
    assert ok.status_code == 200, ok.text
    replay = desk.post(SENSITIVE, json={"action": "lock.revoke"}, headers=header)
    assert replay.status_code == 401 and _code(replay) == "MFA_INVALID_OR_USED"
    other_action = desk.device.step_up("lock.revoke").attestation_token
    wrong = desk.post(
        SENSITIVE, json={"action": "folio.refund"}, headers={"X-MFA-Attestation": other_action}
    )
    assert wrong.status_code == 401 and _code(wrong) == "MFA_INVALID_OR_USED"
    garbage = desk.post(SENSITIVE, json={}, headers={"X-MFA-Attestation": "not-a-token"})
    assert garbage.status_code == 401 and _code(garbage) == "MFA_INVALID_OR_USED"


def test_concurrent_uses_of_one_attestation_let_one_through(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    bff = start_bff(SIM_URL=sim.url)
    desk = Desktop(bff.url, sim.url)
    token = desk.device.step_up("folio.refund").attestation_token
    results: list[int] = []

    async def use() -> None:
        headers = desk.headers("POST", SENSITIVE, **{"X-MFA-Attestation": token})
        async with httpx.AsyncClient(base_url=bff.url) as client:
            answer = await client.post(SENSITIVE, json={"action": "folio.refund"}, headers=headers)
        results.append(answer.status_code)

    async def race() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(use)

    trio.run(race)
    assert sorted(results) == [200, 401, 401, 401, 401]


def test_step_up_outage_blocks_only_sensitive_actions(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    bff = start_bff(SIM_URL=sim.url)
    desk = Desktop(bff.url, sim.url)
    assert desk.get(WHOAMI).status_code == 200  # keys cached before the outage
    token = desk.device.step_up("lock.revoke").attestation_token
    sim.fault("iam", "error")
    blocked = desk.post(SENSITIVE, json={}, headers={"X-MFA-Attestation": token})
    assert blocked.status_code == 502 and _code(blocked) == "UPSTREAM_UNAVAILABLE"
    assert blocked.json()["error"]["retryable"] is True
    assert desk.get(WHOAMI).status_code == 200
    sim.clear_faults()
    retried = desk.post(SENSITIVE, json={}, headers={"X-MFA-Attestation": token})
    assert retried.status_code == 200, retried.text  # the failed attempt did not burn it


def test_heartbeat_updates_status_and_counts_retries_once(
    start_bff: ServiceFactory, sim: SimHandle, database_url: str
) -> None:
    bff = start_bff(SIM_URL=sim.url, BFF_HEARTBEAT_SAMPLE_RATE="1")
    desk = Desktop(bff.url, sim.url)
    path = f"/bff/backoffice/v1/devices/{desk.device_id}/heartbeat"
    first = desk.post(path, json={"appVersion": APP_VERSION}, headers={"Idempotency-Key": "hb-1"})
    assert first.status_code == 200, first.text
    retry = desk.post(path, json={"appVersion": APP_VERSION}, headers={"Idempotency-Key": "hb-1"})
    later = desk.post(
        path,
        json={"appVersion": "1.5.0"},
        headers={"Idempotency-Key": "hb-2", "X-App-Version": "1.5.0"},
    )
    assert [
        first.json()["heartbeatCount"],
        retry.json()["heartbeatCount"],
        later.json()["heartbeatCount"],
    ] == [1, 1, 2]
    assert retry.json()["duplicate"] is True
    trail = _ledger_subjects(database_url, f"device:{desk.device_id}")
    beats = [p for s, p in trail if s.endswith("device.heartbeat.v1")]
    assert [b["commandId"] for b in beats] == ["hb-1", "hb-2"]
    assert [b["appVersion"] for b in beats] == [APP_VERSION, "1.5.0"]  # the header's version
    bad = desk.post(path, json={"appVersion": 5})
    assert bad.status_code == 400 and "appVersion" in bad.json()["error"]["message"]


def test_heartbeat_telemetry_is_sampled(
    start_bff: ServiceFactory, sim: SimHandle, database_url: str
) -> None:
    bff = start_bff(SIM_URL=sim.url, BFF_HEARTBEAT_SAMPLE_RATE="0")
    desk = Desktop(bff.url, sim.url)
    path = f"/bff/backoffice/v1/devices/{desk.device_id}/heartbeat"
    for n in range(5):
        answer = desk.post(path, json={"appVersion": APP_VERSION})
        assert answer.json()["heartbeatCount"] == n + 1
    trail = _ledger_subjects(database_url, f"device:{desk.device_id}")
    assert not [s for s, _ in trail if s.endswith("device.heartbeat.v1")]
