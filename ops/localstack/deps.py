"""Find the stateful dependencies at their configured URLs, or start private ones from the
system's binaries (installing them with apt when running as root)."""

from __future__ import annotations

import fcntl
import functools
import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ops.localstack.procs import (
    STATE,
    PortTaken,
    Record,
    StackError,
    free_port,
    log_tail,
    owner,
    port_open,
    save,
    say,
    spawn,
    start_time,
    wait_for,
)

# Where the private servers listen unless BFF_PRIVATE_PG_PORT / BFF_PRIVATE_REDIS_PORT say
# otherwise (settings of the stack, not of the service: edge/settings.py never reads them), and
# the emulator's address unless PUBSUB_EMULATOR_HOST says otherwise.
PRIVATE_PG_PORT = 55432
PRIVATE_REDIS_PORT = 56379
DEFAULT_EMULATOR_HOST = "127.0.0.1:8085"
LOOPBACK = ("127.0.0.1", "localhost")


class MissingDependency(Exception):
    """A system package is missing and cannot be installed from here; the message says how."""


APT_LOCK = Path(tempfile.gettempdir()) / "bff-stack-apt.lock"
APT_LOCK_WAIT_S = 600


def apt_install(*packages: str) -> None:
    """Install ``packages`` with apt-get (root only). One install at a time on the machine:
    parallel test workers and a second stack queue on a file lock (apt and dpkg would refuse
    the second outright), and a queued install of what the first just installed is a no-op."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise MissingDependency(f"run: sudo apt-get install -y {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT_S}"]  # and someone else's apt run
    with open(APT_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        say(f"installing {' '.join(packages)} with apt-get")
        for argv in (["update", "-qq"], ["install", "-y", "-qq", *packages]):
            subprocess.run(["apt-get", *wait, *argv], check=True, env=env, capture_output=True)


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def stack_port(name: str, default: int) -> int:
    """A port setting of the stack itself (``BFF_PRIVATE_PG_PORT``, …), else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{name} must be a port number (1-65535), not {raw!r}")
    return int(raw)


def where(url: str) -> str:
    """``host:port/path`` of a URL, without its scheme and credentials (for messages)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}{parts.path}" if parts.port else f"{parts.hostname}"


def ours(host: str, port: int) -> bool:
    """Whether ``host:port`` is served by a process this checkout's stack started."""
    return host in LOOPBACK and owner(port) is not None


