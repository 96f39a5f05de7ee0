"""``./ops/stack smoke-image [--python PATH]``: the production image's install and start, without
Docker (which cannot run on these machines).

It does what the ``Dockerfile`` does, step for step, and then runs the result the way the image
runs: the wheel is built from the same sources with the locked build backend, installed with no
dev extras into a fresh virtualenv from ``requirements/runtime.lock`` (``--require-hashes``,
wheels only), pip removed; migrations run as their own command (as the Cloud Run job does);
then the service starts with the image's entry point and settings (production mode), from a
read-only working directory, with a read-only virtualenv and only a scratch ``TMPDIR`` writable
(as ``nobody`` when run as root: the image's user is not root either). It must become ready, and
exit 0 within its drain grace on SIGTERM. The simulator (a dev tool, not in the image) runs from
the checkout's ``.venv``. Prints one PASS/FAIL line per check; exits 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from edge.settings import load_settings
from edge.workers import STOP_MARGIN_S
from ops.localstack.imagebuild import (
    SERVICE_PACKAGES,
    Launch,
    Scratch,
    build_wheel,
    default_python,
    freeze,
    install_runtime,
    installed_top_level,
    run,
    tail,
    thaw,
    version_of,
)
from ops.localstack.procs import ROOT, StackError, free_port, say
from ops.localstack.throwaway import postgres, redis_server
from schemas.upstream import UPSTREAM_NAMES

READY_TIMEOUT_S = 120.0
SIM_TIMEOUT_S = 60.0


@dataclass
class Report:
    """The checks made so far, each printed as it is made."""

    failed: list[str] = field(default_factory=list)
    passed: int = 0

    def check(self, ok: bool, what: str) -> bool:
        print(f"{'PASS' if ok else 'FAIL'} {what}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)
        return ok


def prepare_folders(scratch: Scratch) -> None:
    """The scratch root is traversable by the service's user; its working directory is
    read-only; ``tmp`` is the only place it can write (as /tmp in the image)."""
    scratch.root.chmod(0o755)
    scratch.logs.mkdir()
    scratch.readonly.mkdir(mode=0o555)
    scratch.readonly.chmod(0o555)
    scratch.tmp.mkdir()
    scratch.tmp.chmod(0o1777)


def as_image(scratch: Scratch, env: Mapping[str, str]) -> Launch:
    """The image's way to start: its environment, a read-only working directory, and not root
    (as root: ``nobody``, who can write nothing here but ``TMPDIR``, unless the interpreter
    lives where ``nobody`` cannot reach it, e.g. under /root)."""
    mine = Launch(env=env, cwd=scratch.readonly)
    if os.geteuid() != 0:
        return mine
    nobody = pwd.getpwnam("nobody")
    theirs = Launch(env=env, cwd=scratch.readonly, user=nobody.pw_uid, group=nobody.pw_gid)
    python = str(scratch.venv / "bin" / "python")
    try:
        with open(os.devnull, "wb") as sink:
            reachable = theirs.popen([python, "-c", "import edge"], sink).wait() == 0
    except PermissionError:  # the interpreter the virtualenv links to is out of its reach
        reachable = False
    return theirs if reachable else mine


def image_env(scratch: Scratch, settings: Mapping[str, str]) -> dict[str, str]:
    """The image's environment (Dockerfile ``ENV``) plus what a deployment sets."""
    return {
        "PATH": f"{scratch.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(scratch.tmp),
        "TMPDIR": str(scratch.tmp),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "BFF_MODE": "production",
        **settings,
    }


def image_command(scratch: Scratch, module: str, *args: str) -> list[str]:
    """The image's entry point (``/opt/venv/bin/python -m edge``) or the migration job's."""
    return [str(scratch.venv / "bin" / "python"), "-m", module, *args]


@contextlib.contextmanager
def process(argv: list[str], log: Path, launch: Launch) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, stopped (then killed) on the way out."""
    with log.open("ab") as out:
        child = launch.popen(argv, out)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(url: str, child: subprocess.Popen[bytes], timeout: float) -> float | None:
    """Seconds until ``url`` answered 200, or None (timed out, or the process exited)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout and child.poll() is None:
        if answers(url):
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def serving_workers(log: Path) -> set[int]:
    """The workers whose ``serving`` line is in the log (JSON lines, edge/logs.py)."""
    found = set()
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("msg") == "serving":
                found.add(int(entry.get("worker", 0)))
    return found


