"""Hostile headers and bodies never produce a 500 or a stack trace: every answer is the
contract's envelope with a 4xx code."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx
import msgspec
import pytest
import redis
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jwcrypto import jwk

from edge.admin import api as admin_api
from edge.auth.dpop import ath_for
from tests.support.desktop import Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.procs import ServiceProcess, free_port
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


@pytest.mark.parametrize(
    ("target", "extra"),
    [
        ("whoami", {"jti": b'"\xff"'}),  # was a 500: UnicodeDecodeError out of the decoder
        ("refresh", {"jti": b'"\xff"'}),
        ("whoami", {"note": b'"\xff"'}),  # was accepted: an unknown claim was never read
        ("whoami", {"note": b"[" * 40 + b"]" * 40}),
    ],
)
def test_signed_proof_whose_claims_are_not_json_text_is_dpop_invalid(
    hostile_bff: ServiceProcess, sim: SimHandle, target: str, extra: dict[str, bytes]
) -> None:
    """A proof signed by the device's own key (so every earlier check passes) whose claims are
    not UTF-8, or nest too deep, is refused like any other bad proof: 401 DPOP_INVALID."""
    desk = Desktop(hostile_bff.url, sim.url, "fd.demo")
    method, path, body = PATHS[target]
    url = desk.bff_url + path
    assert desk.device.tokens is not None
    token = desk.device.tokens.access_token
    claims = {"jti": f'"{uuid.uuid4().hex}"'.encode(), "htm": f'"{method}"'.encode()}
    claims |= {"htu": json.dumps(url).encode(), "iat": str(int(time.time())).encode()}
    if target != "refresh":
        claims["ath"] = f'"{ath_for(token)}"'.encode()
    claims |= extra
    payload = b"{" + b",".join(b'"' + k.encode() + b'":' + v for k, v in claims.items()) + b"}"
    header = {"alg": "ES256", "typ": "dpop+jwt", "jwk": desk.device.key.export_public(as_dict=True)}
    signing_input = f"{_segment(header)}.{_b64(payload)}"
    proof = f"{signing_input}.{_es256(desk.device.key, signing_input)}"
    headers = {"DPoP": proof, "X-App-Version": "1.4.0"}
    if target != "refresh":
        headers["Authorization"] = f"DPoP {token}"
    response = desk.http.request(method, path, headers=headers, json=body)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "DPOP_INVALID"
    assert "Traceback" not in hostile_bff.output()


# --- Hostile bytes at every route that takes a body or a query -----------------------------
#
# Every route that takes a body (every POST: the auth chain reads it too) or a query, found in
# the public app's /openapi.json and the admin app's route table, gets hostile bytes: nesting
# far past any schema, invalid UTF-8, NUL, numbers no type holds, duplicate keys, wrong types,
# truncated JSON, a BOM, other media types; in the query, the path and a few headers too; with
# a valid DPoP-signed session and without. Never a 5xx, always the envelope (and, from the
# public app, an X-Request-Id), never a traceback in the log.

DEEP = [b"[" * n + b"]" * n for n in (33, 1_000, 100_000)] + [b"{" * 40 + b"}" * 40]
HOSTILE_JSON = [
    *DEEP,
    b'"\xff"',  # invalid UTF-8 inside a string
    b'"\xed\xa0\x80"',  # an encoded surrogate
    b'"\\ud800"',  # a lone surrogate, escaped
    b'"a\x00b"',  # a raw NUL
    b'"\\u0000"',
    b"1e999999",
    b"-1e999999",
    b"1" + b"0" * 5000,  # 10**5000
    b"-" + b"9" * 5000,
    b"NaN",
    b"Infinity",
    b"1.5",
    b"-1",
    b"4294967296",
    b"true",
    b"null",
    b"[]",
    b"{}",
    b'"' + b"a" * 5000 + b'"',
    b'"1.4.0"',
    b'"0.0.1"',
    b'"2026-01-01T00:00:00Z"',
    b'"prop-demo-1"',
    b'"dev-1"',
    b'"rt_not-issued"',
    b'"device"',
    b'"heartbeat"',
]
HOSTILE_KEYS = [b"\xff", b"a\x00b", b"\\u0000", b"", b"__proto__", b"type"]
QUERY_VALUES = [
    b"1e999999",
    b"1" + b"0" * 5000,
    b"-1",
    b"0",
    b"1",
    b"nan",
    b"inf",
    b"",
    b"%FF",
    b"%00",
    b"%C0%AF",
    b"%D9%A3",  # an Arabic-Indic digit
    b"2026-02-30",
    b"2026-01-01",
    b"prop-demo-1",
    b"prop-demo-2",
    b"x" * 3000,
    b"true",
    b"%5B%5D",
]
PATH_VALUES = ["%FF", "%00", "a" * 300, "..", "%2F", "%20", "prop-demo-2", "dev-other"]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/merge-patch+json",
    "",
]
BOM = b"\xef\xbb\xbf"
HOSTILE_HEADERS = ["Idempotency-Key", "X-MFA-Attestation", "Accept", "X-App-Version"]
ENVELOPE = {"code", "message", "requestId", "retryable"}


class Route(NamedTuple):
    app: str  # "public" or "admin"
    method: str
    path: str  # as in the OpenAPI document: ``/devices/{deviceId}/heartbeat``
    query: tuple[str, ...]  # its query parameters
    fields: tuple[str, ...]  # its body's members


class Probe(NamedTuple):
    route: Route
    signed: bool  # with the device's DPoP-bound session (a fresh proof)
    path_value: str | None  # every path parameter set to this, or to a valid value
    query: bytes
    body: bytes | None
    content_type: str | None
    header: tuple[str, str] | None


def _fields(document: dict[str, Any], schema: dict[str, Any]) -> tuple[str, ...]:
    ref = schema.get("$ref", "")
    if ref:
        schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return tuple(schema.get("properties", {}))


def _public_routes(document: dict[str, Any]) -> list[Route]:
    routes = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            parameters = operation.get("parameters", [])
            query = tuple(p["name"] for p in parameters if p.get("in") == "query")
            content = operation.get("requestBody", {}).get("content", {})
            fields: tuple[str, ...] = ()
            for media in content.values():
                fields += _fields(document, media.get("schema", {}))
            if query or content or method != "get":
                routes.append(Route("public", method.upper(), path, query, fields))
    return routes


def _admin_routes() -> list[Route]:
    routes = []
    for spec, _ in admin_api.routes:
        query = _struct_fields(spec.query)
        fields = _struct_fields(spec.body)
        if spec.query is not None or spec.body is not None or spec.method != "GET":
            routes.append(Route("admin", spec.method, spec.path, query, fields))
    return routes


def _struct_fields(model: type[msgspec.Struct] | None) -> tuple[str, ...]:
    return tuple(f.encode_name for f in msgspec.structs.fields(model)) if model else ()


def _json_object(members: list[tuple[bytes, bytes]]) -> bytes:
    return b"{" + b",".join(b'"' + key + b'":' + value for key, value in members) + b"}"


def _bodies(route: Route) -> st.SearchStrategy[bytes]:
    names = [name.encode() for name in route.fields]
    key = st.sampled_from(names + names + HOSTILE_KEYS) | st.binary(max_size=6)
    value = st.sampled_from(HOSTILE_JSON) | st.binary(max_size=12).map(lambda b: b'"' + b + b'"')
    member = st.tuples(key, value)
    obj = st.lists(member, max_size=4).map(_json_object)
    duplicate = st.tuples(key, value, value).map(lambda t: _json_object([(t[0], t[1]), t[0:3:2]]))
    return st.one_of(
        obj,
        duplicate,
        st.sampled_from(HOSTILE_JSON),
        obj.flatmap(lambda b: st.integers(0, max(len(b) - 1, 0)).map(lambda i: b[:i])),
        obj.map(lambda b: BOM + b),
        st.binary(max_size=300),
    )


def _queries(route: Route) -> st.SearchStrategy[bytes]:
    names = [name.encode() for name in route.query]
    name = st.sampled_from(names + names + [b"x", b"propertyId", b"%FF", b""])
    value = st.sampled_from(QUERY_VALUES) | st.binary(max_size=12).map(
        lambda b: urllib.parse.quote_from_bytes(b).encode()
    )
    pairs = st.lists(st.tuples(name, value), max_size=4)
    return pairs.map(lambda ps: b"&".join(k + b"=" + v for k, v in ps))


def _probes(routes: list[Route]) -> st.SearchStrategy[Probe]:
    def for_route(route: Route) -> st.SearchStrategy[Probe]:
        takes_body = route.method != "GET"
        return st.builds(
            Probe,
            route=st.just(route),
            signed=st.booleans(),
            path_value=(st.none() | st.sampled_from(PATH_VALUES))
            if "{" in route.path
            else st.none(),
            query=_queries(route),
            body=_bodies(route) if takes_body else st.none(),
            content_type=st.sampled_from(CONTENT_TYPES) if takes_body else st.none(),
            header=st.none() | st.tuples(st.sampled_from(HOSTILE_HEADERS), header_text),
        )

    return st.sampled_from(routes).flatmap(for_route)


def _path(probe: Probe, desk: Desktop) -> str:
    valid = {"deviceId": desk.device_id, "propertyId": "prop-demo-1", "kind": "device"}
    valid |= {"tenant": "tnt-demo", "actor_id": desk.device_id}

    def fill(match: re.Match[str]) -> str:
        return probe.path_value or valid.get(match[1], "x")

    return re.sub(r"\{([^}]+)\}", fill, probe.route.path)


def _hostile_request(probe: Probe, desk: Desktop, bases: dict[str, str]) -> httpx.Response:
    path = _path(probe, desk)
    headers: dict[str, str] = {}
    if probe.signed:
        headers |= desk.headers(probe.route.method, path)
    if probe.content_type is not None:
        headers["Content-Type"] = probe.content_type
    if probe.header is not None:
        headers[probe.header[0]] = probe.header[1]
    encoded = {k.encode(): v.strip().encode("latin-1") for k, v in headers.items()}
    url = httpx.URL(bases[probe.route.app] + path).copy_with(query=probe.query or None)
    sent = desk.http.build_request(probe.route.method, url, content=probe.body, headers=encoded)
    response = desk.http.send(sent, stream=True)
    try:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            # An opened stream never ends by itself: its first frame is the answer.
            first = next(response.iter_raw(), b"")
            assert first.startswith(b"retry: "), (probe, first)
            return httpx.Response(response.status_code, headers=response.headers, content=first)
        response.read()
        return response
    finally:
        response.close()


def test_hostile_bytes_at_every_route_never_crash(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    admin_port = free_port()
    bff = start_bff(SIM_URL=sim.url, BFF_ADMIN_PORT=str(admin_port))
    bases = {"public": bff.url, "admin": f"http://127.0.0.1:{admin_port}"}
    document = httpx.get(bff.url + "/openapi.json").json()
    routes = _public_routes(document) + _admin_routes()
    by_path = {(r.method, r.path): r for r in routes}
    heartbeat = by_path["POST", "/bff/backoffice/v1/devices/{deviceId}/heartbeat"]
    sign_out = by_path["POST", "/bff/backoffice/v1/auth/sign-out"]
    refresh = by_path["POST", "/bff/backoffice/v1/auth/refresh"]
    assert {r.app for r in routes} == {"public", "admin"}
    assert any(r.query for r in routes) and any(r.fields for r in routes)
    desk = Desktop(bff.url, sim.url, "fd.demo")
    seen: Counter[str] = Counter()

    def issue(route: Route, body: bytes) -> Probe:
        """The hostile run's requests (issue #10): authenticated, JSON, this body."""
        return Probe(route, True, None, b"", body, "application/json", None)

    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(probe=_probes(routes))
    @example(probe=issue(heartbeat, b"[" * 1000 + b"]" * 1000))
    @example(probe=issue(heartbeat, b"[" * 100_000 + b"]" * 100_000))
    @example(probe=issue(heartbeat, b'{"appVersion":"1.4.0","syncCursor":"\xff"}'))
    @example(probe=issue(sign_out, b"[" * 1000 + b"]" * 1000))
    @example(probe=issue(sign_out, b'{"deviceId":"\xff"}'))
    @example(probe=issue(refresh, b"[" * 100_000 + b"]" * 100_000))
    @example(probe=issue(refresh, b'{"refreshToken":"\xff"}'))
    def probe_route(probe: Probe) -> None:
        response = _hostile_request(probe, desk, bases)
        assert response.status_code < 500, (probe, response.text, bff.output()[-3000:])
        if probe.route.app == "public":
            assert response.headers.get("x-request-id"), probe
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == ENVELOPE, (probe, response.text)
            seen[error["code"]] += 1
        else:
            seen[str(response.status_code)] += 1
        if probe.route == sign_out and response.status_code == 200:
            desk.device.sign_in("fd.demo")  # signed out: the next probes need a session

    try:
        probe_route()
    finally:
        desk.close()
    log = bff.output()
    assert "Traceback" not in log and "unhandled" not in log
    # The probes got past the auth chain and the media type, to the decoders and beyond.
    assert {"VALIDATION_FAILED", "UNSUPPORTED_MEDIA_TYPE", "200"} <= set(seen), seen
