"""Child processes the stack owns, recorded in the state folder so ``down`` stops exactly them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("BFF_STACK_STATE", ROOT / ".state"))
RUN = STATE / "run"
LOGS = STATE / "logs"


class Record(msgspec.Struct, kw_only=True):
    """One started process: enough to find it again and to tell it is still ours."""

    name: str
    pid: int
    marker: str  # a string its command line contains (guards against pid reuse)
    port: int = 0
    stop: list[str] = msgspec.field(default_factory=list)  # custom stop command (pg_ctl)


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


def spawn(
    name: str, argv: list[str], env: Mapping[str, str], *, port: int = 0, marker: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (so Ctrl-C in a shell reaches only us) and record it."""
    LOGS.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        start_new_session=True,
    )
    record = Record(name=name, pid=proc.pid, marker=marker or argv[-1], port=port)
    save(record)
    # Between fork and exec the child still shows our command line: wait for the exec.
    wait_for(lambda: alive(record) or proc.poll() is not None, 10, f"{name} to exec")
    return proc


def save(record: Record) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / f"{record.name}.json").write_bytes(msgspec.json.encode(record))


def records() -> list[Record]:
    if not RUN.exists():
        return []
    found = [msgspec.json.decode(p.read_bytes(), type=Record) for p in sorted(RUN.glob("*.json"))]
    order = ["bff", "sim", "pubsub", "redis", "postgres"]
    return sorted(found, key=lambda r: order.index(r.name) if r.name in order else -1)


def alive(record: Record) -> bool:
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return record.marker in cmdline


def stop(record: Record, timeout: float = 20.0) -> None:
    """Stop one recorded process (its whole process group), then forget it."""
    if record.stop:
        subprocess.run(record.stop, capture_output=True, check=False)
    elif alive(record):
        _signal_group(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(record) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(record):
            _signal_group(record.pid, signal.SIGKILL)
    (RUN / f"{record.name}.json").unlink(missing_ok=True)


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def log_tail(name: str, lines: int = 30) -> str:
    path = LOGS / f"{name}.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