def wait_serving(log: Path, workers: int, child: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether every worker said it serves (a ready answer comes from any one of them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        if len(serving_workers(log)) >= workers:
            return True
        time.sleep(0.2)
    return False


def exits_within(child: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def stop_deadline(env: Mapping[str, str]) -> float:
    """How long the service may take to exit after SIGTERM (edge/workers.py's stop deadline)."""
    settings = load_settings(env)
    return settings.sse_drain_s + settings.shutdown_grace_s + STOP_MARGIN_S


def smoke(scratch: Scratch, python: str, report: Report) -> None:
    prepare_folders(scratch)
    started = time.monotonic()
    wheel = build_wheel(scratch)
    took = time.monotonic() - started
    report.check(True, f"wheel built from the image's sources: {wheel.name} ({took:.0f}s)")
    started = time.monotonic()
    install_runtime(scratch, python, wheel)
    took = time.monotonic() - started
    report.check(
        True,
        f"runtime lock and wheel installed into a fresh virtualenv ({version_of(python)},"
        f" {took:.0f}s)",
    )
    top_level = installed_top_level(scratch)
    report.check(
        top_level == SERVICE_PACKAGES,
        f"the wheel holds only {', '.join(sorted(SERVICE_PACKAGES))} (found: {sorted(top_level)})",
    )
    freeze(scratch.venv)
    prefix = f"smoke{os.getpid()}"
    with postgres(scratch.root) as database_url, redis_server(scratch.root, prefix) as redis_url:
        run_service(scratch, report, _settings(database_url, redis_url, prefix))


def _settings(database_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    """What a deployment sets: production mode, but upstreams without Google ID tokens (there is
    no metadata server here) and the embedded bus (no Pub/Sub here)."""
    return {
        "PORT": str(free_port()),
        "BFF_PUBLIC_URL": "https://bff.smoke.invalid",
        "BFF_UPSTREAM_AUTH": "none",
        "BFF_BUS": "embedded",
        "BFF_WORKERS": "2",
        "BFF_DATABASE_URL": database_url,
        "BFF_REDIS_SESSION_URL": redis_url,
        "BFF_REDIS_CACHE_URL": redis_url,
        "BFF_REDIS_PREFIX": prefix,
    }


def run_service(scratch: Scratch, report: Report, settings: dict[str, str]) -> None:
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    upstreams = {f"BFF_UPSTREAM_{n.upper()}_URL": f"{sim_url}/{n}" for n in UPSTREAM_NAMES}
    env = image_env(scratch, {**settings, **upstreams})
    image = as_image(scratch, env)
    migrate = image_command(scratch, "edge.migrations", "--create-database")
    run(migrate, scratch.logs / "migrate.log", image)
    report.check(True, "migrations applied by their own command (python -m edge.migrations)")
    sim_env = {**os.environ, "PORT": str(sim_port), "SIM_URL": sim_url}
    from_checkout = Launch(env=sim_env, cwd=ROOT)
    with process([sys.executable, "-m", "ops.sim"], scratch.logs / "sim.log", from_checkout) as sim:
        if not report.check(
            wait_ready(f"{sim_url}/health", sim, SIM_TIMEOUT_S) is not None,
            "simulator (from the checkout's .venv) ready",
        ):
            return
        service_log = scratch.logs / "service.log"
        with process(image_command(scratch, "edge"), service_log, image) as service:
            check_service(report, service, env, service_log)


def check_service(
    report: Report, service: subprocess.Popen[bytes], env: Mapping[str, str], log: Path
) -> None:
    base = f"http://127.0.0.1:{env['PORT']}"
    took = wait_ready(f"{base}/health/ready", service, READY_TIMEOUT_S)
    where = f"read-only cwd and venv, TMPDIR only, user {pwd.getpwuid(_uid(service)).pw_name}"
    if not report.check(took is not None, f"GET /health/ready 200 ({where})"):
        print(tail(log), flush=True)
        return
    report.check(True, f"ready {took:.1f}s after start, production mode")
    report.check(answers(f"{base}/health/live"), "GET /health/live 200")
    workers = int(env["BFF_WORKERS"])
    report.check(
        wait_serving(log, workers, service, READY_TIMEOUT_S),
        f"all {workers} worker processes serving (one port, SO_REUSEPORT)",
    )
    service.send_signal(signal.SIGTERM)
    deadline = stop_deadline(env)
    code = exits_within(service, deadline)
    report.check(code == 0, f"SIGTERM: exited {code} within {deadline:.0f}s (drain, then 0)")
    report.check("Traceback" not in log.read_text(errors="replace"), "no traceback in its log")
    if code != 0:
        print(tail(log), flush=True)


def _uid(child: subprocess.Popen[bytes]) -> int:
    with contextlib.suppress(OSError):
        return os.stat(f"/proc/{child.pid}").st_uid
    return os.geteuid()


def cmd_smoke_image(args: argparse.Namespace) -> int:
    started = time.monotonic()
    scratch = Scratch(Path(tempfile.mkdtemp(prefix="bff-smoke-")))
    report = Report()
    try:
        smoke(scratch, args.python or default_python(), report)
    except StackError as exc:
        report.check(False, str(exc))
    finally:
        thaw(scratch.root)
        shutil.rmtree(scratch.root, ignore_errors=True)
    took = time.monotonic() - started
    checks = report.passed + len(report.failed)
    if report.failed:
        say(f"smoke-image FAILED: {len(report.failed)} of {checks} checks ({took:.0f}s)")
        return 1
    say(f"smoke-image passed ({report.passed} checks, {took:.0f}s)")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``smoke-image`` on ``./ops/stack``'s subcommands."""
    smoke_image = sub.add_parser(
        "smoke-image",
        help="install and start the service as the production image does (no Docker needed)",
    )
    smoke_image.add_argument(
        "--python",
        help="the virtualenv's interpreter (default: Debian's python3 when it is 3.11-3.13, else"
        " the checkout's; the image has Debian 13's 3.13)",
    )
    smoke_image.set_defaults(run=cmd_smoke_image)
