"""The auth chain over real HTTP: a real BFF process, the simulator's real iam (DPoP-bound ES256
tokens), real Redis. One failing request per code of the contract's auth table, and each RFC 9449
negative case on its own."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from jwcrypto import jwk, jws

from edge.auth.dpop import ath_for, make_proof
from ops.sim.desktop import BFF_REFRESH_PATH
from tests.edge.auth.conftest import refused as _error
from tests.support.desktop import APP_VERSION, Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.procs import PrivateRedis, ServiceProcess, wait_until
from tests.support.sim import SimHandle
from tests.support.stack import StackFactory

WHOAMI = "/bff/backoffice/v1/_test/whoami"
SIGN_OUT = "/bff/backoffice/v1/auth/sign-out"


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


def test_replayed_jti_at_a_second_instance(start_stack: StackFactory) -> None:
    stack = start_stack(2)  # ./ops/stack up --instances 2: both behind one public URL
    first, second = stack.instances
    desk = Desktop(first, stack.sim, public_url=stack.lb)
    headers = _proof_headers(desk, url=stack.lb + WHOAMI)
    assert desk.http.get(WHOAMI, headers=headers).status_code == 200
    # The same proof straight to the other instance, as the balancer could have routed it:
    replay = httpx.get(second + WHOAMI, headers=headers)
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


def _set_floor(redis_prefix: str, version: str) -> None:
    """The app-version floor, as ops set it (read by a BFF at its first use, then every 30 s)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.hset(f"{redis_prefix}:_global:flags", "appVersionFloor", version)
    finally:
        client.close()


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


def test_app_version_floor(bff: ServiceProcess, sim: SimHandle, redis_prefix: str) -> None:
    _set_floor(redis_prefix, "2.0.0")
    desk = Desktop(bff.url, sim.url, "fd.demo")
    _error(desk.get(WHOAMI), 426, "SYNC.VERSION_BLOCKED")
    assert desk.get(WHOAMI, headers={"X-App-Version": "2.1.0"}).status_code == 200
    _error(desk.get(WHOAMI, headers={"X-App-Version": "latest"}), 400, "VALIDATION_FAILED")
    missing = desk.http.get(WHOAMI, headers=_without(desk.headers("GET", WHOAMI), "X-App-Version"))
    _error(missing, 426, "SYNC.VERSION_BLOCKED")


def test_missing_app_version_is_below_any_floor(desk: Desktop) -> None:
    """No floor is set: a client too old to send X-App-Version is still too old to serve."""
    headers = _without(desk.headers("GET", WHOAMI), "X-App-Version")
    body = _error(desk.http.get(WHOAMI, headers=headers), 426, "SYNC.VERSION_BLOCKED")
    assert "X-App-Version" in body["message"]
    blank = desk.get(WHOAMI, headers={"X-App-Version": ""})
    _error(blank, 426, "SYNC.VERSION_BLOCKED")
    assert desk.get(WHOAMI).status_code == 200


def test_a_malformed_app_version_is_refused_with_no_floor_set(desk: Desktop) -> None:
    """What a client may send never depends on whether a floor happens to be set."""
    body = _error(desk.get(WHOAMI, headers={"X-App-Version": "abc"}), 400, "VALIDATION_FAILED")
    assert body["message"].startswith("X-App-Version")


def test_a_request_has_one_app_version(desk: Desktop) -> None:
    """The heartbeat's body may not claim another version than the checked header."""
    path = f"/bff/backoffice/v1/devices/{desk.device_id}/heartbeat"
    older = desk.post(path, json={"appVersion": "1.0.0"}, headers={"X-App-Version": "9.9.9"})
    assert _error(older, 400, "VALIDATION_FAILED")["message"].startswith("appVersion")
    same = desk.post(path, json={"appVersion": "9.9.9"}, headers={"X-App-Version": "9.9.9"})
    assert same.status_code == 200, same.text
    assert desk.post(path, json={}).status_code == 200  # the header alone is enough


