"""The dependency fault proxy (ops/localstack/faultproxy.py) as a test process.

Tests that need a dependency to go down or hang for the BFF only start one of these in front of
the shared Redis/Postgres and point the BFF at its listen ports.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.procs import Proc, free_port, http_ok, wait_until


class FaultProxyProcess(Proc):
    """``python -m ops.localstack.faultproxy`` with one free listen port per named target."""

    def __init__(
        self, targets: dict[str, tuple[str, int]], log_dir: Path, name: str = "faultproxy"
    ) -> None:
        self.control_url = f"http://127.0.0.1:{free_port()}"
        self.ports = {name: free_port() for name in targets}
        argv = [sys.executable, "-m", "ops.localstack.faultproxy"]
        argv += ["--control", self.control_url.removeprefix("http://")]
        for name, (host, port) in targets.items():
            argv += ["--route", f"{name}=127.0.0.1:{self.ports[name]}:{host}:{port}"]
        super().__init__(name, argv, {"PYTHONUNBUFFERED": "1"}, log_dir)
        try:
            wait_until(http_ok(self.control_url + "/health"), 15, "the fault proxy to start")
        except AssertionError:
            self.stop()
            raise AssertionError(f"fault proxy did not start:\n{self.output()}") from None

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def set_mode(self, name: str, mode: str) -> dict[str, Any]:
        response = httpx.post(f"{self.control_url}/proxies/{name}", json={"mode": mode})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def proxies(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(self.control_url + "/proxies").json()
        return body
