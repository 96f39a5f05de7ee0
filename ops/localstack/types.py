"""``./ops/stack types [--check]``: the desktop's TypeScript types, generated from the OpenAPI
document (clients/desktop-types).

The document is rendered without a server (``edge.app.openapi_document``: the public route
tables, as ``/openapi.json`` serves them in production) and committed as a snapshot next to the
types generated from it by openapi-typescript (pinned in that package's lock file), so that a
change to the API shows up in review as a change to the desktop's types.

``--check`` (a step of ``./ops/stack test``) fails when either is stale. The snapshot is compared
first, in pure Python; the types are regenerated into a temporary folder and compared only
when Node is installed: without it the check says so and relies on the snapshot (the types
are a pure function of it).
"""

from __future__ import annotations

import argparse
import difflib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from ops.localstack import deps
from ops.localstack.procs import ROOT, StackError, say

PACKAGE = ROOT / "clients" / "desktop-types"
SNAPSHOT = "openapi.json"
GENERATED = "src/api.d.ts"
GENERATOR_FLAGS = ("--root-types",)  # also export each schema as ``Schema<Name>``
DIFF_LINES = 40
REGENERATE = "run ./ops/stack types"


def live_document() -> dict[str, Any]:
    """The service's public OpenAPI document, as JSON values (what a client decodes)."""
    from edge.app import openapi_document  # imported here: builds every route table

    built: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(openapi_document()))
    return built


def render(document: dict[str, Any]) -> str:
    """The snapshot's text: stable, readable in a diff."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def stale_snapshot(document: dict[str, Any], package: Path = PACKAGE) -> list[str]:
    """What is wrong with the committed snapshot of ``document`` (nothing when it is current)."""
    path = package / SNAPSHOT
    if not path.exists():
        return [f"{_shown(path)} is missing: {REGENERATE}"]
    return _differs(path, path.read_text(encoding="utf-8"), render(document))


def stale_types(package: Path = PACKAGE) -> list[str] | None:
    """What is wrong with the committed types of the committed snapshot; ``None`` when they
    could not be generated here (no Node, or its packages could not be installed)."""
    if not _node_ready(package, install=False):
        return None
    with tempfile.TemporaryDirectory(prefix="desktop-types-") as work:
        fresh = Path(work) / "api.d.ts"
        _generate(package, package / SNAPSHOT, fresh)
        path = package / GENERATED
        if not path.exists():
            return [f"{_shown(path)} is missing: {REGENERATE}"]
        problems = _differs(path, path.read_text(encoding="utf-8"), fresh.read_text("utf-8"))
    return problems or _typecheck(package)


def check(document: dict[str, Any], package: Path = PACKAGE) -> list[str]:
    """Every problem with ``package``'s committed files against ``document``; the types are
    compared only when the snapshot is current (they are generated from it)."""
    problems = stale_snapshot(document, package)
    if problems:
        return problems
    typed = stale_types(package)
    if typed is None:
        say(
            "WARNING: node not found (or `npm ci` failed): checked the OpenAPI snapshot only, "
            f"not {GENERATED}; {_node_hint()}"
        )
        return []
    return typed


def regenerate(document: dict[str, Any], package: Path = PACKAGE) -> None:
    """Write the snapshot of ``document`` and the types generated from it (Node first: never
    one without the other)."""
    if not _node_ready(package, install=True):
        raise StackError(f"cannot generate {GENERATED}: `npm ci` failed in {_shown(package)}")
    (package / SNAPSHOT).write_text(render(document), encoding="utf-8")
    say(f"wrote {_shown(package / SNAPSHOT)}")
    _generate(package, package / SNAPSHOT, package / GENERATED)
    say(f"wrote {_shown(package / GENERATED)}")
    problems = _typecheck(package)
    if problems:
        raise StackError("\n".join(problems))


def _node_ready(package: Path, *, install: bool) -> bool:
    """Node, npm and the package's pinned tools are here (``npm ci`` once when they are not);
    with ``install``, a missing Node is installed (root) or the command to do so raised."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if not install:
            return False
        deps.apt_install("nodejs", "npm")  # raises MissingDependency naming the command
    if (package / "node_modules" / ".bin" / "openapi-typescript").exists():
        return True
    say(f"installing the pinned generator: npm ci in {_shown(package)}")
    done = _run(["npm", "ci", "--no-audit", "--no-fund"], package)
    if done.returncode != 0:
        say(done.stdout.strip()[-2000:])
    return done.returncode == 0


def _generate(package: Path, source: Path, target: Path) -> None:
    tool = package / "node_modules" / ".bin" / "openapi-typescript"
    done = _run([str(tool), str(source), "--output", str(target), *GENERATOR_FLAGS], package)
    if done.returncode != 0:
        raise StackError(f"openapi-typescript failed:\n{done.stdout.strip()}")


def _typecheck(package: Path) -> list[str]:
    """``tsc`` over the generated types, the hand-written re-exports and the contract's
    compile-time assertions (test/contract.ts): a renamed schema breaks them here."""
    done = _run([str(package / "node_modules" / ".bin" / "tsc"), "--noEmit", "-p", "."], package)
    if done.returncode == 0:
        return []
    return [f"tsc found errors in {_shown(package)}:\n{done.stdout.strip()}"]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )


def _differs(path: Path, committed: str, fresh: str) -> list[str]:
    if committed == fresh:
        return []
    diff = difflib.unified_diff(
        committed.splitlines(), fresh.splitlines(), "committed", "generated", lineterm="", n=1
    )
    lines = list(diff)
    shown = "\n".join(lines[:DIFF_LINES]) + ("\n…" if len(lines) > DIFF_LINES else "")
    return [f"{_shown(path)} is stale ({REGENERATE}):\n{shown}"]


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _node_hint() -> str:
    return "install Node 20 and npm (as root: apt-get install -y nodejs npm) to check them too"


def cmd_types(args: argparse.Namespace) -> int:
    document = live_document()
    if not args.check:
        regenerate(document)
        return 0
    problems = check(document)
    for problem in problems:
        say(problem)
    if problems:
        return 1
    say("desktop types are current")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``types`` on ``./ops/stack``'s subcommands."""
    types = sub.add_parser(
        "types", help="regenerate the desktop's TypeScript types (--check: fail when stale)"
    )
    types.add_argument(
        "--check", action="store_true", help="compare with a fresh generation; write nothing"
    )
    types.set_defaults(run=cmd_types)
