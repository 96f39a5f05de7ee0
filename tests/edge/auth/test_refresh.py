"""Token refresh over real processes (API contract §2): the desktop sends a DPoP proof for the
BFF's own refresh URL; the BFF verifies it and asks the simulator's iam, as a trusted service, to
rotate the refresh token on behalf of the proven key. Each refusal is checked for its code and
for what it must not have spent."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import msgspec
import pytest
import redis

from edge.auth.dpop import make_proof
from ops.sim.desktop import BFF_REFRESH_PATH, DemoDevice
from schemas.upstream.iam import TokenResponse
from tests.edge.auth.conftest import refused as _error
from tests.support.desktop import APP_VERSION, Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.ledger import ledger_subjects
from tests.support.procs import ServiceProcess, wait_until
from tests.support.sim import SimHandle
from tests.support.stack import StackFactory

WHOAMI = "/bff/backoffice/v1/_test/whoami"
SERVICE_REFRESH = "/iam/v1/service/sessions/refresh"


def _rotations(sim: SimHandle) -> list[dict[str, Any]]:
    """The rotations the BFF asked iam for."""
    return [c for c in sim.calls("iam") if c["path"] == SERVICE_REFRESH]


def _whoami_with(bff_url: str, device: DemoDevice) -> httpx.Response:
    """A normal authenticated call with the device's current access token."""
    return httpx.get(bff_url + WHOAMI, headers=device.auth_headers("GET", bff_url + WHOAMI))


def test_refresh_with_a_proof_for_the_bffs_own_url(desk: Desktop, sim: SimHandle) -> None:
    old = desk.device.tokens
    assert old is not None and desk.get(WHOAMI).status_code == 200
    response = desk.refresh_response()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expiresIn"] == 900 and body["sessionId"] == old.session_id
    assert body["refreshToken"] != old.refresh_token
    assert body["accessToken"] != old.access_token
    # iam was asked once, by the BFF, on behalf of the key the proof was made with.
    [rotation] = _rotations(sim)
    assert rotation["body"] == {"refreshToken": old.refresh_token, "jkt": desk.device.jkt}
    desk.device.tokens = msgspec.json.decode(response.content, type=TokenResponse)
    assert desk.get(WHOAMI).status_code == 200  # the new access token works


def test_refresh_without_the_old_access_token(desk: Desktop) -> None:
    response = desk.refresh_response(send_access_token=False)
    assert response.status_code == 200, response.text


def test_refresh_accepts_an_expired_access_token(start_bff: ServiceFactory, start_sim: Any) -> None:
    short = start_sim(SIM_ACCESS_TTL_S="1")
    bff = start_bff(SIM_URL=short.url)
    desk = Desktop(bff.url, short.url, "fd.demo")
    assert desk.get(WHOAMI).status_code == 200
    wait_until(lambda: desk.get(WHOAMI).status_code == 401, 15, "the token to expire", interval=0.5)
    _error(desk.get(WHOAMI), 401, "SESSION_EXPIRED")
    refreshed = desk.refresh_response()  # Authorization carries the expired token
    assert refreshed.status_code == 200, refreshed.text


@pytest.mark.parametrize(
    ("method", "target"),
    [("POST", "iam"), ("POST", "whoami"), ("GET", "refresh"), ("POST", "evil")],
    ids=["iam-refresh-url", "other-bff-route", "wrong-htm", "other-host"],
)
def test_a_proof_for_another_request_is_refused_and_spends_nothing(
    desk: Desktop, sim: SimHandle, method: str, target: str
) -> None:
    url = {
        "iam": f"{sim.url}/iam/v1/sessions/refresh",  # what the desktop sent before
        "whoami": desk.bff_url + WHOAMI,
        "refresh": desk.bff_url + BFF_REFRESH_PATH,
        "evil": "https://evil.example" + BFF_REFRESH_PATH,
    }[target]
    body = _error(desk.refresh_response(proof=desk.device.proof(method, url)), 401, "DPOP_INVALID")
    assert ("htm" if method == "GET" else "htu") in body["message"]
    assert _rotations(sim) == []
    assert desk.refresh_response().status_code == 200  # the refresh token is still good


