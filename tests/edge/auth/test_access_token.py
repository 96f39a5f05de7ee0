"""Access tokens: only iam's keys, ES256, our issuer and audience, not expired; key rotation."""

import json
import time
import uuid
from typing import Any

import pytest
from jwcrypto import jwk, jws

from edge.auth.tokens import KeySet, TokenRejected, TokenVerifier
from schemas.upstream.iam import AUDIENCE, ISSUER, Jwk, Jwks


def _key(kid: str) -> jwk.JWK:
    return jwk.JWK.generate(kty="EC", crv="P-256", kid=kid)


def _jwks(*keys: jwk.JWK) -> Jwks:
    return Jwks(keys=[Jwk(**k.export_public(as_dict=True)) for k in keys])


def _token(key: jwk.JWK, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "op-1",
        "tid": "tnt-demo",
        "pids": ["prop-demo-1"],
        "role": "front_desk",
        "did": "dev-1",
        "sid": "ses-1",
        "cnf": {"jkt": "abc"},
        "iat": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
    }
    header: dict[str, Any] = {"alg": "ES256", "typ": "at+jwt", "kid": key.get("kid")}
    header.update(overrides.pop("header", {}))
    claims.update(overrides)
    token = jws.JWS(json.dumps(claims).encode())
    token.add_signature(key, alg=header["alg"], protected=json.dumps(header))
    compact: str = token.serialize(compact=True)
    return compact


class Iam:
    """A stand-in for iam's JWKS endpoint (the seam under test is the verifier)."""

    def __init__(self, *keys: jwk.JWK) -> None:
        self.keys = list(keys)
        self.fetches = 0

    async def fetch(self) -> Jwks:
        self.fetches += 1
        return _jwks(*self.keys)


async def test_valid_token() -> None:
    key = _key("k1")
    verifier = TokenVerifier(KeySet(Iam(key).fetch), issuer=ISSUER, audience=AUDIENCE)
    claims = await verifier.verify(_token(key), now=time.time())
    assert claims.tid == "tnt-demo" and claims.cnf is not None and claims.cnf.jkt == "abc"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"iss": "https://evil"}, "not issued"),
        ({"aud": "other-bff"}, "not issued"),
        ({"iat": int(time.time()) + 600}, "future"),
        ({"role": "admin"}, "claims"),
    ],
)
async def test_rejected_claims(overrides: dict[str, Any], reason: str) -> None:
    key = _key("k1")
    verifier = TokenVerifier(KeySet(Iam(key).fetch), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(TokenRejected, match=reason):
        await verifier.verify(_token(key, **overrides), now=time.time())


async def test_token_without_cnf_verifies_but_carries_no_binding() -> None:
    key = _key("k1")
    verifier = TokenVerifier(KeySet(Iam(key).fetch), issuer=ISSUER, audience=AUDIENCE)
    claims = await verifier.verify(_token(key, cnf=None), now=time.time())
    assert claims.cnf is None  # the auth chain refuses it as not DPoP-bound


async def test_token_signed_by_a_foreign_key_with_a_known_kid() -> None:
    key, forger = _key("k1"), _key("k1")
    verifier = TokenVerifier(KeySet(Iam(key).fetch), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(TokenRejected, match="signature"):
        await verifier.verify(_token(forger), now=time.time())


async def test_embedded_jwk_is_never_trusted() -> None:
    key, attacker = _key("k1"), _key("evil")
    verifier = TokenVerifier(KeySet(Iam(key).fetch), issuer=ISSUER, audience=AUDIENCE)
    token = _token(attacker, header={"jwk": attacker.export_public(as_dict=True)})
    with pytest.raises(TokenRejected, match="unknown key"):
        await verifier.verify(token, now=time.time())


async def test_rotation_refetches_once_for_an_unknown_kid() -> None:
    old, new = _key("k1"), _key("k2")
    iam = Iam(old)
    verifier = TokenVerifier(KeySet(iam.fetch, min_refetch_s=0), issuer=ISSUER, audience=AUDIENCE)
    await verifier.verify(_token(old), now=time.time())
    assert iam.fetches == 1
    iam.keys = [new, old]
    await verifier.verify(_token(new), now=time.time())
    assert iam.fetches == 2
    await verifier.verify(_token(new), now=time.time())
    assert iam.fetches == 2


async def test_unknown_kid_refetch_is_rate_limited() -> None:
    key = _key("k1")
    iam = Iam(key)
    verifier = TokenVerifier(KeySet(iam.fetch, min_refetch_s=60), issuer=ISSUER, audience=AUDIENCE)
    await verifier.verify(_token(key), now=time.time())
    for _ in range(5):
        with pytest.raises(TokenRejected, match="unknown key"):
            await verifier.verify(_token(_key("nope")), now=time.time())
    assert iam.fetches == 1
