"""Access tokens: only iam's keys, ES256, our issuer and audience, not expired; key rotation."""

import base64
import json
import time
import uuid
from typing import Any

import pytest
import trio
import trio.testing
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


# --- RFC 8725: the token's type, its serialisation, the keys that may verify it ----------------


def _signed(key: jwk.JWK, header: dict[str, Any], claims: dict[str, Any] | None = None) -> str:
    """A compact JWS with exactly ``header`` (no ``typ`` unless given)."""
    token = jws.JWS(json.dumps(claims or json.loads(_payload(_token(key)))).encode())
    token.add_signature(key, alg="ES256", protected=json.dumps(header))
    compact: str = token.serialize(compact=True)
    return compact


def _payload(compact: str) -> str:
    segment = compact.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()


@pytest.mark.parametrize("typ", ["step-up+jwt", "JWT", "dpop+jwt", "at+jwt+x", None])
async def test_typ_must_be_at_jwt(typ: str | None) -> None:
    key = _key("k1")
    verifier = TokenVerifier(KeySet(Iam(key).fetch), issuer=ISSUER, audience=AUDIENCE)
    header = {"alg": "ES256", "kid": "k1", **({"typ": typ} if typ else {})}
    with pytest.raises(TokenRejected, match="typ must be at\\+jwt"):
        await verifier.verify(_signed(key, header), now=time.time())


async def test_application_at_jwt_is_the_same_type() -> None:
    key = _key("k1")
    verifier = TokenVerifier(KeySet(Iam(key).fetch), issuer=ISSUER, audience=AUDIENCE)
    header = {"alg": "ES256", "kid": "k1", "typ": "application/at+jwt"}
    assert (await verifier.verify(_signed(key, header), now=time.time())).sub == "op-1"


async def test_an_attestation_with_every_access_claim_is_not_an_access_token() -> None:
    """A step-up attestation, even one carrying all the claims of an access token (so that the
    claims alone cannot tell), is refused by its ``typ``."""
    key = _key("k1")
    verifier = TokenVerifier(KeySet(Iam(key).fetch), issuer=ISSUER, audience=AUDIENCE)
    claims = {**json.loads(_payload(_token(key))), "act": "lock.revoke"}
    attestation = _signed(key, {"alg": "ES256", "kid": "k1", "typ": "step-up+jwt"}, claims)
    with pytest.raises(TokenRejected, match="typ"):
        await verifier.verify(attestation, now=time.time())
    assert (await verifier.attestation(attestation, now=time.time())).act == "lock.revoke"


async def test_only_the_compact_serialisation_is_accepted() -> None:
    """The same signed token in the flattened JSON serialisation (spelt with exactly two dots,
    which the old shape check counted) is refused."""
    key = _key("k1")
    verifier = TokenVerifier(KeySet(Iam(key).fetch), issuer=ISSUER, audience=AUDIENCE)
    protected, payload, signature = _token(key).split(".")
    flattened = {"protected": protected, "payload": payload, "signature": signature}
    for shape in (
        {**flattened, "x": ".."},
        {**flattened, "header": {"kid": "k1", "x": ".."}},  # repeated in the unprotected part
        {**flattened, "header": {"typ": "at+jwt", "x": ".."}},
    ):
        with pytest.raises(TokenRejected, match="compact"):
            await verifier.verify(" " + json.dumps(shape), now=time.time())
    for garbage in ("é.é.é", "a.b.c\n", "a..", ".a.b"):  # non-ASCII, whitespace, empty parts
        with pytest.raises(TokenRejected):
            await verifier.verify(garbage, now=time.time())


@pytest.mark.parametrize(
    "published",
    [{"use": "enc"}, {"alg": "ES384"}, {"alg": "RS256"}, {"alg": "HS256"}],
    ids=["use-enc", "alg-ES384", "alg-RS256", "alg-HS256"],
)
async def test_a_key_not_meant_for_es256_signatures_is_not_used(published: dict[str, str]) -> None:
    key = _key("k1")

    async def fetch() -> Jwks:
        return Jwks(keys=[Jwk(**{**key.export_public(as_dict=True), **published})])

    verifier = TokenVerifier(KeySet(fetch), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(TokenRejected, match="unknown key"):
        await verifier.verify(_token(key), now=time.time())


async def test_a_malformed_key_in_the_key_set_does_not_hide_the_others() -> None:
    key = _key("k1")

    async def fetch() -> Jwks:
        broken = Jwk(kty="EC", kid="k0", crv="P-256", x="AAAA")  # no y: cannot be imported
        return Jwks(keys=[broken, *_jwks(key).keys])

    verifier = TokenVerifier(KeySet(fetch), issuer=ISSUER, audience=AUDIENCE)
    assert (await verifier.verify(_token(key), now=time.time())).sub == "op-1"


async def test_a_cached_token_is_dropped_when_its_key_leaves_the_key_set(
    autojump_clock: trio.testing.MockClock,
) -> None:
    old, new = _key("k1"), _key("k2")
    iam = Iam(old)
    verifier = TokenVerifier(KeySet(iam.fetch, ttl_s=600), issuer=ISSUER, audience=AUDIENCE)
    token = _token(old)
    await verifier.verify(token, now=time.time())  # verified, and remembered
    iam.keys = [new]  # iam drops the old key (e.g. it leaked)
    await trio.sleep(601)  # the key set is refreshed
    with pytest.raises(TokenRejected, match="no longer publishes"):
        await verifier.verify(token, now=time.time())
    with pytest.raises(TokenRejected, match="unknown key"):
        await verifier.verify(token, now=time.time())  # forgotten: verified afresh