def test_sign_out_is_always_allowed(bff: ServiceProcess, sim: SimHandle, redis_prefix: str) -> None:
    """A suspended tenant's device, or an app below the floor, can still sign out (and a
    suspended tenant still cannot refresh)."""
    _set_floor(redis_prefix, "99.0.0")  # every desktop here is below it
    suspended = Desktop(bff.url, sim.url, "fd.susp", tenant="tnt-suspended")
    _error(suspended.get(WHOAMI), 503, "TENANT.SUSPENDED")
    _error(suspended.refresh_response(), 503, "TENANT.SUSPENDED")
    out = suspended.post(SIGN_OUT)
    assert out.status_code == 200 and out.json()["signedOut"] is True, out.text
    _error(suspended.get(WHOAMI), 401, "SESSION_EXPIRED")
    old = Desktop(bff.url, sim.url, "fd.demo")
    _error(old.get(WHOAMI), 426, "SYNC.VERSION_BLOCKED")
    out = old.post(SIGN_OUT)
    assert out.status_code == 200 and out.json()["signedOut"] is True, out.text


def _burst_in_one_window(
    bff: ServiceProcess, sim: SimHandle, send: Callable[[Desktop], list[httpx.Response]]
) -> tuple[list[httpx.Response], float, float]:
    """``send(desk)`` for a new device (its own counter) within one per-minute window of the
    rate limit; a burst that straddles a minute boundary counts in two windows, so it is sent
    again (by another new device) rather than judged."""
    for _ in range(3):
        desk = Desktop(bff.url, sim.url, "fd.demo")
        started = time.time()
        responses = send(desk)
        ended = time.time()
        if int(started // 60) == int(ended // 60):
            return responses, started, ended
    raise AssertionError("three bursts in a row straddled a minute boundary")


def test_rate_limited(start_bff: ServiceFactory, sim: SimHandle) -> None:
    limit = 3
    bff = start_bff(SIM_URL=sim.url, BFF_RATE_LIMIT_PER_MINUTE=str(limit))
    responses, started, ended = _burst_in_one_window(
        bff, sim, lambda desk: [desk.get(WHOAMI) for _ in range(limit + 4)]
    )
    assert [r.status_code for r in responses] == [200] * limit + [429] * 4
    for limited in responses[limit:]:
        _error(limited, 429, "RATE_LIMITED")
        # Retry-After: the seconds left in the window the burst was counted in.
        retry_after = int(limited.headers["retry-after"])
        assert 60 - int(ended) % 60 <= retry_after <= 60 - int(started) % 60


@pytest.fixture
def tier_down_desk(
    start_bff: ServiceFactory, sim: SimHandle, log_dir: Any
) -> Iterator[tuple[Desktop, ServiceProcess]]:
    """A signed-in desktop whose BFF then loses its session tier (a private redis-server)."""
    session_tier = PrivateRedis(log_dir)
    try:
        bff = start_bff(
            SIM_URL=sim.url, BFF_REDIS_SESSION_URL=session_tier.url, BFF_DEPENDENCY_TIMEOUT_S="0.5"
        )
        desk = Desktop(bff.url, sim.url, "fd.demo")
        assert desk.get(WHOAMI).status_code == 200
        session_tier.stop()
        yield desk, bff
    finally:
        session_tier.stop()


def test_session_tier_down_fails_mutations_not_reads(
    tier_down_desk: tuple[Desktop, ServiceProcess],
) -> None:
    desk, _ = tier_down_desk
    path = "/bff/backoffice/v1/_test/properties/prop-demo-1/mutate"
    _error(desk.post(path, json={}), 503, "CACHE_UNAVAILABLE")
    assert desk.get(WHOAMI).status_code == 200  # reads fall back


def test_a_replayed_proof_is_refused_while_the_session_tier_is_down(
    tier_down_desk: tuple[Desktop, ServiceProcess],
) -> None:
    desk, bff = tier_down_desk
    headers = _proof_headers(desk)
    assert desk.http.get(WHOAMI, headers=headers).status_code == 200  # reads fall back
    replay = desk.http.get(WHOAMI, headers=headers)
    assert "already used" in _error(replay, 401, "DPOP_INVALID")["message"]
    # The refresh route claims its proofs in the same store, with the same fallback.
    proof = desk.device.proof("POST", desk.bff_url + BFF_REFRESH_PATH)
    refreshed = desk.refresh_response(proof=proof)
    assert refreshed.status_code == 200, refreshed.text
    again = desk.refresh_response(proof=proof, refresh_token=refreshed.json()["refreshToken"])
    assert "already used" in _error(again, 401, "DPOP_INVALID")["message"]
    metrics = httpx.get(bff.url + "/metrics").text
    assert 'bff_auth_degraded_total{check="session_tier"}' in metrics


PUBLIC_URL = "https://desk.hotel.example"


def test_htu_is_checked_against_the_public_url(start_bff: ServiceFactory, sim: SimHandle) -> None:
    """Behind a load balancer the proof names the URL the desktop used (BFF_PUBLIC_URL), after
    RFC 3986 normalisation; the URL the request reached inside, or one a Host header claims,
    is refused."""
    bff = start_bff(SIM_URL=sim.url, BFF_PUBLIC_URL=PUBLIC_URL)
    desk = Desktop(bff.url, sim.url, "fd.demo")
    cases = {
        "public": (PUBLIC_URL + WHOAMI, None),
        "public, normalised": ("HTTPS://Desk.Hotel.EXAMPLE:443" + WHOAMI, None),
        "public, dot segments": (PUBLIC_URL + "/bff/backoffice/v1/x/../_test/whoami", None),
        "internal": (bff.url + WHOAMI, None),
        "public, other scheme": ("http://desk.hotel.example" + WHOAMI, None),
        "public, other port": (PUBLIC_URL + ":8443" + WHOAMI, None),
        "Host header": ("http://evil.example" + WHOAMI, "evil.example"),
    }
    seen = {}
    for name, (htu, host) in cases.items():
        headers = _proof_headers(desk, url=htu)
        if host:
            headers["Host"] = host
        seen[name] = desk.http.get(WHOAMI, headers=headers).status_code
    assert seen == {
        "public": 200,
        "public, normalised": 200,
        "public, dot segments": 200,
        "internal": 401,
        "public, other scheme": 401,
        "public, other port": 401,
        "Host header": 401,
    }


def _code_of(response: httpx.Response) -> str:
    if response.status_code < 400:
        return str(response.status_code)
    code: str = response.json()["error"]["code"]
    return code


def _forged_token_headers(desk: Desktop) -> dict[str, str]:
    """A token whose iam signature is broken, with a proof that is right for it."""
    assert desk.device.tokens is not None
    head, payload, sig = desk.device.tokens.access_token.split(".")
    forged = f"{head}.{payload}.{sig[:-6]}AAAAAA"
    headers = _proof_headers(desk, access_token=forged)
    headers["Authorization"] = f"DPoP {forged}"
    return headers


def test_order_of_checks_when_two_fail(
    bff: ServiceProcess, sim: SimHandle, redis_prefix: str
) -> None:
    """Each request fails two checks; the contract's table order says which one answers."""
    _set_floor(redis_prefix, "1.2.0")
    old = {"X-App-Version": "1.0.0"}
    demo = Desktop(bff.url, sim.url, "fd.demo")
    susp = Desktop(bff.url, sim.url, "fd.susp", tenant="tnt-suspended")
    mutate = "/bff/backoffice/v1/_test/properties/prop-demo-2/mutate"
    heartbeat = "/bff/backoffice/v1/devices/dev-someone-else/heartbeat"
    cases: dict[str, tuple[Callable[[], httpx.Response], str]] = {
        "no Authorization + bad proof": (
            lambda: demo.http.get(WHOAMI, headers={"DPoP": "a.b.c", **old}),
            "SESSION_REQUIRED",
        ),
        "bad proof + suspended": (
            lambda: susp.http.get(WHOAMI, headers=_proof_headers(susp, method="POST")),
            "DPOP_INVALID",
        ),
        "bad proof + no version": (
            lambda: demo.http.get(
                WHOAMI, headers=_without(_proof_headers(demo, method="POST"), "X-App-Version")
            ),
            "DPOP_INVALID",
        ),
        "bad token signature + suspended": (
            lambda: susp.http.get(WHOAMI, headers=_forged_token_headers(susp)),
            "SESSION_EXPIRED",
        ),
        "device mismatch + suspended": (
            lambda: susp.post(heartbeat, json={"appVersion": APP_VERSION}),
            "DEVICE_MISMATCH",
        ),
        "device mismatch + property out of scope": (
            lambda: demo.post(mutate, json={"deviceId": "dev-x"}),
            "DEVICE_MISMATCH",
        ),
        "suspended + property out of scope": (
            lambda: susp.get(WHOAMI, params={"propertyId": "prop-demo-1"}),
            "TENANT.SUSPENDED",
        ),
        "suspended + below floor": (lambda: susp.get(WHOAMI, headers=old), "TENANT.SUSPENDED"),
        "suspended + no version": (
            lambda: susp.http.get(
                WHOAMI, headers=_without(susp.headers("GET", WHOAMI), "X-App-Version")
            ),
            "TENANT.SUSPENDED",
        ),
        "property out of scope + below floor": (
            lambda: demo.get(WHOAMI, params={"propertyId": "prop-demo-2"}, headers=old),
            "PROPERTY_OUT_OF_SCOPE",
        ),
        "suspended + refresh proof for another URL": (
            lambda: susp.refresh_response(proof=susp.device.proof("POST", bff.url + WHOAMI)),
            "DPOP_INVALID",
        ),
        "suspended + refresh without version": (
            lambda: susp.refresh_response(omit=("X-App-Version",)),
            "TENANT.SUSPENDED",
        ),
    }
    seen = {name: _code_of(call()) for name, (call, _) in cases.items()}
    assert seen == {name: code for name, (_, code) in cases.items()}


def test_a_replayed_proof_of_a_signed_out_session_is_a_replay(desk: Desktop) -> None:
    """The replay and the revocation come from one session-tier round trip; the replay wins."""
    headers = _proof_headers(desk)
    assert desk.http.get(WHOAMI, headers=headers).status_code == 200
    assert desk.post("/bff/backoffice/v1/auth/sign-out").status_code == 200
    _error(desk.get(WHOAMI), 401, "SESSION_EXPIRED")
    _error(desk.http.get(WHOAMI, headers=headers), 401, "DPOP_INVALID")


def test_order_of_checks_at_the_end_of_the_chain(
    start_bff: ServiceFactory, sim: SimHandle, redis_prefix: str, log_dir: Any
) -> None:
    """CACHE_UNAVAILABLE after PROPERTY_OUT_OF_SCOPE, SYNC.VERSION_BLOCKED after it, and the
    rate limit last."""
    _set_floor(redis_prefix, "1.2.0")
    old = {"X-App-Version": "1.0.0"}
    session_tier = PrivateRedis(log_dir)
    try:
        bff = start_bff(
            SIM_URL=sim.url,
            BFF_REDIS_SESSION_URL=session_tier.url,
            BFF_DEPENDENCY_TIMEOUT_S="0.5",
            BFF_RATE_LIMIT_PER_MINUTE="1",
        )
        (first, below_floor, limited), _, _ = _burst_in_one_window(
            bff,
            sim,
            lambda desk: [desk.get(WHOAMI), desk.get(WHOAMI, headers=old), desk.get(WHOAMI)],
        )
        assert [_code_of(r) for r in (first, below_floor, limited)] == [
            "200",
            "SYNC.VERSION_BLOCKED",  # over the limit too, but the floor answers first
            "RATE_LIMITED",
        ]
        desk = Desktop(bff.url, sim.url, "fd.demo")
        session_tier.stop()
        out_of_scope = "/bff/backoffice/v1/_test/properties/prop-demo-2/mutate"
        in_scope = "/bff/backoffice/v1/_test/properties/prop-demo-1/mutate"
        _error(desk.post(out_of_scope, json={}), 403, "PROPERTY_OUT_OF_SCOPE")
        _error(desk.post(in_scope, json={}, headers=old), 503, "CACHE_UNAVAILABLE")
        _error(desk.get(WHOAMI, headers=old), 426, "SYNC.VERSION_BLOCKED")  # a read: no 503
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
