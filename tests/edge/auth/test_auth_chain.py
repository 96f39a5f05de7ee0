"""The auth chain over real HTTP: a real BFF process, the simulator's real iam (DPoP-bound ES256
tokens), real Redis. One failing request per code of the contract's auth table, and each RFC 9449
negative case on its own."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
import redis
from jwcrypto import jwk, jws

from edge.auth.dpop import ath_for, make_proof
from tests.support.desktop import APP_VERSION, Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.procs import ServiceProcess, wait_until
from tests.support.sim import SimHandle

WHOAMI = "/bff/backoffice/v1/_test/whoami"


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url)


@pytest.fixture
def desk(bff: ServiceProcess, sim: SimHandle) -> Desktop:
    return Desktop(bff.url, sim.url, "fd.demo")


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    if status == 401:
        assert response.headers["www-authenticate"].startswith("DPoP ")
    return body


def _proof_headers(desk: Desktop, path: str = WHOAMI, **proof: Any) -> dict[str, str]:
    """Auth headers whose proof is built with ``proof`` overrides (method, url, key, …)."""
    assert desk.device.tokens is not None
    token = desk.device.tokens.access_token
    args: dict[str, Any] = {
        "method": "GET",
        "url": desk.bff_url + path,
        "access_token": token,
        "iat": time.time(),
        "jti": uuid.uuid4().hex,
    }
    args.update(proof)
    key = args.pop("key", desk.device.key)
    return {
        "Authorization": f"DPoP {token}",
        "DPoP": make_proof(key, **args),
        "X-App-Version": APP_VERSION,
    }


def test_valid_request_passes_and_names_the_principal(desk: Desktop) -> None:
    response = desk.get(WHOAMI)
    assert response.status_code == 200, response.text
    who = response.json()
    assert (who["tenant"], who["role"], who["device_id"]) == (
        "tnt-demo",
        "front_desk",
        desk.device_id,
    )


def test_session_required_without_authorization(bff: ServiceProcess) -> None:
    response = httpx.get(bff.url + WHOAMI)
    _error(response, 401, "SESSION_REQUIRED")
    assert "algs=" in response.headers["www-authenticate"]


def test_bearer_scheme_is_not_dpop(desk: Desktop) -> None:
    headers = _proof_headers(desk)
    headers["Authorization"] = headers["Authorization"].replace("DPoP", "Bearer")
    _error(desk.http.get(WHOAMI, headers=headers), 401, "DPOP_INVALID")


def test_missing_proof(desk: Desktop) -> None:
    headers = _proof_headers(desk)
    del headers["DPoP"]
    _error(desk.http.get(WHOAMI, headers=headers), 401, "DPOP_INVALID")


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_alg_none(desk: Desktop) -> None:
    headers = _proof_headers(desk)
    assert desk.device.tokens is not None
    header = {"alg": "none", "typ": "dpop+jwt", "jwk": desk.device.public_jwk()}
    claims = {
        "jti": uuid.uuid4().hex,
        "htm": "GET",
        "htu": desk.bff_url + WHOAMI,
        "iat": int(time.time()),
        "ath": ath_for(desk.device.tokens.access_token),
    }
    headers["DPoP"] = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
    _error(desk.http.get(WHOAMI, headers=headers), 401, "DPOP_INVALID")


def test_hs256(desk: Desktop) -> None:
    headers = _proof_headers(desk)
    assert desk.device.tokens is not None
    secret = jwk.JWK.generate(kty="oct", size=256)
    claims = {
        "jti": uuid.uuid4().hex,
        "htm": "GET",
        "htu": desk.bff_url + WHOAMI,
        "iat": int(time.time()),
        "ath": ath_for(desk.device.tokens.access_token),
    }
    token = jws.JWS(json.dumps(claims).encode())
    protected = {"alg": "HS256", "typ": "dpop+jwt", "jwk": secret.export(as_dict=True)}
    token.add_signature(secret, alg="HS256", protected=json.dumps(protected))
    headers["DPoP"] = token.serialize(compact=True)
    _error(desk.http.get(WHOAMI, headers=headers), 401, "DPOP_INVALID")


def test_private_key_in_jwk(desk: Desktop) -> None:
    private = desk.device.key.export_private(as_dict=True)
    headers = _proof_headers(desk, extra_header={"jwk": private})
    body = _error(desk.http.get(WHOAMI, headers=headers), 401, "DPOP_INVALID")
    assert "private" in body["message"]


def test_bad_signature(desk: Desktop) -> None:
    headers = _proof_headers(desk)
    head, payload, sig = headers["DPoP"].split(".")
    headers["DPoP"] = f"{head}.{payload}.{sig[::-1]}"
    _error(desk.http.get(WHOAMI, headers=headers), 401, "DPOP_INVALID")


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"method": "POST"}, "htm"),
        ({"url": "http://evil.example/bff/backoffice/v1/_test/whoami"}, "htu"),
        ({"url": "QUERY"}, "htu"),
        ({"iat": time.time() - 3600}, "old"),
        ({"iat": time.time() + 3600}, "future"),
        ({"access_token": None}, "ath"),
        ({"access_token": "some-other-token"}, "ath"),
    ],
    ids=["htm", "htu", "htu-with-query", "iat-old", "iat-ahead", "ath-missing", "ath-wrong"],
)
def test_proof_claims(desk: Desktop, overrides: dict[str, Any], hint: str) -> None:
    if overrides.get("url") == "QUERY":
        overrides = {"url": desk.bff_url + WHOAMI + "?x=1"}
    if "iat" in overrides:
        overrides = {"iat": time.time() + (3600 if hint == "future" else -3600)}
    headers = _proof_headers(desk, **overrides)
    body = _error(desk.http.get(WHOAMI, headers=headers), 401, "DPOP_INVALID")
    assert hint in body["message"]


def test_replayed_jti(desk: Desktop) -> None:
    headers = _proof_headers(desk)
    assert desk.http.get(WHOAMI, headers=headers).status_code == 200
    body = _error(desk.http.get(WHOAMI, headers=headers), 401, "DPOP_INVALID")
    assert "already used" in body["message"]


def test_replayed_jti_at_a_second_instance(
    desk: Desktop, start_bff: ServiceFactory, sim: SimHandle
) -> None:
    second = start_bff(SIM_URL=sim.url)
    first_url = desk.bff_url
    headers = _proof_headers(desk)
    assert desk.http.get(WHOAMI, headers=headers).status_code == 200
    # The same proof (its htu names the first instance's URL) sent to the second instance,
    # which sees the same externally visible URL behind a load balancer:
    replay = httpx.get(second.url + WHOAMI, headers={**headers, "Host": first_url.split("//")[1]})
    body = _error(replay, 401, "DPOP_INVALID")
    assert "already used" in body["message"]


def test_proof_key_is_not_the_token_key(desk: Desktop) -> None:
    other = jwk.JWK.generate(kty="EC", crv="P-256")
    body = _error(
        desk.http.get(WHOAMI, headers=_proof_headers(desk, key=other)), 401, "DPOP_INVALID"
    )
    assert "key" in body["message"]


def test_token_without_cnf_is_not_dpop_bound(desk: Desktop, sim: SimHandle) -> None:
    unbound = sim.post(f"/_sim/iam/sessions/{desk.session_id}/token", json={"omit": ["cnf"]})
    token = unbound["accessToken"]
    headers = _proof_headers(desk, access_token=token)
    headers["Authorization"] = f"DPoP {token}"
    body = _error(desk.http.get(WHOAMI, headers=headers), 401, "DPOP_INVALID")
    assert "not DPoP-bound" in body["message"]


def test_tampered_token_signature_is_session_expired(desk: Desktop) -> None:
    assert desk.device.tokens is not None
    head, payload, sig = desk.device.tokens.access_token.split(".")
    forged = f"{head}.{payload}.{sig[:-6]}AAAAAA"
    headers = _proof_headers(desk, access_token=forged)
    headers["Authorization"] = f"DPoP {forged}"
    _error(desk.http.get(WHOAMI, headers=headers), 401, "SESSION_EXPIRED")


def test_expired_token_is_session_expired(start_bff: ServiceFactory, start_sim: Any) -> None:
    short = start_sim(SIM_ACCESS_TTL_S="1")
    bff = start_bff(SIM_URL=short.url, BFF_DPOP_MAX_AGE_S="60")
    desk = Desktop(bff.url, short.url, "fd.demo")
    assert desk.get(WHOAMI).status_code == 200
    wait_until(lambda: desk.get(WHOAMI).status_code == 401, 15, "the token to expire", interval=0.5)
    _error(desk.get(WHOAMI), 401, "SESSION_EXPIRED")


def test_device_mismatch(desk: Desktop) -> None:
    path = "/bff/backoffice/v1/devices/dev-someone-else/heartbeat"
    _error(desk.post(path, json={"appVersion": APP_VERSION}), 403, "DEVICE_MISMATCH")


def test_device_mismatch_in_body(desk: Desktop) -> None:
    path = "/bff/backoffice/v1/_test/properties/prop-demo-1/mutate"
    _error(desk.post(path, json={"deviceId": "dev-x"}), 403, "DEVICE_MISMATCH")


def test_tenant_suspended(bff: ServiceProcess, sim: SimHandle) -> None:
    desk = Desktop(bff.url, sim.url, "fd.susp", tenant="tnt-suspended")
    _error(desk.get(WHOAMI), 503, "TENANT.SUSPENDED")


def test_property_out_of_scope(desk: Desktop) -> None:
    _error(desk.get(WHOAMI, params={"propertyId": "prop-demo-2"}), 403, "PROPERTY_OUT_OF_SCOPE")
    path = "/bff/backoffice/v1/_test/properties/prop-demo-2/mutate"
    _error(desk.post(path, json={}), 403, "PROPERTY_OUT_OF_SCOPE")


def test_cross_tenant_token_never_reads_another_tenants_property(
    bff: ServiceProcess, sim: SimHandle
) -> None:
    other = Desktop(bff.url, sim.url, "fd.other", tenant="tnt-other")
    assert other.get(WHOAMI).json()["tenant"] == "tnt-other"
    _error(other.get(WHOAMI, params={"propertyId": "prop-demo-1"}), 403, "PROPERTY_OUT_OF_SCOPE")
    path = "/bff/backoffice/v1/_test/properties/prop-demo-1/mutate"
    _error(other.post(path, json={}), 403, "PROPERTY_OUT_OF_SCOPE")


def test_app_version_floor(bff: ServiceProcess, sim: SimHandle, redis_prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    client.hset(f"{redis_prefix}:_global:flags", "appVersionFloor", "2.0.0")
    desk = Desktop(bff.url, sim.url, "fd.demo")
    _error(desk.get(WHOAMI), 426, "SYNC.VERSION_BLOCKED")
    assert desk.get(WHOAMI, headers={"X-App-Version": "2.1.0"}).status_code == 200
    _error(desk.get(WHOAMI, headers={"X-App-Version": "latest"}), 400, "VALIDATION_FAILED")


def test_rate_limited(start_bff: ServiceFactory, sim: SimHandle) -> None:
    bff = start_bff(SIM_URL=sim.url, BFF_RATE_LIMIT_PER_MINUTE="3")
    desk = Desktop(bff.url, sim.url, "fd.demo")
    statuses = [desk.get(WHOAMI) for _ in range(8)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    _error(limited[0], 429, "RATE_LIMITED")
    assert 1 <= int(limited[0].headers["retry-after"]) <= 60


def test_session_tier_down_fails_mutations_not_reads(
    start_bff: ServiceFactory, sim: SimHandle, log_dir: Any
) -> None:
    from tests.support.procs import PrivateRedis

    session_tier = PrivateRedis(log_dir)
    try:
        bff = start_bff(
            SIM_URL=sim.url, BFF_REDIS_SESSION_URL=session_tier.url, BFF_DEPENDENCY_TIMEOUT_S="0.5"
        )
        desk = Desktop(bff.url, sim.url, "fd.demo")
        assert desk.get(WHOAMI).status_code == 200
        session_tier.stop()
        path = "/bff/backoffice/v1/_test/properties/prop-demo-1/mutate"
        _error(desk.post(path, json={}), 503, "CACHE_UNAVAILABLE")
        assert desk.get(WHOAMI).status_code == 200  # reads fall back
    finally:
        session_tier.stop()


def test_jwks_rotation_is_followed(start_bff: ServiceFactory, sim: SimHandle) -> None:
    bff = start_bff(SIM_URL=sim.url, BFF_JWKS_MIN_REFETCH_S="0.5")
    desk = Desktop(bff.url, sim.url, "fd.demo")
    assert desk.get(WHOAMI).status_code == 200
    sim.post("/_sim/iam/rotate-keys")
    desk.device.sign_in("fd.demo")  # a token signed with the new key
    # The unknown kid triggers one refetch, at most every 0.5 s: it is accepted once allowed.
    wait_until(lambda: desk.get(WHOAMI).status_code == 200, 5, "the rotated key to be fetched")
