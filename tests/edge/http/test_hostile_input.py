"""Hostile headers and bodies never produce a 500 or a stack trace: every answer is the
contract's envelope with a 4xx code."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx
import pytest
import redis
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jwcrypto import jwk

from edge.auth.dpop import ath_for
from tests.support.desktop import Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.procs import ServiceProcess
from tests.support.sim import SimHandle

WHOAMI = "/bff/backoffice/v1/_test/whoami"
HEARTBEAT = "/bff/backoffice/v1/devices/dev-1/heartbeat"
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), min_size=0, max_size=600
)


@pytest.fixture
def hostile_bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url)


def _assert_clean_refusal(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert set(body["error"]) == {"code", "message", "requestId", "retryable"}
    assert "Traceback" not in response.text


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(authorization=header_text, proof=header_text, version=header_text)
def test_random_auth_headers_are_refused_cleanly(
    hostile_bff: ServiceProcess, authorization: str, proof: str, version: str
) -> None:
    headers = {"Authorization": authorization, "DPoP": proof, "X-App-Version": version}
    # h11 itself refuses surrounding whitespace on the client side; everything else goes out.
    encoded = {k.encode(): v.strip().encode("latin-1") for k, v in headers.items()}
    response = httpx.get(hostile_bff.url + WHOAMI, headers=encoded)
    _assert_clean_refusal(response)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.binary(max_size=2000),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/json; charset=utf-8", "", "x/y"]
    ),
)
def test_random_bodies_are_refused_cleanly(
    hostile_bff: ServiceProcess, body: bytes, content_type: str
) -> None:
    response = httpx.post(
        hostile_bff.url + "/_test/echo", content=body, headers={"content-type": content_type}
    )
    _assert_clean_refusal(response)


def test_oversized_headers_do_not_crash(hostile_bff: ServiceProcess) -> None:
    response = httpx.get(
        hostile_bff.url + WHOAMI, headers={"Authorization": "DPoP " + "a" * 20_000}
    )
    assert response.status_code in (400, 401, 413, 431)
    assert httpx.get(hostile_bff.url + "/health/live").status_code == 200


# --- JWT-shaped proofs and tokens ----------------------------------------------------------
#
# Random header text almost never gets past the first check (a proof must be a compact JWS).
# These examples are built like the real thing (three base64url segments, JSON header and
# claims, often signed for real) with one or a few parts changed, so they reach the later
# checks: signature, claims, htm/htu, iat, ath, the token, the key binding, the replay store,
# the device/property scope, the app-version floor, and the refresh route's iam calls.

DROP = "@drop"  # remove the member
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
HEADER_CHOICES: dict[str, st.SearchStrategy[Any]] = {
    "typ": st.sampled_from(["dpop+jwt", "JWT", "at+jwt", "DPOP+JWT", DROP]),
    "alg": st.sampled_from(["ES256", "ES384", "PS256", "EdDSA", "none", "HS256", "RS256", DROP]),
    "jwk": st.sampled_from(["@device", "@other", "@private", "@oct", "@rsa-1024", DROP]),
    "crit": st.sampled_from([["exp"], [], "b64", DROP]),
    "b64": st.booleans(),
    "kid": st.text(max_size=20),
}
CLAIM_CHOICES: dict[str, st.SearchStrategy[Any]] = {
    "jti": st.sampled_from(["@fresh", "short", "@reused", "x" * 300, DROP]),
    "htm": st.sampled_from(["@method", "GET", "POST", "get", "PUT", DROP]),
    "htu": st.sampled_from(
        ["@url", "@url?x=1", "@url#f", "@URL", "@url/", "@internal-other-port", "@evil", DROP]
    ),
    "iat": st.one_of(
        st.sampled_from(["@now", DROP]),
        st.integers(min_value=-120, max_value=120).map(lambda d: f"@now{d:+d}"),
    ),
    "ath": st.sampled_from(["@ath", "@ath-other", "é" * 43, "", DROP]),
    "nonce": st.text(max_size=10),
}
PATHS = {
    "whoami": ("GET", WHOAMI, None),
    "scoped": ("GET", WHOAMI + "?propertyId=prop-demo-2", None),
    "heartbeat": ("POST", HEARTBEAT, {"appVersion": "1.4.0"}),
    "mutate": ("POST", "/bff/backoffice/v1/_test/properties/prop-demo-1/mutate", {}),
    "refresh": ("POST", "/bff/backoffice/v1/auth/refresh", {"refreshToken": "rt_not-issued"}),
}


def _changes(choices: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Up to three members changed: a plausible wrong value, any JSON value, or removed; and
    sometimes a member nobody expects."""
    member = st.sampled_from(sorted(choices)).flatmap(  # plausible values twice as often
        lambda name: st.tuples(st.just(name), st.one_of(choices[name], choices[name], json_value))
    )
    unexpected = st.tuples(st.text(max_size=6), json_value)
    return st.lists(member | unexpected, max_size=3).map(dict)


