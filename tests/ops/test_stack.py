"""``./ops/stack up --detach`` / ``down`` on private ports and a private state folder."""

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.fixtures import PG_ADMIN_URL, REDIS_URL
from tests.support.procs import ROOT, free_port, port_open, wait_until


def _states(status: str) -> dict[str, tuple[int, str]]:
    """``./ops/stack status`` lines (``<name> pid <pid> port <port> <state>``) by name."""
    found = {}
    for line in status.splitlines():
        words = line.split()
        if len(words) == 6 and words[1] == "pid" and words[3] == "port":
            found[words[0]] = (int(words[2]), words[5])
    return found


def _stack(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "ops" / "stack"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_up_detach_then_down(tmp_path: Path, database_url: str, redis_prefix: str) -> None:
    ports = {"PORT": free_port(), "SIM": free_port(), "BFF_ADMIN_PORT": free_port()}
    env = {
        "BFF_STACK_STATE": str(tmp_path / "state"),
        "PORT": str(ports["PORT"]),
        "BFF_ADMIN_PORT": str(ports["BFF_ADMIN_PORT"]),
        "SIM_URL": f"http://127.0.0.1:{ports['SIM']}",
        "BFF_DATABASE_URL": database_url,
        "BFF_REDIS_SESSION_URL": REDIS_URL,
        "BFF_REDIS_CACHE_URL": REDIS_URL,
        "BFF_REDIS_PREFIX": redis_prefix,
        "BFF_BUS": "embedded",
        "BFF_TEST_PG_URL": PG_ADMIN_URL,
    }
    up = _stack(["up", "--detach"], env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"export BFF_URL=http://127.0.0.1:{ports['PORT']}" in up.stdout
        bff = f"http://127.0.0.1:{ports['PORT']}"
        assert httpx.get(f"{bff}/health/ready").status_code == 200
        assert httpx.get(f"{bff}/metrics").status_code == 200
        assert httpx.get(f"{bff}/openapi.json").json()["openapi"] == "3.1.0"
        status = _stack(["status"], env)
        assert status.returncode == 0, status.stdout + status.stderr
        states = _states(status.stdout)
        assert states["bff"][1] == "running" and states["sim"][1] == "running", status.stdout
        assert "bff ready: yes" in status.stdout.splitlines()
        exported = _stack(["env"], env).stdout.splitlines()
        assert f"export SIM_URL=http://127.0.0.1:{ports['SIM']}" in exported
        # status reports what is running now, not what was started: kill the BFF (ours)
        os.kill(states["bff"][0], signal.SIGKILL)
        wait_until(lambda: not port_open(ports["PORT"]), 10, "the killed BFF's port to close")
        after = _stack(["status"], env).stdout
        assert _states(after)["bff"][1] == "dead" and _states(after)["sim"][1] == "running", after
        assert "bff ready: no" in after.splitlines()
    finally:
        down = _stack(["down"], env)
    assert down.returncode == 0, down.stdout + down.stderr
    for port in ports.values():
        assert not port_open(port), f"port {port} still open after down"
    assert not list((tmp_path / "state" / "run").glob("*.json"))
