"""The Dockerfile's build steps, run on this machine (``./ops/stack smoke-image``; Docker
cannot run here): the wheel from the service's sources only, with the locked build backend, and a
fresh virtualenv holding the runtime lock (hash-checked, wheels only) and that wheel, pip removed.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ops.localstack.lockfiles import BUILD_LOCK, RUNTIME_LOCK
from ops.localstack.procs import ROOT, StackError

# What the wheel may hold: the service, never ops/ (simulator, benchmarks, dev stack) or tests/.
SERVICE_PACKAGES = frozenset({"actors", "edge", "ledger", "schemas"})
# What the Dockerfile copies into its build stage.
SOURCES = ("pyproject.toml", "README.md", *sorted(SERVICE_PACKAGES))
DISTRIBUTION = "bff-backoffice-service"


@dataclass
class Scratch:
    """The run's folders: every one under ``root``, removed afterwards."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def readonly(self) -> Path:
        return self.root / "readonly"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"


@dataclass(frozen=True)
class Launch:
    """How a child process starts: its environment, working directory and user (None: ours)."""

    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    user: int | None = None
    group: int | None = None

    def popen(self, argv: list[str], out: IO[bytes]) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a session of its own, its output into ``out``."""
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            user=self.user,
            group=self.group,
            extra_groups=None if self.user is None else [],
            start_new_session=True,
        )


def run(argv: list[str], log: Path, launch: Launch | None = None) -> None:
    """Run a setup step, its output appended to ``log``; raise with the log's tail on failure."""
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        code = (launch or Launch()).popen(argv, out).wait()
    if code != 0:
        raise StackError(f"{' '.join(argv[:4])} … failed:\n{tail(log)}")


def tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def build_wheel(scratch: Scratch) -> Path:
    """The Dockerfile's wheel: the service's sources only, the build backend from the lock."""
    source, tools, wheels = (
        scratch.root / "src",
        scratch.root / "build-venv",
        scratch.root / "wheels",
    )
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    log = scratch.logs / "build.log"
    run([sys.executable, "-m", "venv", str(tools)], log)
    pip = [str(tools / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "install", "--require-hashes", "-r", str(ROOT / BUILD_LOCK)], log)
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], log)
    (wheel,) = wheels.glob("*.whl")
    return wheel


def install_runtime(scratch: Scratch, python: str, wheel: Path) -> None:
    """The Dockerfile's virtualenv: the runtime lock (hash-checked, wheels only), the wheel with
    no dependencies, and no pip left behind."""
    log = scratch.logs / "install.log"
    run([python, "-m", "venv", str(scratch.venv)], log)
    pip = [str(scratch.venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    lock = str(ROOT / RUNTIME_LOCK)
    run([*pip, "install", "--require-hashes", "--only-binary=:all:", "-r", lock], log)
    run([*pip, "install", "--no-deps", str(wheel)], log)
    run([*pip, "uninstall", "--yes", "pip"], log)


def installed_top_level(scratch: Scratch) -> set[str]:
    """The top-level names the installed distribution put into site-packages."""
    code = (
        "from importlib.metadata import files\n"
        f"names = {{f.parts[0] for f in files({DISTRIBUTION!r}) or ()}}\n"
        "print(' '.join(sorted(n for n in names if not n.endswith(('.dist-info', '..')))))"
    )
    python = str(scratch.venv / "bin" / "python")
    # -I and a bare working directory: the checkout's own metadata must not be found instead.
    done = subprocess.run(
        [python, "-I", "-c", code], capture_output=True, text=True, check=True, cwd=scratch.readonly
    )
    return set(done.stdout.split())


def freeze(path: Path) -> None:
    """Make ``path`` and everything under it read-only (``thaw`` undoes it)."""
    for entry in [path, *path.rglob("*")]:
        if not entry.is_symlink():
            entry.chmod(entry.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def thaw(path: Path) -> None:
    for entry in [path, *path.rglob("*")] if path.exists() else []:
        if not entry.is_symlink():
            entry.chmod(entry.stat().st_mode | stat.S_IWUSR)


def default_python() -> str:
    """Debian's own Python when the service runs on it (the image's is Debian's too, and any
    user can run it), else the checkout's."""
    system = "/usr/bin/python3"
    check = (
        "import sys, ensurepip; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else 1)"
    )
    if Path(system).exists() and subprocess.run([system, "-c", check], check=False).returncode == 0:
        return system
    return sys.executable


def version_of(python: str) -> str:
    done = subprocess.run([python, "-V"], capture_output=True, text=True, check=True)
    return done.stdout.strip()
