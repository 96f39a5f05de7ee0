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
STATE = ROOT / (os.environ.get("BFF_STACK_STATE") or ".state")  # relative: to the checkout
RUN = STATE / "run"
LOGS = STATE / "logs"


class Record(msgspec.Struct, kw_only=True):
    """One started process: enough to find it again and to tell it is still ours."""

    name: str
    pid: int
    marker: str  # a string its command line contains (guards against pid reuse)
    port: int = 0
    stop: list[str] = msgspec.field(default_factory=list)  # custom stop command (pg_ctl)
    started: int = 0  # its start time (/proc/<pid>/stat, clock ticks): tells a reused pid apart


class StackError(Exception):
    """Why ``up`` cannot go on, in one line that says what to do about it."""


class PortTaken(StackError):
    """A port the stack needs answers, and the process on it was not started by this
    checkout's stack: the stack refuses rather than share it silently."""

    def __init__(self, port: int, what: str, remedy: str) -> None:
        super().__init__(
            f"port {port} ({what}) is in use by a process this checkout's stack did not start:"
            f" {remedy}"
        )
        self.port = port


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
    record = Record(
        name=name,
        pid=proc.pid,
        marker=marker or argv[-1],
        port=port,
        started=start_time(proc.pid),
    )
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


def start_time(pid: int) -> int:
    """When ``pid`` started (clock ticks since boot), or 0 when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # Field 22; the command name (field 2) may hold spaces and parentheses: count from its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else 0


def alive(record: Record) -> bool:
    if record.pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    if record.started and start_time(record.pid) != record.started:
        return False  # the pid was reused by another process
    return record.marker in cmdline


def owner(port: int) -> Record | None:
    """The live process this checkout's stack started on ``port``, if any."""
    return next((r for r in records() if r.port == port and alive(r)), None)


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
