"""Hostile headers and bodies never produce a 500 or a stack trace: every answer is the
contract's envelope with a 4xx code."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fixtures import ServiceFactory
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
