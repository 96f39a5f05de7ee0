"""Real processes for integration tests: the BFF, the simulator, private Redis/Postgres servers.

Each is started on a free port with its own state, waited for by polling with a deadline (never
by sleeping a fixed time), and stopped at the end of the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from ops.localstack.deps import as_pg_user, initdb_argv, pg_binary, redis_argv

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=0.5).status_code < 500
        except httpx.HTTPError:
            return False

    return check


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class SilentServer:
    """A hung dependency: a TCP server on a free port that accepts every connection and never
    sends a byte (the connection succeeds, every request waits forever). Use as a context
    manager; ``url("redis")`` / ``url("postgresql")`` point a client at it."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(0.1)  # so the accept loop sees ``close``
        self.port: int = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    def url(self, scheme: str) -> str:
        if scheme == "postgresql":
            return f"postgresql://postgres@127.0.0.1:{self.port}/silent"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read from or written to

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self.accepted:
            conn.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Proc:
    """A child process with its output in a log file (printed when a test fails to start it)."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._log.close()
        return self.popen.returncode


class ServiceProcess(Proc):
    """``python -m edge`` (the BFF) or ``python -m ops.sim`` (the simulator) on a free port."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        port: int | None = None,
        name: str | None = None,
        ready_path: str = "/health/live",
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {"PORT": str(self.port), "PYTHONUNBUFFERED": "1", **env}
        super().__init__(name or module, [sys.executable, "-m", module], full_env, log_dir)
        try:
            wait_until(self._alive_and(http_ok(self.url + ready_path)), 30, f"{module} to start")
        except AssertionError:
            self.stop()
            raise AssertionError(f"{module} did not start:\n{self.output()[-4000:]}") from None

    def _alive_and(self, check: Callable[[], bool]) -> Callable[[], bool]:
        def combined() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.output()[-4000:]}")
            return check()

        return combined


class PrivateRedis(Proc):
    """A throwaway redis-server on a free port, which a test may stop and start again."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log_dir = log_dir
        self.start()

    def start(self) -> None:
        argv = redis_argv(self.port, self._log_dir)
        super().__init__(f"redis-{self.port}", argv, {}, self._log_dir)
        wait_until(lambda: port_open(self.port), 10, "private redis")


def _pg_bin(name: str) -> str:
    found = pg_binary(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found (install postgresql)")
    return found


class PrivatePostgres:
    """A throwaway Postgres cluster (initdb + pg_ctl) a test may stop and start again.

    As root, the cluster runs as ``nobody`` (Postgres refuses to run as root).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bff-pg-"))
        self.data = self.dir / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        os.chmod(self.dir, 0o777)
        self._run(initdb_argv(_pg_bin("initdb"), self.data))
        self.start()

    def _run(self, argv: list[str]) -> None:
        subprocess.run(as_pg_user(argv), check=True, capture_output=True, cwd="/tmp")

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
        self._run(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                opts,
                "-w",
                "-t",
                "30",
                "-l",
                str(self.dir / "pg.log"),
                "start",
            ]
        )

    def stop(self) -> None:
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
