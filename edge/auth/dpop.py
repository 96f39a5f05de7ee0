"""DPoP proof verification, every MUST of RFC 9449 §4.3 (replay is checked by the caller,
through :mod:`edge.auth.replay`, because it needs shared state across instances).

Compact serialisation only; the algorithm comes from an explicit asymmetric allow-list (never
jwcrypto's defaults, which include HMAC); the embedded key must be public and of an asymmetric
type; ``htu`` is compared after normalisation against the externally visible URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections import OrderedDict
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from edge.auth.compact import is_compact
from edge.auth.htu import InvalidUri, normalize_htu
from edge.decoding import Malformed, decode_json

ALLOWED_ALGS = ("ES256", "ES384", "PS256", "EdDSA")
# The algorithms verified with ``cryptography`` directly: (curve, hash, bytes of r and of s).
_EC_ALGS: dict[str, tuple[str, hashes.HashAlgorithm, int]] = {
    "ES256": ("P-256", hashes.SHA256(), 32),
    "ES384": ("P-384", hashes.SHA384(), 48),
}
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
    """Check one DPoP proof for a request to ``method url``; raise :class:`DpopInvalid`.

    A well-formed ES256/ES384 proof (what every desktop sends) is verified with
    ``cryptography`` directly: jwcrypto's object model costs several times the signature check
    itself on every request. Anything else — other algorithms, a ``crit`` or ``b64`` header,
    a header that is not JSON — takes jwcrypto's path, so its refusals stay exactly as they are.
    """
    if len(proof) > MAX_PROOF_BYTES or not is_compact(proof):
        raise DpopInvalid("proof must be one compact JWS")
    fast = _verify_ec(proof)
    if fast is None:
        jkt, payload = _verify_with_jwcrypto(proof)
    else:
        jkt, payload = fast
    try:
        claims = decode_json(payload, ProofClaims, where="claims")
    except Malformed as exc:  # a signed proof whose claims are not ours (or not even JSON)
        raise DpopInvalid(str(exc) if exc.field == "claims" else f"claims: {exc}") from None
    _check_claims(claims, method, url, access_token, now, max_age_s, max_future_s)
    return VerifiedProof(jkt=jkt, jti=claims.jti, iat=float(claims.iat))


def _verify_ec(proof: str) -> tuple[str, bytes] | None:
    """(thumbprint, payload) of a verified EC proof; None when this path does not apply."""
    encoded_header, encoded_payload, encoded_signature = proof.split(".")
    fast = _ec_headers.get(encoded_header)
    if fast is None:
        fast = _ec_header(encoded_header)
        if fast is None:
            return None
        _ec_headers.put(encoded_header, fast)
    entry, (_, digest, size) = fast
    assert entry.ec_key is not None  # _ec_header checked it
    public = entry.ec_key
    try:
        signature = _b64decode(encoded_signature)
        payload = _b64decode(encoded_payload)
    except ValueError:
        return None
    if len(signature) != 2 * size:
        raise DpopInvalid("signature does not verify with the jwk")
    der = encode_dss_signature(
        int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
    )
    signing_input = f"{encoded_header}.{encoded_payload}".encode("ascii")
    try:
        public.verify(der, signing_input, ec.ECDSA(digest))
    except InvalidSignature:
        raise DpopInvalid("signature does not verify with the jwk") from None
    return entry.jkt, payload


class _EcHeaders:
    """Checked EC headers by their encoded text: a device's proofs all share one header (``typ``,
    ``alg``, its ``jwk``), so decoding and checking it once per device is enough."""

    def __init__(self, capacity: int = 4096) -> None:
        self._entries: OrderedDict[str, _EcHeader] = OrderedDict()
        self._capacity = capacity

    def get(self, encoded: str) -> _EcHeader | None:
        found = self._entries.get(encoded)
        if found is not None:
            self._entries.move_to_end(encoded)
        return found

    def put(self, encoded: str, checked: _EcHeader) -> None:
        self._entries[encoded] = checked
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


def _ec_header(encoded: str) -> _EcHeader | None:
    """The key and algorithm of an acceptable EC proof header; None: not for the fast path."""
    try:
        header = msgspec.json.decode(_b64decode(encoded))
    except (ValueError, msgspec.DecodeError):
        return None
    if not isinstance(header, dict) or "crit" in header or "b64" in header:
        return None
    _check_header(header)
    spec = _EC_ALGS.get(header["alg"])
    if spec is None:
        return None
    entry = _key_cache.get(_jwk_header(header))
    if entry.ec_key is None or entry.key.get("crv") != spec[0]:
        raise DpopInvalid("signature does not verify with the jwk")
    return entry, spec


def _verify_with_jwcrypto(proof: str) -> tuple[str, bytes]:
    token = _parse_compact(proof)
    try:
        header = token.jose_header  # checks ``crit`` (unknown names are refused)
    except (JWException, ValueError, TypeError):
        raise DpopInvalid("proof header is not acceptable") from None
    if not isinstance(header, dict):
        raise DpopInvalid("proof must be a compact JWS")
    _check_header(header)
    entry = _key_cache.get(_jwk_header(header))
    try:
        token.verify(entry.key, alg=header["alg"])
    except (JWException, ValueError, TypeError):
        raise DpopInvalid("signature does not verify with the jwk") from None
    payload: bytes = token.payload
    return entry.jkt, payload


def _check_header(header: dict[str, Any]) -> None:
    if header.get("typ") != "dpop+jwt":
        raise DpopInvalid("typ must be dpop+jwt")
    if header.get("alg") not in ALLOWED_ALGS:
        raise DpopInvalid(f"alg must be one of {' '.join(ALLOWED_ALGS)}")


def _jwk_header(header: dict[str, Any]) -> dict[str, Any]:
    value = header.get("jwk")
    if not isinstance(value, dict):
        raise DpopInvalid("jwk header must be a JSON object")
    if len(value) > 16:
        raise DpopInvalid("jwk is not a valid key")
    return value


def _b64decode(segment: str) -> bytes:
    """base64url without padding (the caller checked the alphabet: ``is_compact``)."""
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


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


class _CachedKey(msgspec.Struct, frozen=True):
    key: jwk.JWK
    jkt: str  # RFC 7638 thumbprint
    ec_key: ec.EllipticCurvePublicKey | None  # ``cryptography``'s key, for the EC fast path


class _KeyCache:
    """Imported public keys by their canonical JSON: a device signs every request with the same
    key, and importing it (with its validity checks) and its thumbprint cost more than the
    signature check."""

    def __init__(self, capacity: int = 4096) -> None:
        self._keys: OrderedDict[str, _CachedKey] = OrderedDict()
        self._capacity = capacity

    def get(self, value: dict[str, Any]) -> _CachedKey:
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
        entry = self._keys.get(canonical)
        if entry is None:
            entry = self._keys[canonical] = _entry(_import_public_key(value))
            if len(self._keys) > self._capacity:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(canonical)
        return entry


def _entry(key: jwk.JWK) -> _CachedKey:
    public = key.get_op_key("verify") if key.get("kty") == "EC" else None
    ec_key = public if isinstance(public, ec.EllipticCurvePublicKey) else None
    return _CachedKey(key=key, jkt=key.thumbprint(), ec_key=ec_key)


_key_cache = _KeyCache()
_EcHeader = tuple[_CachedKey, tuple[str, hashes.HashAlgorithm, int]]
_ec_headers = _EcHeaders()


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
