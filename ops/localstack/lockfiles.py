"""``./ops/stack lock [--upgrade] [--check]``: the hash-pinned lock files everything installs from.

``pyproject.toml`` holds ranges; on their own, a fresh machine next month could resolve a Quart or
hypercorn release that breaks what we rely on (the connection-close workaround). So ``.venv``
(``ops/bootstrap.sh``), CI and the image install from these files, with ``--require-hashes``:

- ``requirements/runtime.lock``: the service's dependencies (the image, ``smoke-image``);
- ``requirements/dev.lock``: those plus the ``dev`` extras, constrained to the runtime pins, so
  the tests run against exactly what the image ships;
- ``requirements/build.lock``: the build backend (``[build-system] requires``) the wheel is built
  with.

Each is a *universal* lock (``uv pip compile --universal``): one set of pins for every Python
``requires-python`` allows (3.11 to 3.13) and every platform, with environment markers where they
differ and the hashes of every wheel and sdist of each pin. That is why a lock made on this 3.11
machine also installs in the image's Python 3.13 (``Dockerfile``). Without ``--upgrade`` the pins
already in a file are kept and only what ``pyproject.toml`` added or changed is resolved anew.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from ops.localstack.procs import ROOT, StackError, say

REQUIREMENTS = Path("requirements")  # relative to ROOT: the files' headers name it so
RUNTIME_LOCK = REQUIREMENTS / "runtime.lock"
DEV_LOCK = REQUIREMENTS / "dev.lock"
BUILD_LOCK = REQUIREMENTS / "build.lock"
LOCKS = (RUNTIME_LOCK, DEV_LOCK, BUILD_LOCK)

NOTE = """\
# Universal lock: one set of pins for every Python that pyproject.toml's requires-python allows
# ({python}) on every platform, with the hashes of all the files of each pin; made with uv, from
# Python {floor} up. Install with `pip install --require-hashes -r <this file>`.
# Do not edit: refresh with `./ops/stack lock` (keeps pins, adds what pyproject.toml added) or
# `./ops/stack lock --upgrade` (newest releases within pyproject.toml's ranges).
"""


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def requires_python() -> str:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    return str(project["requires-python"])


def python_floor(spec: str) -> str:
    """The lowest Python a ``requires-python`` spec admits: universal resolution starts there."""
    found = re.search(r">=\s*(\d+\.\d+)", spec)
    if not found:
        raise StackError(f"requires-python {spec!r} names no lower bound (>=3.x)")
    return found.group(1)


def build_requirements() -> list[str]:
    system = pyproject()["build-system"]
    assert isinstance(system, dict)
    return [str(r) for r in system["requires"]]


def uv_binary() -> str:
    """``uv`` from this virtualenv (a dev extra), else from ``PATH``."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise StackError(
            "uv is missing: it is a dev extra; run ./ops/stack once more to install it"
        )
    return found


def compile_argv(output: Path, *inputs: str, upgrade: bool) -> list[str]:
    floor = python_floor(requires_python())
    return [
        uv_binary(),
        "pip",
        "compile",
        "--universal",
        f"--python-version={floor}",
        "--generate-hashes",
        "--quiet",
        "--custom-compile-command=./ops/stack lock",
        f"--output-file={output}",
        *(["--upgrade"] if upgrade else []),
        *inputs,
    ]


def compile_all(folder: Path, *, upgrade: bool) -> None:
    """Write the three locks into ``folder`` (under ROOT; it may already hold older ones, whose
    pins are kept unless ``upgrade``)."""
    runtime, dev, build = (folder / lock.name for lock in LOCKS)
    steps: list[tuple[list[str], str | None]] = [
        (compile_argv(runtime, "pyproject.toml", upgrade=upgrade), None),
        (
            compile_argv(
                dev, "pyproject.toml", "--extra=dev", f"--constraints={runtime}", upgrade=upgrade
            ),
            None,
        ),
        (compile_argv(build, "-", upgrade=upgrade), "\n".join(build_requirements()) + "\n"),
    ]
    for argv, stdin in steps:
        done = subprocess.run(argv, cwd=ROOT, input=stdin, text=True, capture_output=True)
        if done.returncode != 0:
            raise StackError(f"uv pip compile failed:\n{done.stderr.strip()}")
    note = NOTE.format(python=requires_python(), floor=python_floor(requires_python()))
    for lock in (runtime, dev, build):
        path = ROOT / lock
        path.write_text(note + _without_note(path.read_text()))


def _without_note(text: str) -> str:
    lines = text.splitlines(keepends=True)
    note_lines = len(NOTE.splitlines())
    has_note = lines[:1] and lines[0].startswith("# Universal lock")
    return "".join(lines[note_lines:]) if has_note else text


def cmd_lock(args: argparse.Namespace) -> int:
    if args.check:
        return _check()
    (ROOT / REQUIREMENTS).mkdir(exist_ok=True)
    compile_all(REQUIREMENTS, upgrade=args.upgrade)
    say(f"wrote {', '.join(str(lock) for lock in LOCKS)}")
    return 0


def _check() -> int:
    """Compile afresh beside the committed locks (seeded with them) and compare."""
    scratch = Path(tempfile.mkdtemp(prefix=".lock-check-", dir=ROOT))
    try:
        for lock in LOCKS:
            if (ROOT / lock).exists():
                shutil.copy(ROOT / lock, scratch / lock.name)
        compile_all(scratch.relative_to(ROOT), upgrade=False)
        stale = [
            str(lock)
            for lock in LOCKS
            if not (ROOT / lock).exists() or _pins(ROOT / lock) != _pins(scratch / lock.name)
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if stale:
        say(f"stale: {', '.join(stale)}; run ./ops/stack lock")
        return 1
    say("the lock files match pyproject.toml")
    return 0


def _pins(path: Path) -> list[str]:
    """A lock's requirement and hash lines (its comments name the folder it was written to)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``lock`` on ``./ops/stack``'s subcommands."""
    lock = sub.add_parser("lock", help="refresh requirements/*.lock from pyproject.toml (uv)")
    lock.add_argument(
        "--upgrade", action="store_true", help="newest releases within pyproject.toml's ranges"
    )
    lock.add_argument(
        "--check", action="store_true", help="fail when the locks are stale; write nothing"
    )
    lock.set_defaults(run=cmd_lock)
