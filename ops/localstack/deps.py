"""Find the stateful dependencies at their configured URLs, or start private ones from the
system's binaries (installing them with apt when running as root)."""

from __future__ import annotations

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

from ops.localstack.procs import ROOT, STATE, Record, port_open, save, say, spawn, wait_for

PRIVATE_PG_PORT = 55432
PRIVATE_REDIS_PORT = 56379


class MissingDependency(Exception):
    """A system package is missing and cannot be installed from here; the message says how."""


def apt_install(*packages: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise MissingDependency(f"run: sudo apt-get install -y {' '.join(packages)}")
    say(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, capture_output=True
    )


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


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


def private_pg_dir(scope: str) -> Path:
    """Where a private cluster lives. As root it runs as ``nobody``, which may not be able to
    enter the checkout (e.g. under /root), so root's clusters live under /var/tmp."""
    if os.geteuid() == 0:
        digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
        return Path(f"/var/tmp/bff-backoffice-{digest}") / scope
    return STATE / scope


def as_pg_user(argv: list[str]) -> list[str]:
    """Postgres refuses to run as root: as root, run its tools as ``nobody``."""
    return ["runuser", "-u", "nobody", "--", *argv] if os.geteuid() == 0 else argv


def initdb_argv(initdb: str, data: Path) -> list[str]:
    """A throwaway cluster: trust auth on 127.0.0.1 only, no fsync at creation."""
    return [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]


def ensure_postgres(
    url: str, *, base: Path | None = None, port: int = PRIVATE_PG_PORT, record: bool = True
) -> tuple[str, list[str] | None]:
    """Return (url, stop command or None): the configured server when reachable, else a private
    cluster in ``base`` (default: the state folder) on ``port``."""
    host, configured_port = host_port(url, 5432)
    if port_open(configured_port, host):
        return url, None
    if not pg_binary("initdb"):
        apt_install("postgresql")
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise MissingDependency("postgresql installed but initdb/pg_ctl not found")
    base = base or private_pg_dir("pg")
    data = base / "data"
    private_url = with_port(url, port)
    if port_open(port):
        return private_url, None
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
    stop = as_pg_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])
    if record:
        save(Record(name="postgres", pid=_pg_pid(data), marker="postgres", port=port, stop=stop))
    return private_url, stop


def _pg_pid(data: Path) -> int:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


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


def ensure_redis(
    url: str, *, name: str = "redis", port: int = PRIVATE_REDIS_PORT
) -> tuple[str, bool]:
    """Return (url, started_here): the configured server when reachable, else a private one."""
    host, configured_port = host_port(url, 6379)
    if port_open(configured_port, host):
        return url, False
    private_url = with_port(url, port)
    if port_open(port):
        return private_url, False
    data = STATE / name
    data.mkdir(parents=True, exist_ok=True)
    say(f"starting private Redis on 127.0.0.1:{port}")
    spawn(
        name,
        redis_argv(port, data),
        {},
        port=port,
        marker=str(port),
    )
    wait_for(lambda: port_open(port), 15, "redis")
    return private_url, True


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


def ensure_pubsub(configured: str, port: int = 8085) -> str | None:
    """Return the emulator host:port to use, or None (the service then uses the embedded bus)."""
    if configured:
        host, _, p = configured.rpartition(":")
        if port_open(int(p), host or "127.0.0.1"):
            return configured
    argv = emulator_command("127.0.0.1", port)
    if argv is None:
        say("gcloud not found: the BFF uses the embedded bus (Redis Streams)")
        return None
    if port_open(port):
        return f"127.0.0.1:{port}"
    say(f"starting the Pub/Sub emulator on 127.0.0.1:{port}")
    spawn("pubsub", argv, {}, port=port, marker=f"{port}")
    wait_for(lambda: port_open(port), 90, "pubsub emulator")
    return f"127.0.0.1:{port}"
