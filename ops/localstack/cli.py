"""``./ops/stack`` commands: up [--detach], down, status, env, migrate, test, types, lock,
smoke-image."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx

from edge.workers import available_cpus
from ops.localstack import cidrills, deps, instances, lockfiles, smoke, types
from ops.localstack.procs import (
    LOGS,
    ROOT,
    RUN,
    PortTaken,
    StackError,
    alive,
    free_port,
    log_tail,
    port_open,
    records,
    say,
    spawn,
    stop,
    wait_for,
)

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/bff_backoffice"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
ENV_FILE = RUN / "env"


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def service_settings() -> dict[str, str]:
    """Where the simulator and the BFF listen. No ``BFF_INSTANCE_ID``: unless the caller sets
    one, each BFF process generates its own, so two stacks never share a subscription."""
    return {
        "PORT": _env("PORT", "8080"),
        "BFF_ADMIN_PORT": _env("BFF_ADMIN_PORT", "8081"),
        "SIM_URL": _env("SIM_URL", "http://127.0.0.1:8090"),
    }


def _port(name: str, value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise StackError(f"{name} must be a port number, not {value!r}")
    return int(value)


def sim_port(env: dict[str, str]) -> int:
    port = deps.host_port(env["SIM_URL"], 80)[1]
    return _port("SIM_URL's port", str(port))


def _bff_workers() -> int:
    """The BFF's worker processes: ``BFF_WORKERS``, by default one per CPU available."""
    value = os.environ.get("BFF_WORKERS", "")
    return int(value) if value.isdigit() and int(value) > 0 else available_cpus()


def check_service_ports(env: dict[str, str]) -> None:
    """Refuse, before anything starts, when a port the simulator or the BFF would listen on is
    in use (``up`` already stopped if this stack's own simulator or BFF were running)."""
    wanted = [
        (_port("PORT", env["PORT"]), "the BFF", "PORT={}"),
        (
            _port("BFF_ADMIN_PORT", env["BFF_ADMIN_PORT"]),
            "the BFF's admin endpoint",
            "BFF_ADMIN_PORT={} (0: no admin endpoint)",
        ),
        (sim_port(env), "the simulator", "SIM_URL=http://127.0.0.1:{}"),
    ]
    admin = _port("BFF_ADMIN_PORT", env["BFF_ADMIN_PORT"])
    # worker i serves the admin endpoint on BFF_ADMIN_PORT + i (edge/workers.py)
    wanted += [
        (admin + i, f"BFF worker {i}'s admin endpoint", "BFF_ADMIN_PORT={} (0: no admin endpoint)")
        for i in range(1, _bff_workers())
        if admin and admin + i <= 65535
    ]
    for port, what, setting in wanted:
        if port and port_open(port):
            raise PortTaken(port, what, f"set {setting.format(free_port())} or another free port")


def resolve_dependencies(services: dict[str, str]) -> dict[str, str]:
    """Environment for the simulator and BFF, with Postgres, Redis and Pub/Sub found or started.
    Each one is this stack's own, or a server the settings name (said on the console): never a
    port that merely happens to answer."""
    pg_url, _ = deps.ensure_postgres(_env("BFF_DATABASE_URL", DEFAULT_PG))
    session_url, _ = deps.ensure_redis(_env("BFF_REDIS_SESSION_URL", DEFAULT_REDIS))
    # The cache tier follows the session tier unless it is named on its own.
    cache_url = os.environ.get("BFF_REDIS_CACHE_URL") or session_url
    if cache_url != session_url:
        cache_url, _ = deps.ensure_redis(cache_url)
    env = {
        **services,
        "BFF_DATABASE_URL": pg_url,
        "BFF_REDIS_SESSION_URL": session_url,
        "BFF_REDIS_CACHE_URL": cache_url,
    }
    if os.environ.get("BFF_BUS") != "embedded":
        emulator = deps.ensure_pubsub(os.environ.get("PUBSUB_EMULATOR_HOST", ""))
        env["PUBSUB_EMULATOR_HOST"] = emulator or ""
        env["BFF_BUS"] = "pubsub" if emulator else "embedded"
    else:
        env["BFF_BUS"] = "embedded"
        env["PUBSUB_EMULATOR_HOST"] = ""
    return env


def run_migrations(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "edge.migrations", "--create-database"],
        env={**os.environ, **env},
        check=True,
    )


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def check_ports(env: dict[str, str], layout: instances.Layout | None) -> None:
    """``check_service_ports``, or with ``--instances N`` the ports of the N-instance layout."""
    if layout is None:
        check_service_ports(env)
    else:
        instances.check_ports(layout, sim_port(env))


