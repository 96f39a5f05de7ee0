"""MFA step-up attestations are single use however they are spelt, and good only in the session
that stepped up. Over real processes (the BFF and the simulator's iam, which mints the
attestations), plus the pure canonical-encoding check.

An ES256 signature has many spellings that verify: its base64url text ends in a character with
4 unused bits (16 spellings), and ECDSA signatures are malleable, ``(r, s)`` and ``(r, n - s)``
both verify (another 16)."""

from __future__ import annotations

import base64
import string

import httpx
import trio

from edge.auth.compact import is_canonical
from tests.edge.auth.conftest import refused
from tests.support.desktop import APP_VERSION, Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.sim import SimHandle

SENSITIVE = "/bff/backoffice/v1/_test/sensitive"
WHOAMI = "/bff/backoffice/v1/_test/whoami"
VERIFY_PATH = "/iam/v1/step-up/verify"
B64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def spellings(token: str) -> list[str]:
    """The 16 texts of ``token`` that differ in the unused bits of the signature's last
    character; the first is the canonical one."""
    head, _, signature = token.rpartition(".")
    base = B64URL.index(signature[-1]) & ~0xF
    return [f"{head}.{signature[:-1]}{B64URL[base | bits]}" for bits in range(16)]


def malleated(token: str) -> str:
    """The same ES256 token with its other valid signature, ``(r, n - s)``."""
    head, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    s = P256_ORDER - int.from_bytes(raw[32:], "big")
    other = base64.urlsafe_b64encode(raw[:32] + s.to_bytes(32, "big")).rstrip(b"=").decode()
    return f"{head}.{other}"


def _mfa_refused(answer: httpx.Response) -> str:
    """The contract's envelope with MFA_INVALID_OR_USED (not a DPoP challenge: the request's
    own authentication was fine); its message."""
    assert answer.status_code == 401, answer.text
    error = answer.json()["error"]
    assert error["code"] == "MFA_INVALID_OR_USED" and error["retryable"] is False, error
    assert error["requestId"] == answer.headers["x-request-id"]
    message: str = error["message"]
    return message


def _verify_calls(sim: SimHandle) -> int:
    return sum(1 for c in sim.calls("iam", kind="all") if c["path"] == VERIFY_PATH)


def test_only_the_canonical_spelling_is_canonical() -> None:
    token = "eyJhbGciOiJFUzI1NiJ9.eyJhIjoxfQ." + "A" * 85 + "Q"
    texts = spellings(token)
    assert [is_canonical(t) for t in texts] == [True] + [False] * 15
    assert not is_canonical(token.replace(".eyJ", ".eyJ=", 1))  # padding
    assert not is_canonical("a.b.c" + "A")  # a length no bytes can have (4n + 1)
    assert not is_canonical("é.b.c")


def test_sixteen_spellings_of_one_attestation_sent_at_once_let_one_through(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    bff = start_bff(SIM_URL=sim.url)
    desk = Desktop(bff.url, sim.url)
    assert desk.get(WHOAMI).status_code == 200  # session open, keys cached
    token = desk.device.step_up("folio.refund").attestation_token
    assert is_canonical(token)
    # 8 spellings of iam's signature and 8 of its malleated twin: two are canonical.
    texts = spellings(token)[:8] + spellings(malleated(token))[:8]
    assert len(set(texts)) == 16
    before = _verify_calls(sim)
    answers: list[httpx.Response] = []

    async def use(text: str) -> None:
        headers = desk.headers("POST", SENSITIVE, **{"X-MFA-Attestation": text})
        async with httpx.AsyncClient(base_url=bff.url, timeout=30) as client:
            answers.append(
                await client.post(SENSITIVE, json={"action": "folio.refund"}, headers=headers)
            )

    async def race() -> None:
        async with trio.open_nursery() as nursery:
            for text in texts:
                nursery.start_soon(use, text)

    trio.run(race)
    assert sorted(a.status_code for a in answers) == [200] + [401] * 15
    for answer in answers:
        if answer.status_code == 401:
            _mfa_refused(answer)
    assert _verify_calls(sim) - before == 1  # the BFF let one through to iam, not 16


def test_a_non_canonical_spelling_is_refused_and_burns_nothing(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    bff = start_bff(SIM_URL=sim.url)
    desk = Desktop(bff.url, sim.url)
    token = desk.device.step_up("lock.revoke").attestation_token
    body = {"action": "lock.revoke"}
    for text in spellings(token)[1:4]:
        answer = desk.post(SENSITIVE, json=body, headers={"X-MFA-Attestation": text})
        assert "canonical" in _mfa_refused(answer)
    assert _verify_calls(sim) == 0
    ok = desk.post(SENSITIVE, json=body, headers={"X-MFA-Attestation": token})
    assert ok.status_code == 200, ok.text


def test_an_attestation_is_good_only_in_the_session_that_stepped_up(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    """Same operator, same device, a second session: iam would accept the attestation (its
    operator, device and action match), the BFF does not."""
    bff = start_bff(SIM_URL=sim.url)
    desk = Desktop(bff.url, sim.url)
    first = desk.device.tokens
    token = desk.device.step_up("lock.revoke").attestation_token
    desk.device.sign_in("fd.demo")  # another session on this device
    assert desk.device.tokens is not None and first is not None
    assert desk.device.tokens.session_id != first.session_id
    body = {"action": "lock.revoke"}
    other = desk.post(SENSITIVE, json=body, headers={"X-MFA-Attestation": token})
    assert "another session" in _mfa_refused(other)
    assert _verify_calls(sim) == 0
    desk.device.tokens = first
    ok = desk.post(SENSITIVE, json=body, headers={"X-MFA-Attestation": token})
    assert ok.status_code == 200, ok.text


def test_an_attestation_is_not_an_access_token(desk: Desktop) -> None:
    """iam's signature and most claim names are the same; the ``typ`` tells them apart."""
    attestation = desk.device.step_up("lock.revoke").attestation_token
    url = desk.bff_url + WHOAMI
    headers = {
        "Authorization": f"DPoP {attestation}",
        "DPoP": desk.device.proof("GET", url, access_token=attestation),
        "X-App-Version": APP_VERSION,
    }
    answer = desk.http.get(WHOAMI, headers=headers)
    assert "typ" in refused(answer, 401, "SESSION_EXPIRED")["message"]
