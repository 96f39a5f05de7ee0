"""``./ops/stack up --instances N --detach`` as a test fixture: N BFF processes behind the local
nginx, with the fault proxy in front of their dependencies, on this test's own ports, state
folder, database and Redis key prefix; ``down`` at teardown.

Cross-instance tests run on it (issue #15): what they prove — a stream on one instance, the
action on another — then holds for the processes the desktop reaches through the balancer, wired
as ``up`` wires them, not for a pair a test assembled itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from ops.localstack import balancer
from tests.support.fixtures import REDIS_URL
from tests.support.procs import ROOT, wait_until

# Settings a developer's shell (or ./ops/stack test) may hold that would leak into the stack.
_STACK_VARS = ("PORT", "SIM_URL", "BFF_URL", "BFF_ADMIN_URL", "PUBSUB_EMULATOR_HOST", "ROOT")


def nginx_or_skip() -> str:
    found = balancer.find_nginx()
    if found is None and os.geteuid() != 0:
        pytest.skip("nginx is not installed and cannot be installed here (not root)")
    return found or balancer.ensure_nginx()


def free_run(count: int) -> int:
    """The first of ``count`` consecutive free ports (held while chosen, then released)."""
    for _ in range(50):
        with ExitStack() as held:
            first = socket.socket()
            held.enter_context(first)
            first.bind(("127.0.0.1", 0))
            base = int(first.getsockname()[1])
            if base + count > 65535:
                continue
            try:
                for port in range(base + 1, base + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise AssertionError(f"no {count} consecutive free ports")


def clean_env() -> dict[str, str]:
    """This process's environment without what would leak into a stack's settings."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("BFF_") and k not in _STACK_VARS
    }


def run_stack(
    args: list[str], env: dict[str, str], *, checkout: Path = ROOT, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``<checkout>/ops/stack <args>`` with ``env`` over a clean environment."""
    return subprocess.run(
        [str(checkout / "ops" / "stack"), *args],
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=checkout,
    )


def exported(text: str) -> dict[str, str]:
    pairs = (line.removeprefix("export ").split("=", 1) for line in text.splitlines())
    return {p[0]: p[1] for p in pairs if len(p) == 2 and p[0].isupper()}


class StackInstance:
    """One BFF process of the stack: its URL, and its pid and log from the stack's state."""

    def __init__(self, url: str, state: Path, number: int) -> None:
        self.url = url
        self._record = state / "run" / f"bff-{number}.json"
        self._log = state / "logs" / f"bff-{number}.log"
        self.pid = int(json.loads(self._record.read_text())["pid"])

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def exited(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        return False

    def output(self) -> str:
        return self._log.read_text(errors="replace")


class Stack:
    """A running ``up --instances N --detach``, as ``./ops/stack env`` describes it."""

    def __init__(self, env: dict[str, str], exported: dict[str, str], ident: str) -> None:
        self.env = env
        self.lb = exported["BFF_URL"]
        self.sim = exported["SIM_URL"]
        self.instances = exported["BFF_INSTANCE_URLS"].split(",")
        self.admins = exported["BFF_ADMIN_URLS"].split(",")
        self.faults = exported["BFF_FAULTPROXY_URL"]
        self.ids = [f"{ident}-i{n}" for n in range(1, len(self.instances) + 1)]
        state = Path(env["BFF_STACK_STATE"])
        self.processes = [
            StackInstance(url, state, n) for n, url in enumerate(self.instances, start=1)
        ]

    def instance_of(self, response: httpx.Response) -> str:
        """Which instance answered (the balancer's ``X-Bff-Upstream``), as its URL."""
        return "http://" + response.headers["x-bff-upstream"]

    def ports(self) -> list[int]:
        urls = [self.lb, self.sim, self.faults, *self.instances, *self.admins]
        proxies = httpx.get(f"{self.faults}/proxies", timeout=5).json()
        found = [int(url.rsplit(":", 1)[1]) for url in urls]
        return found + [int(p["listen"].rsplit(":", 1)[1]) for p in proxies.values()]

    def down(self) -> None:
        done = run_stack(["down"], self.env)
        assert done.returncode == 0, done.stdout + done.stderr


StackFactory = Callable[..., Stack]


@pytest.fixture
def start_stack(tmp_path: Path, database_url: str, redis_prefix: str) -> Iterator[StackFactory]:
    """``start_stack(instances=2, **env)``: a stack on this test's database and key prefix
    (embedded bus unless ``env`` says otherwise); stopped at teardown."""
    started: list[Stack] = []

    def start(instances: int = 2, **overrides: str) -> Stack:
        nginx_or_skip()
        ident = f"t{uuid.uuid4().hex[:6]}"
        env = {
            "BFF_STACK_STATE": str(tmp_path / f"state-{len(started)}"),
            "PORT": str(free_run(instances + 1)),
            "BFF_ADMIN_PORT": str(free_run(instances)),
            "SIM_URL": f"http://127.0.0.1:{free_run(1)}",
            "BFF_DATABASE_URL": database_url,
            "BFF_REDIS_SESSION_URL": REDIS_URL,
            "BFF_REDIS_CACHE_URL": REDIS_URL,
            "BFF_REDIS_PREFIX": redis_prefix,
            "BFF_BUS": "embedded",
            "BFF_INSTANCE_ID": ident,
            "BFF_ENABLE_TEST_ROUTES": "1",
            "BFF_SSE_KEEPALIVE_S": "0.3",
            **overrides,
        }
        up = run_stack(["up", "--instances", str(instances), "--detach"], env)
        if up.returncode != 0:
            run_stack(["down"], env)  # whatever it did start
            raise AssertionError(up.stdout + up.stderr)
        stack = Stack(env, exported(up.stdout), ident)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.down()


def wait_exited(instance: StackInstance, timeout: float) -> None:
    wait_until(instance.exited, timeout, f"pid {instance.pid} to exit")