class Recipe(NamedTuple):
    target: str
    header: dict[str, Any]
    claims: dict[str, Any]
    signer: str  # device key, another key, garbage bytes, none, the device's truncated
    token: str  # the real one; re-signed with changed claims or a `crit` header; garbage; none
    token_claims: dict[str, Any]
    version: str | None


recipes = st.builds(
    Recipe,
    target=st.sampled_from(sorted(PATHS)),
    header=_changes(HEADER_CHOICES),
    claims=_changes(CLAIM_CHOICES),
    # Mostly the real key and token, so that the other changes are what gets judged.
    signer=st.sampled_from(["device"] * 4 + ["other", "garbage", "empty", "truncated"]),
    token=st.sampled_from(["real"] * 4 + ["resigned", "crit", "garbage", "none"]),
    token_claims=st.dictionaries(
        st.sampled_from(["sub", "tid", "pids", "did", "sid", "cnf", "exp", "iss", "aud", "role"]),
        json_value,
        max_size=2,
    ),
    version=st.one_of(st.sampled_from(["1.4.0", "0.0.1", "99.0.0"]), st.none(), header_text),
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: Any) -> str:
    return _b64(json.dumps(value).encode())


def _es256(key: jwk.JWK, signing_input: str) -> str:
    """A real ES256 signature over whatever the header says (jwcrypto would refuse to sign a
    header naming another algorithm; the server must refuse to verify it)."""
    der = key.get_op_key("sign").sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


class Keys(NamedTuple):
    device: jwk.JWK
    other: jwk.JWK
    oct: jwk.JWK
    rsa_1024: jwk.JWK


def _resolve(value: Any, keys: Keys, url: str, method: str, token: str) -> Any:
    """A recipe's placeholder (``@…``) as the value it stands for in this example; any other
    value as it is."""
    if not isinstance(value, str) or not value.startswith("@"):
        return value
    offset = re.fullmatch(r"@now([+-]\d+)?", value)
    if offset:
        return int(time.time()) + int(offset[1] or 0)
    fixed: dict[str, Any] = {
        "@device": keys.device.export_public(as_dict=True),
        "@other": keys.other.export_public(as_dict=True),
        "@private": keys.device.export_private(as_dict=True),
        "@oct": keys.oct.export(as_dict=True),
        "@rsa-1024": keys.rsa_1024.export_public(as_dict=True),
        "@fresh": uuid.uuid4().hex,
        "@reused": "0123456789abcdef0123456789abcdef",
        "@method": method,
        "@url": url,
        "@url?x=1": url + "?x=1",
        "@url#f": url + "#f",
        "@URL": url.upper(),
        "@url/": url + "/",
        "@internal-other-port": url.replace("127.0.0.1:", "127.0.0.1:1"),
        "@evil": "https://evil.example/bff/backoffice/v1/_test/whoami",
        "@ath": ath_for(token) if token.isascii() else "",
        "@ath-other": ath_for("another-token"),
    }
    return fixed.get(value, value)


def _apply(base: dict[str, Any], changes: dict[str, Any], resolve: Callable[[Any], Any]) -> None:
    for name, value in changes.items():
        if value == DROP:
            base.pop(name, None)
        else:
            base[name] = resolve(value)


def _access_token(recipe: Recipe, desk: Desktop, keys: Keys) -> str | None:
    assert desk.device.tokens is not None
    real = desk.device.tokens.access_token
    if recipe.token == "none":
        return None
    if recipe.token == "real":
        return real
    if recipe.token == "garbage":
        return f"{_segment(recipe.token_claims)}.{_segment(recipe.version)}.{_b64(b'sig')}"
    # Re-signed by the device key: iam's header (its kid), maybe with an unknown critical
    # extension, and iam's claims with some changed.
    head, payload, _ = real.split(".")
    header, claims = _decoded(head), _decoded(payload)
    if recipe.token == "crit":
        header["crit"] = ["exp"]
    claims.update(recipe.token_claims)
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    return f"{signing_input}.{_es256(keys.device, signing_input)}"