def with_port(url: str, port: int, path: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    new_netloc = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    return urlunsplit(
        parts._replace(netloc=new_netloc, path=path if path is not None else parts.path)
    )


# --- Postgres -----------------------------------------------------------------------------------


def pg_binary(name: str) -> str | None:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return shutil.which(name) or (candidates[0] if candidates else None)


def private_pg_dir(scope: str, state: Path = STATE) -> Path:
    """Where the private cluster of the stack whose state folder is ``state`` lives. As root it
    runs as ``nobody``, which may not be able to enter the checkout (e.g. under /root), so
    root's clusters live under /var/tmp, one folder per state folder (a checkout's ``.state``
    keys it by the checkout, as before state folders could be chosen)."""
    if os.geteuid() == 0:
        key = state.parent if state.name == ".state" else state
        digest = hashlib.sha256(str(key).encode()).hexdigest()[:10]
        return Path(f"/var/tmp/bff-backoffice-{digest}") / scope
    return state / scope


def as_pg_user(argv: list[str]) -> list[str]:
    """Postgres refuses to run as root: as root, run its tools as ``nobody``."""
    return ["runuser", "-u", "nobody", "--", *argv] if os.geteuid() == 0 else argv


def initdb_argv(initdb: str, data: Path) -> list[str]:
    """A throwaway cluster: trust auth on 127.0.0.1 only, no fsync at creation."""
    return [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]


def ensure_postgres(
    url: str, *, base: Path | None = None, port: int | None = None, record: bool = True
) -> tuple[str, list[str] | None]:
    """Return (url, stop command or None): the configured server when reachable (saying so
    when this stack did not start it), else a private cluster in ``base`` (default: per state
    folder) on ``port`` (default: ``BFF_PRIVATE_PG_PORT``, 55432). A private port in use by
    anything but this cluster is refused, never shared."""
    host, configured_port = host_port(url, 5432)
    if port_open(configured_port, host):
        if not ours(host, configured_port):
            say(f"using Postgres at {where(url)} (not started by this stack)")
        return url, None
    port = port or stack_port("BFF_PRIVATE_PG_PORT", PRIVATE_PG_PORT)
    if not pg_binary("initdb"):
        apt_install("postgresql")
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise MissingDependency("postgresql installed but initdb/pg_ctl not found")
    base = base or private_pg_dir("pg")
    data = base / "data"
    private_url = with_port(url, port)
    stop = as_pg_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])
    running = running_postmaster(data)
    if running is not None:  # this stack's cluster, still up (its record may have been lost)
        pid, running_port = running
        if running_port != port:
            raise StackError(
                f"this stack's private Postgres runs on port {running_port}, not on"
                f" BFF_PRIVATE_PG_PORT={port}: ./ops/stack down first"
            )
        if record:
            save(_pg_record(pid, port, stop))
        return private_url, stop
    if port_open(port):
        raise PortTaken(
            port, "private Postgres", f"set BFF_PRIVATE_PG_PORT to a free port (e.g. {free_port()})"
        )
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "nobody")
        os.chmod(base, 0o700)
    if not (data / "PG_VERSION").exists():
        say(f"initialising a private Postgres cluster in {data}")
        subprocess.run(
            as_pg_user(initdb_argv(initdb, data)),
            check=True,
            capture_output=True,
            cwd=tempfile.gettempdir(),
        )
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base} -c fsync=off"
    say(f"starting private Postgres on 127.0.0.1:{port}")
    subprocess.run(
        as_pg_user(
            [
                pg_ctl,
                "-D",
                str(data),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "-l",
                str(base / "postgres.log"),
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        cwd=tempfile.gettempdir(),
    )
    running = running_postmaster(data)
    if record:
        save(_pg_record(running[0] if running else 0, port, stop))
    return private_url, stop


def _pg_record(pid: int, port: int, stop: list[str]) -> Record:
    return Record(
        name="postgres", pid=pid, marker="postgres", port=port, stop=stop, started=start_time(pid)
    )


def running_postmaster(data: Path) -> tuple[int, int] | None:
    """(pid, port) of the live postmaster of the cluster in ``data``, or None."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if b"postgres" in cmdline else None


# --- Redis --------------------------------------------------------------------------------------


def redis_argv(port: int, data: Path) -> list[str]:
    """A throwaway redis-server on 127.0.0.1:``port`` that keeps nothing on disk (installed with
    apt when missing and running as root)."""
    if not shutil.which("redis-server"):
        apt_install("redis-server")
    binary = shutil.which("redis-server")
    if not binary:
        raise MissingDependency("redis-server not found after install")
    return [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data),
    ]


def ensure_redis(url: str, *, name: str = "redis", port: int | None = None) -> tuple[str, bool]:
    """Return (url, started_here): the configured server when reachable (saying so when this
    stack did not start it), else a private one on ``port`` (default: ``BFF_PRIVATE_REDIS_PORT``,
    56379). A private port in use by anything but this stack's Redis is refused, never shared."""
    host, configured_port = host_port(url, 6379)
    if port_open(configured_port, host):
        if not ours(host, configured_port):
            prefix = os.environ.get("BFF_REDIS_PREFIX") or "bff"
            say(f"using Redis at {where(url)} (not started by this stack; keys under {prefix}:)")
        return url, False
    port = port or stack_port("BFF_PRIVATE_REDIS_PORT", PRIVATE_REDIS_PORT)
    private_url = with_port(url, port)
    if owner(port) is not None:
        return private_url, False
    if port_open(port):
        raise PortTaken(
            port, "private Redis", f"set BFF_PRIVATE_REDIS_PORT to a free port (e.g. {free_port()})"
        )
    data = STATE / name
    data.mkdir(parents=True, exist_ok=True)
    say(f"starting private Redis on 127.0.0.1:{port}")
    proc = spawn(name, redis_argv(port, data), {}, port=port, marker=str(port))
    _wait_listening(name, proc, "127.0.0.1", port, 15)
    return private_url, True


def _wait_listening(
    name: str, proc: subprocess.Popen[bytes], host: str, port: int, timeout: float
) -> None:
    """Wait until ``proc`` answers on ``host:port``; fail with its log if it exits first."""
    wait_for(lambda: port_open(port, host) or proc.poll() is not None, timeout, name)
    if proc.poll() is not None:
        raise StackError(f"{name} exited (log: {log_tail(name, 5)})")


# --- Pub/Sub emulator ---------------------------------------------------------------------------


EMULATOR_JARS = "platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar"


@functools.cache
def gcloud_sdk_roots() -> tuple[Path, ...]:
    """Where the Google Cloud SDK is installed: what ``gcloud info`` reports (right whatever the
    packaging: apt, the tarball, snap, Homebrew), then the folder above the resolved ``gcloud``."""
    gcloud = shutil.which("gcloud")
    if not gcloud:
        return ()
    roots: list[Path] = []
    try:
        answer = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if answer.returncode == 0 and answer.stdout.strip():
            roots.append(Path(answer.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    roots.append(Path(os.path.realpath(gcloud)).parent.parent)
    return tuple(dict.fromkeys(roots))


def _jar_version(jar: Path) -> tuple[int, ...]:
    """``cloud-pubsub-emulator-0.8.20-all.jar`` → ``(0, 8, 20)`` (so 0.8.20 sorts after 0.8.9)."""
    found = re.search(r"cloud-pubsub-emulator-([0-9.]+)", jar.name)
    return tuple(int(n) for n in found.group(1).strip(".").split(".") if n) if found else ()


def pubsub_emulator_jar() -> Path | None:
    """The newest Pub/Sub emulator jar of the installed SDK (``gcloud components install
    pubsub-emulator`` or the ``google-cloud-cli-pubsub-emulator`` package), or None. The one
    finder for the stack and the tests."""
    for root in gcloud_sdk_roots():
        jars = sorted(root.glob(EMULATOR_JARS), key=_jar_version)
        if jars:
            return jars[-1]
    return None


def emulator_command(host: str, port: int) -> list[str] | None:
    """The emulator's jar run by java directly (quick to stop), else gcloud's wrapper, else None."""
    gcloud = shutil.which("gcloud")
    if not gcloud:
        return None
    jar = pubsub_emulator_jar()
    java = shutil.which("java")
    if jar is not None and java:
        return [java, "-jar", str(jar), f"--host={host}", f"--port={port}"]
    return [
        gcloud,
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port={host}:{port}",
        "--project=bff-local",
    ]


def ensure_pubsub(configured: str) -> str | None:
    """Return the emulator's host:port, or None (the service then uses the embedded bus).

    The emulator at ``configured`` (``PUBSUB_EMULATOR_HOST``) when it answers; else one started
    on that address (default 127.0.0.1:8085). The default port in use by an emulator this stack
    did not start is refused, never shared."""
    address = configured or DEFAULT_EMULATOR_HOST
    host, _, port_text = address.rpartition(":")
    host = host or "127.0.0.1"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise StackError(f"PUBSUB_EMULATOR_HOST must be host:port, not {configured!r}")
    port = int(port_text)
    if port_open(port, host):
        if ours(host, port):
            return address
        if configured:
            say(f"using the Pub/Sub emulator at {address} (not started by this stack)")
            return address
        raise PortTaken(
            port,
            "Pub/Sub emulator",
            f"set PUBSUB_EMULATOR_HOST=127.0.0.1:{port} to use it, or to a free address"
            f" (e.g. 127.0.0.1:{free_port()}) for an emulator of this stack's own",
        )
    argv = emulator_command(host, port)
    if argv is None:
        say("gcloud not found: the BFF uses the embedded bus (Redis Streams)")
        return None
    if host not in LOOPBACK:
        raise StackError(
            f"nothing answers at PUBSUB_EMULATOR_HOST={address}, and the stack starts an"
            " emulator only on this machine (127.0.0.1:<port>)"
        )
    say(f"starting the Pub/Sub emulator on {address}")
    marker = next(a for a in argv if a.startswith(("--port=", "--host-port=")))
    proc = spawn("pubsub", argv, {}, port=port, marker=marker)
    _wait_listening("pubsub", proc, host, port, 90)
    return address
