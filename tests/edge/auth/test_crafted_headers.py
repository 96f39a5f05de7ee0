"""Crafted proof and token headers are refused with the contract's 401 envelope, never a 500:
each case that once escaped as an exception, sent on its own (the hostile-input fuzz test in
tests/edge/http/ sends them among many others)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from jwcrypto import jwk
from jwcrypto.jws import JWSCore

from edge.auth.dpop import ath_for
from tests.edge.auth.conftest import refused
from tests.support.desktop import APP_VERSION, Desktop

WHOAMI = "/bff/backoffice/v1/_test/whoami"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(key: jwk.JWK, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A compact ES256 JWS with exactly ``header`` (jwcrypto refuses to sign a header with an
    unknown critical parameter; a client need not)."""
    signed = JWSCore("ES256", key, json.dumps(header), json.dumps(claims).encode()).sign()
    return f"{signed['protected']}.{signed['payload'].decode()}.{signed['signature']}"


def _proof(desk: Desktop, token: str, **changes: Any) -> str:
    header: dict[str, Any] = {
        "alg": "ES256",
        "typ": "dpop+jwt",
        "jwk": desk.device.public_jwk(),
        **changes.pop("header", {}),
    }
    claims = {
        "jti": uuid.uuid4().hex,
        "htm": "GET",
        "htu": desk.bff_url + WHOAMI,
        "iat": int(time.time()),
        "ath": ath_for(token) if token.isascii() else "x",
        **changes,
    }
    return _signed(desk.device.key, header, claims)


def _token(desk: Desktop) -> str:
    assert desk.device.tokens is not None
    return desk.device.tokens.access_token


def _crit_proof(desk: Desktop) -> tuple[str, str]:
    token = _token(desk)
    return token, _proof(desk, token, header={"crit": ["exp"], "exp": 1})


def _crit_token(desk: Desktop) -> tuple[str, str]:
    """iam's token re-signed (by the device key) with an unknown critical header."""
    original = _token(desk)
    header = json.loads(base64.urlsafe_b64decode(original.split(".")[0] + "=="))
    claims = json.loads(base64.urlsafe_b64decode(original.split(".")[1] + "=="))
    token = _signed(desk.device.key, {**header, "crit": ["zzz"], "zzz": True}, claims)
    return token, _proof(desk, token)


def _non_ascii_ath(desk: Desktop) -> tuple[str, str]:
    token = _token(desk)
    return token, _proof(desk, token, ath="é" * 43)


def _non_ascii_token(desk: Desktop) -> tuple[str, str]:
    token = _token(desk)[:-2] + "éé"
    return token, _proof(desk, _token(desk))


def _repeated_header(desk: Desktop) -> tuple[str, str]:
    """The proof in the flattened JSON serialisation, ``typ`` both protected and not."""
    token = _token(desk)
    protected, payload, signature = _proof(desk, token).split(".")
    flattened = {
        "protected": protected,
        "header": {"typ": "dpop+jwt", "note": ".."},
        "payload": payload,
        "signature": signature,
    }
    return token, json.dumps(flattened)


def _non_ascii_proof(desk: Desktop) -> tuple[str, str]:
    token = _token(desk)
    return token, _proof(desk, token)[:-2] + "éé"


Case = Callable[[Desktop], tuple[str, str]]
CASES: dict[str, tuple[Case, str]] = {
    "unknown-crit-in-proof": (_crit_proof, "DPOP_INVALID"),
    "unknown-crit-in-token": (_crit_token, "SESSION_EXPIRED"),
    "non-ascii-ath": (_non_ascii_ath, "DPOP_INVALID"),
    "non-ascii-token": (_non_ascii_token, "DPOP_INVALID"),
    "header-repeated-unprotected": (_repeated_header, "DPOP_INVALID"),
    "non-ascii-proof": (_non_ascii_proof, "DPOP_INVALID"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_headers_are_refused_with_the_envelope(desk: Desktop, case: str) -> None:
    make, code = CASES[case]
    token, proof = make(desk)
    headers = {  # bytes: a header value may hold any Latin-1 character
        b"Authorization": f"DPoP {token}".encode("latin-1"),
        b"DPoP": proof.encode("latin-1"),
        b"X-App-Version": APP_VERSION.encode(),
    }
    answer = desk.http.get(WHOAMI, headers=headers)
    body = refused(answer, 401, code)
    assert body["requestId"] and body["retryable"] is False