def test_refresh_needs_a_proof(desk: Desktop) -> None:
    _error(desk.refresh_response(omit=("DPoP",)), 401, "DPOP_INVALID")
    bearer = desk.refresh_response(headers={"Authorization": "Bearer x"})
    _error(bearer, 401, "DPOP_INVALID")


def test_a_replayed_refresh_proof_is_refused(desk: Desktop, sim: SimHandle) -> None:
    proof = desk.device.proof("POST", desk.bff_url + BFF_REFRESH_PATH)
    first = desk.refresh_response(proof=proof)
    assert first.status_code == 200, first.text
    fresh_token = first.json()["refreshToken"]
    replay = desk.refresh_response(proof=proof, refresh_token=fresh_token)
    assert "already used" in _error(replay, 401, "DPOP_INVALID")["message"]
    assert len(_rotations(sim)) == 1
    # The replay spent neither the new refresh token nor the session.
    assert desk.refresh_response(refresh_token=fresh_token).status_code == 200


def test_a_replayed_refresh_proof_is_refused_by_another_instance(
    start_stack: StackFactory,
) -> None:
    stack = start_stack(2)  # ./ops/stack up --instances 2: both behind one public URL
    one, other = stack.instances
    desk = Desktop(one, stack.sim, public_url=stack.lb)
    proof = desk.device.proof("POST", stack.lb + BFF_REFRESH_PATH)
    first = desk.refresh_response(proof=proof)
    assert first.status_code == 200, first.text
    # The same proof straight to the other instance, as the balancer could have routed it:
    replay = httpx.post(
        other + BFF_REFRESH_PATH,
        headers={"DPoP": proof, "X-App-Version": APP_VERSION},
        json={"refreshToken": first.json()["refreshToken"]},
    )
    assert "already used" in _error(replay, 401, "DPOP_INVALID")["message"]


def test_a_refresh_token_bound_to_another_key_is_refused(
    desk: Desktop, bff: ServiceProcess, sim: SimHandle
) -> None:
    victim = desk.device.tokens
    assert victim is not None
    thief = DemoDevice(sim.url, "tnt-demo", "Thief", client=sim.http)
    thief.enroll()
    thief.sign_in("fd.demo")
    # The thief proves its own key and presents the victim's refresh token:
    stolen = thief.bff_refresh_response(
        bff.url, refresh_token=victim.refresh_token, send_access_token=False
    )
    assert "another key" in _error(stolen, 401, "DPOP_INVALID")["message"]
    # …or also the victim's access token, which is bound to the victim's key:
    with_token = thief.bff_refresh_response(
        bff.url,
        refresh_token=victim.refresh_token,
        headers={"Authorization": f"DPoP {victim.access_token}"},
    )
    assert "token's key" in _error(with_token, 401, "DPOP_INVALID")["message"]
    assert _rotations(sim) == []
    # Nothing of the victim's was spent or revoked.
    assert sim.get(f"/iam/v1/sessions/{victim.session_id}")["status"] == "active"
    assert desk.refresh_response().status_code == 200


def test_reuse_of_a_rotated_refresh_token_ends_the_session(
    desk: Desktop, start_bff: ServiceFactory, sim: SimHandle, database_url: str
) -> None:
    other_instance = start_bff(SIM_URL=sim.url)
    first = desk.device.tokens
    assert first is not None and desk.get(WHOAMI).status_code == 200
    second = desk.refresh()
    assert desk.get(WHOAMI).status_code == 200  # with the rotated access token
    reused = desk.refresh_response(refresh_token=first.refresh_token)
    assert "already used" in _error(reused, 401, "SESSION_EXPIRED")["message"]
    # The BFF revoked the session at once (no bus here: the simulator only records events),
    # on this instance and on every other one.
    _error(desk.get(WHOAMI), 401, "SESSION_EXPIRED")
    _error(_whoami_with(other_instance.url, desk.device), 401, "SESSION_EXPIRED")
    _error(desk.refresh_response(refresh_token=second.refresh_token), 401, "SESSION_EXPIRED")
    # iam revoked it too, and announced it; the device's actor recorded why it closed.
    assert sim.get(f"/iam/v1/sessions/{first.session_id}")["status"] == "revoked"
    [event] = sim.events("melmastoon.iam.session.revoked")
    assert event["data"]["sessionId"] == first.session_id
    assert event["data"]["reason"] == "refresh_reuse"
    closed = [
        payload
        for subject, payload in ledger_subjects(database_url, f"device:{desk.device_id}")
        if subject.endswith("session.closed.v1")
    ]
    assert [c["reason"] for c in closed] == ["refresh_reuse"]


