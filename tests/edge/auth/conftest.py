"""Fixtures of the auth suites: one BFF on the shared simulator, and a signed-in desktop."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.desktop import Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.procs import ServiceProcess
from tests.support.sim import SimHandle


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url)


@pytest.fixture
def desk(bff: ServiceProcess, sim: SimHandle) -> Desktop:
    return Desktop(bff.url, sim.url, "fd.demo")


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the contract's error envelope with ``code`` (and a DPoP challenge on a 401)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    if status == 401:
        assert response.headers["www-authenticate"].startswith("DPoP ")
    return body
