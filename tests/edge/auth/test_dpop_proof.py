"""RFC 9449 §4.3: each check on its own, with the RFC's test vectors."""

import base64
import json
import time
import uuid
from typing import Any

import pytest
from jwcrypto import jwk, jws

from edge.auth.dpop import DpopInvalid, ath_for, make_proof, verify_proof
from edge.auth.htu import InvalidUri, normalize_htu

URL = "https://bff.example.com/bff/backoffice/v1/today"
TOKEN = "access-token-value"
KEY = jwk.JWK.generate(kty="EC", crv="P-256")


def _proof(**overrides: Any) -> str:
    args: dict[str, Any] = {
        "method": "GET",
        "url": URL,
        "access_token": TOKEN,
        "iat": time.time(),
        "jti": uuid.uuid4().hex,
    }
    args.update(overrides)
    key = args.pop("key", KEY)
    return make_proof(key, **args)


def _verify(proof: str, **overrides: Any) -> Any:
    args: dict[str, Any] = {"method": "GET", "url": URL, "access_token": TOKEN, "now": time.time()}
    args.update(overrides)
    return verify_proof(proof, **args)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_valid_proof_gives_thumbprint() -> None:
    verified = _verify(_proof())
    assert verified.jkt == KEY.thumbprint()


def test_rfc9449_vectors() -> None:
    example = jwk.JWK(
        kty="EC",
        crv="P-256",
        x="l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
        y="9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
    )
    assert example.thumbprint() == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert ath_for(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_alg_none_rejected() -> None:
    header = {"alg": "none", "typ": "dpop+jwt", "jwk": KEY.export_public(as_dict=True)}
    claims = {
        "jti": uuid.uuid4().hex,
        "htm": "GET",
        "htu": URL,
        "iat": int(time.time()),
        "ath": ath_for(TOKEN),
    }
    unsigned = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
    with pytest.raises(DpopInvalid, match="alg"):
        _verify(unsigned)


def test_hs256_with_symmetric_jwk_rejected() -> None:
    secret = jwk.JWK.generate(kty="oct", size=256)
    claims = {
        "jti": uuid.uuid4().hex,
        "htm": "GET",
        "htu": URL,
        "iat": int(time.time()),
        "ath": ath_for(TOKEN),
    }
    token = jws.JWS(json.dumps(claims).encode())
    header = {"alg": "HS256", "typ": "dpop+jwt", "jwk": secret.export(as_dict=True)}
    token.add_signature(secret, alg="HS256", protected=json.dumps(header))
    with pytest.raises(DpopInvalid, match="alg"):
        _verify(token.serialize(compact=True))


def test_private_key_in_jwk_rejected() -> None:
    proof = _proof(extra_header={"jwk": KEY.export_private(as_dict=True)})
    with pytest.raises(DpopInvalid, match="private"):
        _verify(proof)


def test_bad_signature_rejected() -> None:
    other = jwk.JWK.generate(kty="EC", crv="P-256")
    # Signed by KEY but claiming other's public key in the header.
    proof = _proof(extra_header={"jwk": other.export_public(as_dict=True)})
    with pytest.raises(DpopInvalid, match="signature"):
        _verify(proof)
    head, payload, signature = _proof().split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(DpopInvalid):
        _verify(tampered)


def test_wrong_typ_rejected() -> None:
    with pytest.raises(DpopInvalid, match="typ"):
        _verify(_proof(typ="JWT"))


def test_wrong_htm_rejected() -> None:
    with pytest.raises(DpopInvalid, match="htm"):
        _verify(_proof(method="POST"))


def test_wrong_htu_rejected() -> None:
    with pytest.raises(DpopInvalid, match="htu"):
        _verify(_proof(url="https://bff.example.com/bff/backoffice/v1/dashboard"))
    with pytest.raises(DpopInvalid, match="htu"):
        _verify(_proof(url="https://evil.example.com/bff/backoffice/v1/today"))


def test_htu_with_query_or_fragment_rejected() -> None:
    with pytest.raises(DpopInvalid, match="htu"):
        _verify(_proof(url=URL + "?propertyId=prop-demo-1"))
    with pytest.raises(DpopInvalid, match="htu"):
        _verify(_proof(url=URL + "#x"))


def test_request_query_is_ignored_on_the_server_side() -> None:
    _verify(_proof(), url=URL + "?propertyId=prop-demo-1")


def test_htu_is_compared_normalised() -> None:
    _verify(_proof(url="HTTPS://BFF.example.com:443/bff/backoffice/v1/./today"))
    _verify(_proof(url="https://bff.example.com/bff/backoffice/v1/%74oday"))


def test_iat_too_old_rejected() -> None:
    with pytest.raises(DpopInvalid, match="old"):
        _verify(_proof(iat=time.time() - 300))


def test_iat_too_far_ahead_rejected() -> None:
    with pytest.raises(DpopInvalid, match="future"):
        _verify(_proof(iat=time.time() + 120))


def test_missing_ath_rejected() -> None:
    with pytest.raises(DpopInvalid, match="ath"):
        _verify(_proof(access_token=None))


def test_wrong_ath_rejected() -> None:
    with pytest.raises(DpopInvalid, match="ath"):
        _verify(_proof(access_token="another-token"))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "a.b",
        "a.b.c",
        "{}",
        "x" * 5000,
        "..",
        "eyJhbGciOiJFUzI1NiJ9.e30.",
        "\u00e9.\u00e9.\u00e9",
    ],
)
def test_garbage_is_rejected_not_crashing(garbage: str) -> None:
    with pytest.raises(DpopInvalid):
        _verify(garbage)


@pytest.mark.parametrize("jwk_value", [None, "", 1, True, [], "foo", {"kty": "oct", "k": "AAAA"}])
def test_bad_jwk_values_rejected(jwk_value: object) -> None:
    with pytest.raises(DpopInvalid):
        _verify(_proof(extra_header={"jwk": jwk_value}))


def test_short_jti_rejected() -> None:
    with pytest.raises(DpopInvalid, match="jti"):
        _verify(_proof(jti="abc"))


def test_small_rsa_key_rejected() -> None:
    small = jwk.JWK.generate(kty="RSA", size=1024)
    with pytest.raises(DpopInvalid, match="RSA"):
        _verify(_proof(key=small, alg="PS256"))


def test_normalize_htu() -> None:
    assert normalize_htu("HTTP://Example.COM:80") == "http://example.com/"
    assert normalize_htu("https://a.b/x/../y?q=1#f") == "https://a.b/y"
    assert normalize_htu("https://a.b:8443/%7euser/%2f") == "https://a.b:8443/~user/%2F"
    for bad in ["ftp://a/b", "/relative", "https://user:pw@a.b/", "https://a.b/ x", ":::*;"]:
        with pytest.raises(InvalidUri):
            normalize_htu(bad)
