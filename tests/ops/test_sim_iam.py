"""The simulated iam-service: DPoP-bound sign-in, refresh, revocation, step-up, JWKS rotation.
The BFF's auth chain verifies against exactly these behaviours."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
from jwcrypto import jwk, jwt

from ops.sim.desktop import DemoDevice
from schemas.upstream.iam import AUDIENCE, ISSUER, AccessTokenClaims, StepUpVerifyResponse
from tests.support.sim import SimHandle


def _verify(sim: SimHandle, token: str) -> AccessTokenClaims:
    """Verify an access token the way a resource server does: against the JWKS only."""
    keys = jwk.JWKSet.from_json(sim.http.get("/iam/.well-known/jwks.json").text)
    checked = jwt.JWT(jwt=token, key=keys, algs=["ES256"], expected_type="JWS")
    return msgspec.json.decode(checked.claims, type=AccessTokenClaims)


def _header(token: str) -> dict[str, Any]:
    parsed = jwt.JWT()
    parsed.deserialize(token)
    header: dict[str, Any] = parsed.token.jose_header
    return header


def test_sign_in_issues_a_token_bound_to_the_device_key(sim: SimHandle) -> None:
    device = sim.device()
    tokens = device.sign_in("gm.demo")
    claims = _verify(sim, tokens.access_token)
    assert (claims.iss, claims.aud) == (ISSUER, AUDIENCE)
    assert (claims.sub, claims.tid, claims.role) == ("opr-gm-demo", "tnt-demo", "gm")
    assert claims.pids == ["prop-demo-1", "prop-demo-2"]
    assert (claims.did, claims.sid) == (device.device_id, tokens.session_id)
    assert claims.cnf is not None and claims.cnf.jkt == device.jkt
    assert claims.exp - claims.iat == tokens.expires_in == 900
    assert _header(tokens.access_token)["typ"] == "at+jwt"
    info = sim.get(f"/iam/v1/sessions/{tokens.session_id}")
    assert info["status"] == "active" and info["deviceId"] == device.device_id


def _bad_proofs(device: DemoDevice, url: str) -> dict[str, str]:
    other = jwk.JWK.generate(kty="EC", crv="P-256")
    return {
        "missing": "",
        "not enrolled key": device.proof("POST", url, key=other),
        "wrong htu": device.proof("POST", url.replace("/sessions", "/sessionz")),
        "wrong htm": device.proof("PUT", url),
        "stale iat": device.proof("POST", url, iat=time.time() - 600),
        "garbage": "a.b.c",
    }


@pytest.mark.parametrize(
    "case", ["missing", "not enrolled key", "wrong htu", "wrong htm", "stale iat", "garbage"]
)
def test_sign_in_rejects_a_bad_proof(sim: SimHandle, case: str) -> None:
    device = sim.device()
    url = device.url("/iam/v1/sessions")
    answer = device.sign_in_response("fd.demo", proof=_bad_proofs(device, url)[case] or None)
    if case == "missing":
        answer = sim.http.post(
            url,
            json={
                "tenantId": "tnt-demo",
                "deviceId": device.device_id,
                "username": "fd.demo",
                "password": "demo",
            },
        )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_dpop_proof"
    assert answer.headers["www-authenticate"].startswith('DPoP error="invalid_dpop_proof"')


def test_a_proof_is_single_use(sim: SimHandle) -> None:
    device = sim.device()
    proof = device.proof("POST", device.url("/iam/v1/sessions"))
    assert device.sign_in_response("fd.demo", proof=proof).status_code == 200
    replayed = device.sign_in_response("fd.demo", proof=proof)
    assert replayed.status_code == 401 and "replayed" in replayed.json()["error"]["message"]


@pytest.mark.parametrize(
    ("tenant", "username", "password", "code"),
    [
        ("tnt-demo", "fd.demo", "nope", "invalid_credentials"),
        ("tnt-demo", "fd.other", "demo", "invalid_credentials"),  # operator of another tenant
        ("tnt-other", "fd.other", "demo", "invalid_device"),  # device enrolled for tnt-demo
    ],
)
def test_sign_in_checks_credentials_and_device_tenant(
    sim: SimHandle, tenant: str, username: str, password: str, code: str
) -> None:
    device = sim.device()
    device.tenant_id = tenant
    answer = device.sign_in_response(username, password)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == code


def test_refresh_needs_the_same_key_and_rotates_the_refresh_token(sim: SimHandle) -> None:
    device = sim.device()
    first = device.sign_in("fd.demo")
    stolen = device.refresh_response(key=jwk.JWK.generate(kty="EC", crv="P-256"))
    assert stolen.status_code == 401 and stolen.json()["error"]["code"] == "invalid_dpop_proof"
    second = device.refresh()  # the failed attempt did not burn the refresh token
    assert second.session_id == first.session_id
    assert second.refresh_token != first.refresh_token
    cnf = _verify(sim, second.access_token).cnf
    assert cnf is not None and cnf.jkt == device.jkt
    device.tokens = first
    reused = device.refresh_response()
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "invalid_grant"


def test_sign_out_revokes_the_session_and_announces_it(sim: SimHandle) -> None:
    device = sim.device()
    tokens = device.sign_in("fd.demo")
    info = sim.post(f"/iam/v1/sessions/{tokens.session_id}/revoke", json={"reason": "sign_out"})
    assert info["status"] == "signed_out"
    [event] = sim.events("melmastoon.iam.session.revoked")
    assert event["data"] == {
        **event["data"],
        "tenantId": "tnt-demo",
        "sessionId": tokens.session_id,
        "operatorId": "opr-fd-demo",
        "deviceId": device.device_id,
        "reason": "sign_out",
    }
    assert device.refresh_response().status_code == 401
    sim.post(f"/iam/v1/sessions/{tokens.session_id}/revoke", json={"reason": "sign_out"})
    assert len(sim.events("melmastoon.iam.session.revoked")) == 1  # announced once


def test_admin_revocation_through_the_control_api(sim: SimHandle) -> None:
    device = sim.device()
    tokens = device.sign_in("fd.demo")
    info = sim.post(f"/_sim/iam/sessions/{tokens.session_id}/revoke", json={"reason": "security"})
    assert info["status"] == "revoked"
    assert sim.events("melmastoon.iam.session.revoked")[0]["data"]["reason"] == "security"


def test_disabling_an_operator_ends_its_sessions_and_announces_it(sim: SimHandle) -> None:
    device = sim.device()
    tokens = device.sign_in("hk.demo")
    answer = sim.post("/_sim/iam/operators/hk.demo/disable")
    assert answer["sessionIds"] == [tokens.session_id]
    [event] = sim.events("melmastoon.iam.user.disabled")
    assert event["data"]["tenantId"] == "tnt-demo" and event["data"]["operatorId"] == "opr-hk-demo"
    assert event["data"]["sessionIds"] == [tokens.session_id]
    again = device.sign_in_response("hk.demo")
    assert again.status_code == 403 and again.json()["error"]["code"] == "user_disabled"
    sim.post("/_sim/iam/operators/hk.demo/enable")
    assert device.sign_in_response("hk.demo").status_code == 200


def test_key_rotation_keeps_old_tokens_verifiable_until_dropped(sim: SimHandle) -> None:
    device = sim.device()
    old = device.sign_in("fd.demo").access_token
    old_kid = _header(old)["kid"]
    rotated = sim.post("/_sim/iam/rotate-keys", json={"retainPrevious": True})
    assert rotated["kid"] != old_kid and rotated["kids"] == [rotated["kid"], old_kid]
    new = device.refresh().access_token
    assert _header(new)["kid"] == rotated["kid"]
    _verify(sim, old)
    _verify(sim, new)
    dropped = sim.post("/_sim/iam/rotate-keys", json={"retainPrevious": False})
    assert dropped["kids"] == [dropped["kid"]]
    with pytest.raises(Exception, match=r"[Kk]ey"):
        _verify(sim, new)


def test_step_up_attestation_is_good_for_one_action_once(sim: SimHandle) -> None:
    device = sim.device()
    device.sign_in("fd.demo")
    wrong = device.step_up_response("lock.revoke", code="000000")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_mfa_code"
    attestation = device.step_up("lock.revoke")
    assert attestation.expires_in == 300

    def verify(**overrides: str) -> StepUpVerifyResponse:
        body = {
            "attestationToken": attestation.attestation_token,
            "operatorId": "opr-fd-demo",
            "deviceId": device.device_id,
            "action": "lock.revoke",
            **overrides,
        }
        return msgspec.json.decode(
            sim.http.post("/iam/v1/step-up/verify", json=body).content, type=StepUpVerifyResponse
        )

    assert verify(action="folio.refund").reason == "mismatch"
    assert verify(operatorId="opr-gm-demo").reason == "mismatch"
    ok = verify()
    assert ok.valid and ok.reason == "ok"
    assert verify().reason == "used"
    assert verify(attestationToken="x.y.z").reason == "invalid"


def test_step_up_needs_the_operators_dpop_auth(sim: SimHandle) -> None:
    device = sim.device()
    tokens = device.sign_in("fd.demo")
    url = device.url("/iam/v1/step-up")
    body = {"action": "folio.refund", "code": "123456"}
    no_auth = sim.http.post(url, json=body)
    assert no_auth.status_code == 401
    no_ath = sim.http.post(
        url,
        json=body,
        headers={"Authorization": f"DPoP {tokens.access_token}", "DPoP": device.proof("POST", url)},
    )
    assert no_ath.status_code == 401 and "ath" in no_ath.json()["error"]["message"]
    thief = DemoDevice(sim.url, client=sim.http)
    thief.tokens = tokens
    stolen = sim.http.post(url, json=body, headers=thief.auth_headers("POST", url))
    assert stolen.status_code == 401 and stolen.json()["error"]["code"] == "invalid_dpop_proof"


def test_enrolment_refuses_private_or_symmetric_keys(sim: SimHandle) -> None:
    private = jwk.JWK.generate(kty="EC", crv="P-256").export_private(as_dict=True)
    symmetric = jwk.JWK.generate(kty="oct", size=256).export(as_dict=True)
    for key in (private, symmetric):
        answer = sim.http.post(
            "/iam/v1/devices/enroll",
            json={"tenantId": "tnt-demo", "deviceName": "x", "publicJwk": key},
        )
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_jwk"


def _introspect(sim: SimHandle, refresh_token: str, jkt: str) -> dict[str, Any]:
    body = {"refreshToken": refresh_token, "jkt": jkt}
    answer: dict[str, Any] = sim.post("/iam/v1/service/refresh-tokens/introspect", json=body)
    return answer


def _service_refresh(sim: SimHandle, refresh_token: str, jkt: str) -> Any:
    body = {"refreshToken": refresh_token, "jkt": jkt}
    return sim.http.post("/iam/v1/service/sessions/refresh", json=body)


def test_service_refresh_rotates_for_the_proven_key_only(sim: SimHandle) -> None:
    device = sim.device()
    first = device.sign_in("fd.demo")
    other_jkt = jwk.JWK.generate(kty="EC", crv="P-256").thumbprint()
    assert _introspect(sim, first.refresh_token, device.jkt) == {
        "active": True,
        "state": "ok",
        "sessionId": first.session_id,
        "tenantId": "tnt-demo",
        "operatorId": "opr-fd-demo",
        "deviceId": device.device_id,
    }
    # Another key learns nothing about the session, and cannot refresh.
    assert _introspect(sim, first.refresh_token, other_jkt) == {
        "active": False,
        "state": "key_mismatch",
    }
    refused = _service_refresh(sim, first.refresh_token, other_jkt)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_mismatch"
    assert _introspect(sim, "rt_never-issued", device.jkt)["state"] == "unknown"
    # Introspection and the refused attempt spent nothing: the right key rotates it now.
    rotated = _service_refresh(sim, first.refresh_token, device.jkt)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["sessionId"] == first.session_id
    assert second["refreshToken"] != first.refresh_token
    cnf = _verify(sim, second["accessToken"]).cnf
    assert cnf is not None and cnf.jkt == device.jkt
    assert _introspect(sim, second["refreshToken"], device.jkt)["state"] == "ok"


def test_a_reused_refresh_token_revokes_its_session_and_announces_it(sim: SimHandle) -> None:
    device = sim.device()
    first = device.sign_in("fd.demo")
    second = _service_refresh(sim, first.refresh_token, device.jkt).json()
    assert not sim.events("melmastoon.iam.session.revoked")
    reused = _introspect(sim, first.refresh_token, device.jkt)
    assert reused == {
        "active": False,
        "state": "reused",
        "sessionId": first.session_id,
        "tenantId": "tnt-demo",
        "operatorId": "opr-fd-demo",
        "deviceId": device.device_id,
    }
    assert sim.get(f"/iam/v1/sessions/{first.session_id}")["status"] == "revoked"
    [event] = sim.events("melmastoon.iam.session.revoked")
    assert event["data"] == {
        **event["data"],
        "tenantId": "tnt-demo",
        "sessionId": first.session_id,
        "deviceId": device.device_id,
        "reason": "refresh_reuse",
    }
    # The whole session is over: the successor token too, and the reused one says why.
    assert _introspect(sim, second["refreshToken"], device.jkt)["state"] == "session_ended"
    again = _service_refresh(sim, first.refresh_token, device.jkt)
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "refresh_token_reused"
    ended = _service_refresh(sim, second["refreshToken"], device.jkt)
    assert ended.status_code == 401 and ended.json()["error"]["code"] == "invalid_grant"
    assert len(sim.events("melmastoon.iam.session.revoked")) == 1  # announced once


def test_a_used_refresh_token_under_another_key_revokes_nothing(sim: SimHandle) -> None:
    device = sim.device()
    first = device.sign_in("fd.demo")
    second = _service_refresh(sim, first.refresh_token, device.jkt).json()
    other_jkt = jwk.JWK.generate(kty="EC", crv="P-256").thumbprint()
    assert _introspect(sim, first.refresh_token, other_jkt)["state"] == "key_mismatch"
    assert sim.get(f"/iam/v1/sessions/{first.session_id}")["status"] == "active"
    assert _service_refresh(sim, second["refreshToken"], device.jkt).status_code == 200