def start_services(env: dict[str, str], layout: instances.Layout | None = None) -> dict[str, str]:
    """Start the simulator and the BFF (with ``layout``: N BFF processes behind a balancer);
    return what ``./ops/stack env`` adds to ``env_lines``."""
    bff_port = int(env["PORT"])
    check_ports(env, layout)  # again: something may have taken one while the rest started
    spawn(
        "sim",
        [sys.executable, "-m", "ops.sim"],
        {**env, "PORT": str(sim_port(env))},
        port=sim_port(env),
        marker="ops.sim",
    )
    _wait_service("sim", f"{env['SIM_URL']}/health", 60)
    if layout is not None:
        return instances.start(layout, env, _wait_service)
    spawn("bff", [sys.executable, "-m", "edge"], env, port=bff_port, marker="-m edge")
    _wait_service("bff", f"http://127.0.0.1:{bff_port}/health/ready", 180)
    return {}


def _wait_service(name: str, url: str, timeout: float) -> None:
    record = next(r for r in records() if r.name == name)

    def check() -> bool:
        if not alive(record):
            raise SystemExit(f"[stack] {name} exited:\n{log_tail(name)}")
        return _ready(url)

    try:
        wait_for(check, timeout, name)
    except TimeoutError:
        raise SystemExit(f"[stack] {name} not ready at {url}:\n{log_tail(name)}") from None
    say(f"{name} ready at {url.split('/health')[0]}")


def env_lines(env: dict[str, str], extra: dict[str, str] | None = None) -> str:
    exported = {
        "BFF_URL": f"http://127.0.0.1:{env['PORT']}",
        "SIM_URL": env["SIM_URL"],
        "BFF_ADMIN_URL": f"http://127.0.0.1:{env['BFF_ADMIN_PORT']}",
        "BFF_DATABASE_URL": env["BFF_DATABASE_URL"],
        "BFF_REDIS_SESSION_URL": env["BFF_REDIS_SESSION_URL"],
        "BFF_REDIS_CACHE_URL": env["BFF_REDIS_CACHE_URL"],
        "PUBSUB_EMULATOR_HOST": env.get("PUBSUB_EMULATOR_HOST", ""),
        # ./ops/bus reads the embedded bus's streams under this prefix
        "BFF_REDIS_PREFIX": env.get("BFF_REDIS_PREFIX")
        or os.environ.get("BFF_REDIS_PREFIX", "bff"),
        **(extra or {}),  # --instances N: BFF_INSTANCE_URLS, BFF_ADMIN_URLS, BFF_FAULTPROXY_URL
    }
    return "".join(f"export {k}={v}\n" for k, v in exported.items())


def cmd_up(args: argparse.Namespace) -> int:
    running = [r.name for r in records() if alive(r) and instances.is_service(r.name)]
    if running:
        say(f"already running ({', '.join(running)}); ./ops/stack down first")
        if ENV_FILE.exists():
            print(ENV_FILE.read_text(), end="")
        return 0 if args.detach else 1
    try:
        services = service_settings()
        layout = instances.prepare(services, args.instances) if args.instances != 1 else None
        check_ports(services, layout)
        env = resolve_dependencies(services)
        run_migrations(env)
        extra = start_services(env, layout)
    except StackError as exc:
        say(str(exc))
        _stop_all()
        return 1
    except (SystemExit, Exception) as exc:
        say(f"start failed: {exc}")
        _stop_all()
        return 1
    ENV_FILE.write_text(env_lines(env, extra))
    print(env_lines(env, extra), end="")
    if args.detach:
        say("running in the background; ./ops/stack down stops it")
        return 0
    return _foreground()


def _foreground() -> int:
    """Run until Ctrl-C/SIGTERM or until a service dies; then stop everything we started."""
    say("running; Ctrl-C stops everything")
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    while not stopping:
        dead = [r.name for r in records() if instances.is_service(r.name) and not alive(r)]
        if dead:
            say(f"{dead[0]} exited:\n{log_tail(dead[0])}")
            code = 1
            break
        time.sleep(0.5)
    _stop_all()
    return code


def _stop_all() -> list[str]:
    """Stop what this stack started (the records in its state folder), and nothing else."""
    found = records()
    for record in found:
        say(f"stopping {record.name}")
        stop(record)
    ENV_FILE.unlink(missing_ok=True)
    return [r.name for r in found]


