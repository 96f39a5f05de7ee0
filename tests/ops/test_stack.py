"""``./ops/stack up --detach`` / ``down`` on private ports and a private state folder; two
checkouts' stacks side by side; what the stack refuses to share; the bootstrap's console."""

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from edge.bus.pubsub import DEAD_LETTER_SUBSCRIPTION
from ops.localstack import deps, procs
from ops.localstack.deps import private_pg_dir
from ops.localstack.procs import PortTaken
from tests.support.fixtures import PG_ADMIN_URL, REDIS_URL
from tests.support.procs import ROOT, free_port, port_open, wait_until
from tests.support.pubsub import require_emulator
from tests.support.stack import clean_env, exported, run_stack


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
        lines = _stack(["env"], env).stdout.splitlines()
        assert f"export SIM_URL=http://127.0.0.1:{ports['SIM']}" in lines
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


# --- two stacks side by side (issue #10, finding 8) ---------------------------------------------

_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".state", "__pycache__", "*.egg-info", ".*_cache", ".hypothesis", "build"
)


def _checkout(target: Path) -> Path:
    """A copy of this working tree (uncommitted changes included) sharing its ``.venv``."""
    shutil.copytree(ROOT, target, ignore=_NOT_COPIED, symlinks=True)
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def _run(checkout: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_stack(args, env, checkout=checkout, timeout=120)


def _instances(emulator: str) -> set[str]:
    """The instance ids of the subscriptions on the emulator at ``emulator`` (host:port); the
    one dead-letter subscription all instances share (``bff-backoffice.deadletter``) is none."""
    answer = httpx.get(f"http://{emulator}/v1/projects/bff-local/subscriptions")
    names = [s["name"].rsplit("/", 1)[1] for s in answer.json().get("subscriptions", [])]
    return {name.split(".")[1] for name in names if name != DEAD_LETTER_SUBSCRIPTION}


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its reaper is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


_PORT_SETTINGS = ("PORT", "BFF_ADMIN_PORT", "BFF_PRIVATE_PG_PORT", "BFF_PRIVATE_REDIS_PORT")


def _stack_settings(redis_url: str, redis_prefix: str = "") -> dict[str, str]:
    """A stack on free ports whose configured Postgres does not answer (so it starts a private
    cluster on its private port), Redis named by the session URL only."""
    env = {
        "PORT": str(free_port()),
        "BFF_ADMIN_PORT": str(free_port()),
        "SIM_URL": f"http://127.0.0.1:{free_port()}",
        "BFF_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/bff_side",
        "BFF_PRIVATE_PG_PORT": str(free_port()),
        "BFF_REDIS_SESSION_URL": redis_url,
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{free_port()}",
    }
    if redis_prefix:
        env["BFF_REDIS_PREFIX"] = redis_prefix
    return env


@pytest.mark.slow
def test_two_stacks_side_by_side_share_nothing(tmp_path: Path, redis_prefix: str) -> None:
    """Two checkouts' stacks with different ports, databases, private servers and emulator
    addresses: each starts and stops only its own processes, refuses a port the other holds,
    and ``down`` in one leaves the other serving."""
    require_emulator()
    # Both copies run on this checkout's .venv: bring it up to date here first, so that the
    # copies' bootstrap never reinstalls the project from a copy.
    subprocess.run(
        ["bash", "-c", "source ops/bootstrap.sh && ensure_venv"],
        env={**clean_env(), "ROOT": str(ROOT)},
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    first, second = _checkout(tmp_path / "first"), _checkout(tmp_path / "second")
    # The first: a private Redis (its session URL does not answer); the cache tier follows it.
    a = {
        **_stack_settings(f"redis://127.0.0.1:{free_port()}/0"),
        "BFF_PRIVATE_REDIS_PORT": str(free_port()),
    }
    # The second: the tests' Redis, under a prefix of its own.
    b = _stack_settings(REDIS_URL, redis_prefix)
    try:
        up_a = _run(first, ["up", "--detach"], a)
        assert up_a.returncode == 0, up_a.stdout + up_a.stderr
        env_a = exported(up_a.stdout)
        private_redis = f"redis://127.0.0.1:{a['BFF_PRIVATE_REDIS_PORT']}/0"
        assert env_a["BFF_REDIS_SESSION_URL"] == private_redis, up_a.stdout
        assert env_a["BFF_REDIS_CACHE_URL"] == private_redis, "the cache tier left the session's"
        assert env_a["BFF_DATABASE_URL"].startswith(
            f"postgresql://postgres@127.0.0.1:{a['BFF_PRIVATE_PG_PORT']}/"
        ), up_a.stdout

        # A port the first stack holds is refused, in one line naming it and what to set.
        for taken, setting in (
            ({"BFF_PRIVATE_PG_PORT": a["BFF_PRIVATE_PG_PORT"]}, "BFF_PRIVATE_PG_PORT"),
            ({"PORT": a["PORT"]}, "PORT="),
        ):
            refused = _run(second, ["up", "--detach"], {**b, **taken})
            lines = (refused.stdout + refused.stderr).splitlines()
            assert refused.returncode == 1, lines
            port = next(iter(taken.values()))
            assert len(lines) == 1 and f"port {port} " in lines[0] and setting in lines[0], lines
            assert _run(second, ["status"], b).returncode == 3, "a refused up left processes"

        up_b = _run(second, ["up", "--detach"], b)
        assert up_b.returncode == 0, up_b.stdout + up_b.stderr
        env_b = exported(up_b.stdout)
        assert env_b["BFF_REDIS_CACHE_URL"] == env_b["BFF_REDIS_SESSION_URL"] == REDIS_URL
        assert f"using Redis at {REDIS_URL.split('://')[1]}" in up_b.stdout, up_b.stdout

        states_a = _states(_run(first, ["status"], a).stdout)
        states_b = _states(_run(second, ["status"], b).stdout)
        assert set(states_a) == {"bff", "sim", "pubsub", "redis", "postgres"}, states_a
        assert set(states_b) == {"bff", "sim", "pubsub", "postgres"}, states_b
        assert all(s == "running" for _, s in [*states_a.values(), *states_b.values()])
        assert not {p for p, _ in states_a.values()} & {p for p, _ in states_b.values()}
        for env, answer in ((a, env_a), (b, env_b)):
            assert answer["PUBSUB_EMULATOR_HOST"] == env["PUBSUB_EMULATOR_HOST"]
            bff = f"http://127.0.0.1:{env['PORT']}"
            assert httpx.get(f"{bff}/health/ready").status_code == 200
        # Each BFF names its subscriptions with an id of its own, on its own emulator (one
        # per worker process: ``<instance>-w<i>``, edge/workers.py).
        instances_a, instances_b = (
            {re.sub(r"-w[0-9]+$", "", i) for i in _instances(env_a["PUBSUB_EMULATOR_HOST"])},
            {re.sub(r"-w[0-9]+$", "", i) for i in _instances(env_b["PUBSUB_EMULATOR_HOST"])},
        )
        assert len(instances_a) == len(instances_b) == 1, (instances_a, instances_b)
        assert instances_a != instances_b and "local-1" not in instances_a | instances_b

        down_a = _run(first, ["down"], a)
        assert down_a.returncode == 0, down_a.stdout + down_a.stderr
        pids_a = [pid for pid, _ in states_a.values()]
        wait_until(lambda: not any(map(_running, pids_a)), 10, "the first stack's processes to end")
        after_b = _states(_run(second, ["status"], b).stdout)
        assert after_b == states_b, "down in the first stack touched the second"
        assert httpx.get(f"http://127.0.0.1:{b['PORT']}/health/ready").status_code == 200
    finally:
        for checkout, env in ((first, a), (second, b)):
            _run(checkout, ["down"], env)
            if os.geteuid() == 0:  # root's private clusters live outside the checkout
                shutil.rmtree(private_pg_dir("pg", checkout / ".state").parent, ignore_errors=True)
    for env in (a, b):
        ports = {
            key: int(env[key].rsplit(":", 1)[-1])
            for key in (*_PORT_SETTINGS, "SIM_URL", "PUBSUB_EMULATOR_HOST")
            if key in env
        }
        for key, number in ports.items():
            assert not port_open(number), f"{key}'s port {number} still open after down"


def test_default_emulator_port_held_by_another_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nothing set, and something this stack did not start answers on the emulator's default
    port: refuse (naming the port and PUBSUB_EMULATOR_HOST) rather than subscribe to it."""
    monkeypatch.setattr(procs, "RUN", tmp_path / "run")  # this stack has started nothing
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        monkeypatch.setattr(deps, "DEFAULT_EMULATOR_HOST", f"127.0.0.1:{port}")
        with pytest.raises(PortTaken, match=f"port {port} .*PUBSUB_EMULATOR_HOST="):
            deps.ensure_pubsub("")
        # Named on purpose, it is used (and said so).
        assert deps.ensure_pubsub(f"127.0.0.1:{port}") == f"127.0.0.1:{port}"


def test_private_redis_port_held_by_another_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(procs, "RUN", tmp_path / "run")
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        monkeypatch.setenv("BFF_PRIVATE_REDIS_PORT", str(port))
        with pytest.raises(PortTaken, match=f"port {port} .*BFF_PRIVATE_REDIS_PORT"):
            deps.ensure_redis(f"redis://127.0.0.1:{free_port()}/0")


# --- bootstrap: pip's output goes to a log (issue #10, finding 10) ------------------------------

_FAKE_PIP = """#!/usr/bin/env bash
for i in $(seq 80); do echo "WARNING: pip says something ($i)" >&2; done
exit "${FAKE_PIP_STATUS:-0}"
"""


@pytest.mark.parametrize("status", [0, 1])
def test_first_install_prints_one_line(tmp_path: Path, status: int) -> None:
    """``ensure_venv`` installing the project says one line (two on failure, naming the log);
    pip's output, warnings included, is in ``.state/logs/``."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(_FAKE_PIP)
    python.chmod(0o755)
    env = {**clean_env(), "ROOT": str(tmp_path), "FAKE_PIP_STATUS": str(status)}
    done = subprocess.run(
        ["bash", "-c", 'source "$1" && ensure_venv', "-", str(ROOT / "ops" / "bootstrap.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    log = tmp_path / ".state" / "logs" / "pip-install.log"
    lines = (done.stdout + done.stderr).splitlines()
    assert lines[0] == "[stack] installing the project and its dev extras into .venv"
    if status == 0:
        assert done.returncode == 0 and lines == lines[:1], lines
        assert (tmp_path / ".venv" / ".bff-installed").exists()
    else:
        assert done.returncode == 1 and lines[1:] == [
            f"[stack] pip install failed; full log: {log}"
        ]
    assert log.read_text().count("WARNING: pip says") == 160
