"""DPoP proof verification, every MUST of RFC 9449 §4.3 (replay is checked by the caller,
through :mod:`edge.auth.replay`, because it needs shared state across instances).

Compact serialisation only; the algorithm comes from an explicit asymmetric allow-list (never
jwcrypto's defaults, which include HMAC); the embedded key must be public and of an asymmetric
type; ``htu`` is compared after normalisation against the externally visible URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import OrderedDict
from typing import Any

import msgspec
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from edge.auth.compact import is_compact
from edge.auth.htu import InvalidUri, normalize_htu
from edge.decoding import Malformed, decode_json

ALLOWED_ALGS = ("ES256", "ES384", "PS256", "EdDSA")
MAX_PROOF_BYTES = 4096
MIN_RSA_BITS = 2048


class DpopInvalid(Exception):
    """The proof fails a check; the message says which (it is safe to show a client)."""


class ProofClaims(msgspec.Struct, frozen=True):
    jti: str
    htm: str
    htu: str
    iat: int | float
    ath: str | None = None
    nonce: str | None = None


class VerifiedProof(msgspec.Struct, frozen=True):
    jkt: str  # RFC 7638 thumbprint of the proof key
    jti: str
    iat: float


def ath_for(access_token: str) -> str:
    """base64url(SHA-256(ASCII access token)), no padding (RFC 9449 §4.2)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    access_token: str | None,
    now: float,
    max_age_s: float = 60.0,
    max_future_s: float = 5.0,
) -> VerifiedProof:
    """Check one DPoP proof for a request to ``method url``; raise :class:`DpopInvalid`."""
    token = _parse_compact(proof)
    try:
        header = token.jose_header  # checks ``crit`` (unknown names are refused)
    except (JWException, ValueError, TypeError):
        raise DpopInvalid("proof header is not acceptable") from None
    if not isinstance(header, dict):
        raise DpopInvalid("proof must be a compact JWS")
    if header.get("typ") != "dpop+jwt":
        raise DpopInvalid("typ must be dpop+jwt")
    alg = header.get("alg")
    if alg not in ALLOWED_ALGS:
        raise DpopInvalid(f"alg must be one of {' '.join(ALLOWED_ALGS)}")
    key = _public_key(header.get("jwk"))
    try:
        token.verify(key, alg=alg)
    except (JWException, ValueError, TypeError):
        raise DpopInvalid("signature does not verify with the jwk") from None
    try:
        claims = decode_json(token.payload, ProofClaims, where="claims")
    except Malformed as exc:  # a signed proof whose claims are not ours (or not even JSON)
        raise DpopInvalid(str(exc) if exc.field == "claims" else f"claims: {exc}") from None
    _check_claims(claims, method, url, access_token, now, max_age_s, max_future_s)
    return VerifiedProof(jkt=key.thumbprint(), jti=claims.jti, iat=float(claims.iat))


def _parse_compact(proof: str) -> jws.JWS:
    if len(proof) > MAX_PROOF_BYTES or not is_compact(proof):
        raise DpopInvalid("proof must be one compact JWS")
    token = jws.JWS()
    token.allowed_algs = list(ALLOWED_ALGS)
    try:
        token.deserialize(proof)
    except (JWException, ValueError, TypeError):
        raise DpopInvalid("proof is not a well-formed JWS") from None
    return token


class _KeyCache:
    """Imported public keys by their canonical JSON: a device signs every request with the same
    key, and importing it (with its validity checks) costs more than the signature check."""

    def __init__(self, capacity: int = 4096) -> None:
        self._keys: OrderedDict[str, jwk.JWK] = OrderedDict()
        self._capacity = capacity

    def get(self, value: dict[str, Any]) -> jwk.JWK:
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
        key = self._keys.get(canonical)
        if key is None:
            key = _import_public_key(value)
            self._keys[canonical] = key
            if len(self._keys) > self._capacity:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(canonical)
        return key


_key_cache = _KeyCache()


def _public_key(value: Any) -> jwk.JWK:
    if not isinstance(value, dict):
        raise DpopInvalid("jwk header must be a JSON object")
    if len(value) > 16:
        raise DpopInvalid("jwk is not a valid key")
    return _key_cache.get(value)


def _import_public_key(value: dict[str, Any]) -> jwk.JWK:
    try:
        key = jwk.JWK(**value)
    except (JWException, ValueError, TypeError):
        raise DpopInvalid("jwk is not a valid key") from None
    if key.get("kty") not in ("EC", "RSA", "OKP") or key.is_symmetric:
        raise DpopInvalid("jwk must be an asymmetric key")
    if key.has_private or any(name in value for name in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise DpopInvalid("jwk must not contain a private key")
    if key.get("kty") == "RSA":
        modulus = base64.urlsafe_b64decode(str(value.get("n", "")) + "==")
        if len(modulus.lstrip(b"\0")) * 8 < MIN_RSA_BITS:
            raise DpopInvalid(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    return key


def _check_claims(
    claims: ProofClaims,
    method: str,
    url: str,
    access_token: str | None,
    now: float,
    max_age_s: float,
    max_future_s: float,
) -> None:
    if not 16 <= len(claims.jti) <= 256:
        raise DpopInvalid("jti must be 16 to 256 characters")
    if claims.htm != method:
        raise DpopInvalid("htm does not match the request method")
    try:
        matches = normalize_htu(claims.htu) == normalize_htu(url)
    except InvalidUri:
        matches = False
    if not matches or "?" in claims.htu or "#" in claims.htu:
        raise DpopInvalid("htu does not match the request URI")
    if claims.iat < now - max_age_s:
        raise DpopInvalid("iat is too old")
    if claims.iat > now + max_future_s:
        raise DpopInvalid("iat is in the future")
    if access_token is not None:
        if claims.ath is None:
            raise DpopInvalid("ath is required with an access token")
        # Bytes: compare_digest refuses str with non-ASCII characters (a signed proof may hold
        # any), and a token that is not ASCII has no ``ath`` (RFC 9449 §4.2 hashes its ASCII).
        expected = ath_for(access_token) if access_token.isascii() else ""
        if not expected or not hmac.compare_digest(claims.ath.encode(), expected.encode()):
            raise DpopInvalid("ath does not match the access token")


def make_proof(
    key: jwk.JWK,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    iat: float,
    jti: str,
    alg: str = "ES256",
    typ: str = "dpop+jwt",
    extra_header: dict[str, Any] | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """Build a proof (used by clients, the simulator and tests)."""
    header: dict[str, Any] = {"alg": alg, "typ": typ, "jwk": key.export_public(as_dict=True)}
    header.update(extra_header or {})
    claims: dict[str, Any] = {"jti": jti, "htm": method, "htu": url, "iat": int(iat)}
    if access_token is not None:
        claims["ath"] = ath_for(access_token)
    claims.update(extra_claims or {})
    token = jws.JWS(json.dumps(claims).encode())
    token.add_signature(key, alg=alg, protected=json.dumps(header))
    compact: str = token.serialize(compact=True)
    return compact