def cmd_down(args: argparse.Namespace) -> int:
    if not _stop_all():
        say("nothing to stop")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    found = records()
    if not found:
        say("not running")
        return 3
    for record in found:
        state = "running" if alive(record) else "dead"
        print(f"{record.name:10} pid {record.pid:<8} port {record.port:<6} {state}")
    if ENV_FILE.exists():
        bff = next((r for r in found if r.name in ("bff", "balancer")), None)
        if bff is not None:
            ok = _ready(f"http://127.0.0.1:{bff.port}/health/ready")
            print(f"bff ready: {'yes' if ok else 'no'}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    if not ENV_FILE.exists():
        say("not running: ./ops/stack up --detach")
        return 1
    print(ENV_FILE.read_text(), end="")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    env = {"BFF_DATABASE_URL": deps.ensure_postgres(_env("BFF_DATABASE_URL", DEFAULT_PG))[0]}
    run_migrations(env)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Lint, types and the test suite, against throwaway databases and Redis prefixes."""
    work = Path(tempfile.mkdtemp(prefix="bff-test-"))
    os.chmod(work, 0o777)
    stops: list[list[str]] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pg_url, pg_stop = deps.ensure_postgres(
            _env("BFF_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
            base=work / "pg",
            port=free_port(),
            record=False,
        )
        if pg_stop:
            stops.append(pg_stop)
        redis_url = _env("BFF_TEST_REDIS_URL", DEFAULT_REDIS)
        host, port = deps.host_port(redis_url, 6379)
        if not port_open(port, host):
            proc, port = _private_test_redis(work)
            procs.append(proc)
            redis_url = f"redis://127.0.0.1:{port}/0"
        env = {**os.environ, "BFF_TEST_PG_URL": pg_url, "BFF_TEST_REDIS_URL": redis_url}
        return _run_checks(env, args.pytest_args)
    finally:
        for command in stops:
            subprocess.run(command, capture_output=True, check=False)
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def _private_test_redis(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    say(f"starting a throwaway Redis for the tests on 127.0.0.1:{port}")
    proc = subprocess.Popen(
        deps.redis_argv(port, work),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(partial(port_open, port), 15, "test redis")
    return proc, port


def _workers(pytest_args: list[str]) -> list[str]:
    """One pytest worker per core (pytest-xdist) unless the caller chose: every test owns its
    databases, Redis prefix, ports and processes, so workers never share state."""
    chosen = any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in pytest_args)
    return [] if chosen else ["-n", str(max(1, min(os.cpu_count() or 1, 4)))]


def _run_checks(env: dict[str, str], pytest_args: list[str]) -> int:
    bin_dir = Path(sys.executable).parent
    steps = [
        ("ruff check", [str(bin_dir / "ruff"), "check", "."]),
        ("ruff format", [str(bin_dir / "ruff"), "format", "--check", "."]),
        ("mypy --strict", [str(bin_dir / "mypy")]),
        ("import layers", [str(bin_dir / "lint-imports")]),
        ("desktop types", [sys.executable, "-m", "ops.localstack", "types", "--check"]),
        ("pytest", [str(bin_dir / "pytest"), *_workers(pytest_args), *pytest_args]),
    ]
    if not pytest_args:  # the whole run (CI): the image's install and start, and the drills
        module = [sys.executable, "-m", "ops.localstack"]
        steps += [("smoke image", [*module, "smoke-image"]), ("chaos drills", [*module, "drills"])]
    failed = []
    for name, argv in steps:
        say(f"running {name}")
        if subprocess.run(argv, env=env, cwd=ROOT, check=False).returncode != 0:
            failed.append(name)
    if failed:
        say(f"FAILED: {', '.join(failed)}")
        return 1
    say("all checks passed")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="./ops/stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole local system (foreground; --detach: background)")
    up.add_argument("--detach", action="store_true")
    up.add_argument(
        "--instances",
        type=int,
        default=1,
        metavar="N",
        help="N BFF processes behind a local nginx on PORT, with the dependency fault proxy",
    )
    up.set_defaults(run=cmd_up)
    sub.add_parser("down", help="stop everything up started").set_defaults(run=cmd_down)
    sub.add_parser("status", help="what is running").set_defaults(run=cmd_status)
    sub.add_parser("env", help="print export lines for BFF_URL, SIM_URL, …").set_defaults(
        run=cmd_env
    )
    sub.add_parser("migrate", help="apply ledger migrations").set_defaults(run=cmd_migrate)
    test = sub.add_parser(
        "test", help="ruff, mypy --strict, lint-imports and pytest (extra args go to pytest)"
    )
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    test.set_defaults(run=cmd_test)
    types.add_parser(sub)  # types [--check]: the desktop's TypeScript types
    lockfiles.add_parser(sub)  # lock [--upgrade] [--check]: requirements/*.lock
    smoke.add_parser(sub)  # smoke-image [--python P]: the image's install and start, no Docker
    cidrills.add_parser(sub)  # drills: ./ops/chaos drill --ci on a throwaway 3-instance stack
    args = parser.parse_args(argv)
    LOGS.mkdir(parents=True, exist_ok=True)
    try:
        raise SystemExit(args.run(args))
    except (deps.MissingDependency, StackError) as exc:
        say(str(exc))
        raise SystemExit(1) from None