def test_refresh_of_a_suspended_tenant(bff: ServiceProcess, sim: SimHandle) -> None:
    desk = Desktop(bff.url, sim.url, "fd.susp", tenant="tnt-suspended")
    _error(desk.refresh_response(), 503, "TENANT.SUSPENDED")
    assert _rotations(sim) == []  # refused before the refresh token was spent


def test_refresh_below_the_app_version_floor(
    desk: Desktop, sim: SimHandle, redis_prefix: str
) -> None:
    redis.Redis.from_url(REDIS_URL).hset(
        f"{redis_prefix}:_global:flags", "appVersionFloor", "1.2.0"
    )
    _error(desk.refresh_response(omit=("X-App-Version",)), 426, "SYNC.VERSION_BLOCKED")
    _error(desk.refresh_response(headers={"X-App-Version": "1.1.9"}), 426, "SYNC.VERSION_BLOCKED")
    _error(desk.refresh_response(headers={"X-App-Version": "new"}), 400, "VALIDATION_FAILED")
    assert _rotations(sim) == []
    assert desk.refresh_response().status_code == 200  # 1.4.0, and the token was not spent


def test_refresh_needs_the_app_version_without_a_floor(desk: Desktop) -> None:
    _error(desk.refresh_response(omit=("X-App-Version",)), 426, "SYNC.VERSION_BLOCKED")


def test_an_unknown_refresh_token(desk: Desktop) -> None:
    _error(desk.refresh_response(refresh_token="rt_never-issued"), 401, "SESSION_EXPIRED")


def test_a_malformed_body_names_the_field(desk: Desktop) -> None:
    url = desk.bff_url + BFF_REFRESH_PATH
    headers = {"DPoP": desk.device.proof("POST", url), "X-App-Version": APP_VERSION}
    empty = httpx.post(url, headers=headers, json={"refreshToken": ""})
    assert "refreshToken" in _error(empty, 400, "VALIDATION_FAILED")["message"]


def test_refresh_while_iam_is_down(desk: Desktop, sim: SimHandle) -> None:
    assert desk.get(WHOAMI).status_code == 200  # iam's keys are cached by now
    sim.fault("iam", "error")
    _error(desk.refresh_response(), 502, "UPSTREAM_UNAVAILABLE")
    sim.clear_faults()
    assert desk.refresh_response().status_code == 200


def test_refresh_proof_names_the_public_url(start_bff: ServiceFactory, sim: SimHandle) -> None:
    public = "https://desk.hotel.example"
    bff = start_bff(SIM_URL=sim.url, BFF_PUBLIC_URL=public)
    device = DemoDevice(sim.url, "tnt-demo", client=sim.http)
    device.enroll()
    device.sign_in("fd.demo")
    internal = device.bff_refresh_response(bff.url)  # proof for the URL it reached
    assert "htu" in _error(internal, 401, "DPOP_INVALID")["message"]
    proof = make_proof(
        device.key,
        method="POST",
        url=public + BFF_REFRESH_PATH,
        iat=time.time(),
        jti=uuid.uuid4().hex,
    )
    accepted = device.bff_refresh_response(bff.url, proof=proof)
    assert accepted.status_code == 200, accepted.text


def test_the_route_is_documented(bff: ServiceProcess) -> None:
    document = httpx.get(bff.url + "/openapi.json").json()
    operation = document["paths"]["/bff/backoffice/v1/auth/refresh"]["post"]
    assert "BFF_PUBLIC_URL" in operation["summary"] and "no ath" in operation["summary"]
    described = " | ".join(r["description"] for r in operation["responses"].values())
    for code in ("DPOP_INVALID", "SESSION_EXPIRED", "TENANT.SUSPENDED", "SYNC.VERSION_BLOCKED"):
        assert code in described
    assert set(operation["responses"]) >= {"200", "400", "401", "426", "502", "503"}