def _decoded(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


def _proof(recipe: Recipe, keys: Keys, url: str, method: str, token: str) -> str:
    header: dict[str, Any] = {"alg": "ES256", "typ": "dpop+jwt", "jwk": "@device"}
    claims: dict[str, Any] = {"jti": "@fresh", "htm": method, "htu": url, "iat": "@now"}
    if token and recipe.target != "refresh":
        claims["ath"] = "@ath"

    def resolve(value: Any) -> Any:
        return _resolve(value, keys, url, method, token)

    header = {k: resolve(v) for k, v in header.items()}
    claims = {k: resolve(v) for k, v in claims.items()}
    _apply(header, recipe.header, resolve)
    _apply(claims, recipe.claims, resolve)
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    return f"{signing_input}.{_signature(recipe.signer, keys, signing_input)}"


def _signature(signer: str, keys: Keys, signing_input: str) -> str:
    if signer == "device":
        return _es256(keys.device, signing_input)
    if signer == "other":
        return _es256(keys.other, signing_input)
    if signer == "truncated":
        return _es256(keys.device, signing_input)[:-4]
    if signer == "garbage":
        return _b64(uuid.uuid4().bytes * 4)
    return ""


def _send(recipe: Recipe, desk: Desktop, keys: Keys) -> httpx.Response:
    method, path, body = PATHS[recipe.target]
    url = desk.bff_url + path.split("?", 1)[0]
    token = _access_token(recipe, desk, keys)
    headers = {"DPoP": _proof(recipe, keys, url, method, token or "")}
    if token is not None:
        headers["Authorization"] = f"DPoP {token}"
    if recipe.version is not None:
        headers["X-App-Version"] = recipe.version
    encoded = {k.encode(): v.strip().encode("latin-1") for k, v in headers.items()}
    return desk.http.request(method, path, headers=encoded, json=body)


def _outcome(response: httpx.Response) -> str:
    """The response's error code (or its status), after checking it is no crash."""
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code < 400:
        return str(response.status_code)
    body = response.json()
    assert set(body["error"]) == {"code", "message", "requestId", "retryable"}
    assert "Traceback" not in response.text
    code: str = body["error"]["code"]
    return code


def _valid_but(**changes: Any) -> Recipe:
    """A recipe for a request that passes every check, but for ``changes``."""
    valid = Recipe("whoami", {}, {}, "device", "real", {}, "1.4.0")
    return valid._replace(**changes)


def test_jwt_shaped_auth_is_refused_cleanly_at_every_check(
    hostile_bff: ServiceProcess, sim: SimHandle, redis_prefix: str
) -> None:
    floor = redis.Redis.from_url(REDIS_URL)
    floor.hset(f"{redis_prefix}:_global:flags", "appVersionFloor", "1.0.0")
    floor.close()
    desk = Desktop(hostile_bff.url, sim.url, "fd.demo")
    keys = Keys(
        desk.device.key,
        jwk.JWK.generate(kty="EC", crv="P-256"),
        jwk.JWK.generate(kty="oct", size=256),
        jwk.JWK.generate(kty="RSA", size=1024),
    )
    seen: Counter[str] = Counter()

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(recipe=recipes)
    # Past 500s, always tried: an unknown critical header in a signed proof or token, and a
    # non-ASCII ``ath`` in a signed proof (hmac.compare_digest refuses such str).
    @example(recipe=_valid_but(header={"crit": ["exp"]}))
    @example(recipe=_valid_but(token="crit"))
    @example(recipe=_valid_but(claims={"ath": "é" * 43}))
    def probe(recipe: Recipe) -> None:
        seen[_outcome(_send(recipe, desk, keys))] += 1

    probe()
    # The examples got past the proof's shape: to the token, the scopes, the floor, iam.
    assert {"DPOP_INVALID", "SESSION_EXPIRED", "200"} <= set(seen), seen
    assert {"DEVICE_MISMATCH", "PROPERTY_OUT_OF_SCOPE", "SYNC.VERSION_BLOCKED"} & set(seen), seen
