"""Packaging invariants (#15): the wheel holds the service only, the Dockerfile's runtime stage is
distroless, non-root and shell-free, and every requirement of pyproject.toml is pinned, with
hashes, in the lock the installs use. ``./ops/stack smoke-image`` (CI) runs the install itself."""

from __future__ import annotations

import re
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ops.localstack import imagebuild
from ops.localstack.lockfiles import BUILD_LOCK, DEV_LOCK, RUNTIME_LOCK

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


def pins(lock: Path) -> dict[str, set[str]]:
    """Every pinned name in a lock with its versions (several where markers differ), after
    checking each pin carries hashes."""
    found: dict[str, set[str]] = {}
    lines = (ROOT / lock).read_text().splitlines()
    for index, line in enumerate(lines):
        match = PIN.match(line)
        if match is None:
            continue
        assert lines[index + 1].strip().startswith("--hash=sha256:"), f"{lock}: {line} has no hash"
        found.setdefault(canonicalize_name(match["name"]), set()).add(match["version"])
    return found


def requirements(group: str) -> Iterator[Requirement]:
    project = PYPROJECT["project"]
    texts = {
        "runtime": project["dependencies"],
        "dev": project["optional-dependencies"]["dev"],
        "build": PYPROJECT["build-system"]["requires"],
    }[group]
    return (Requirement(text) for text in texts)


@pytest.mark.parametrize(
    ("group", "lock"),
    [
        ("runtime", RUNTIME_LOCK),
        ("runtime", DEV_LOCK),
        ("dev", DEV_LOCK),
        ("build", BUILD_LOCK),
    ],
)
def test_every_requirement_is_pinned_in_the_lock(group: str, lock: Path) -> None:
    pinned = pins(lock)
    unpinned = [
        str(wanted)
        for wanted in requirements(group)
        if not any(
            wanted.specifier.contains(version, prereleases=True)
            for version in pinned.get(canonicalize_name(wanted.name), ())
        )
    ]
    assert not unpinned, f"{lock} lacks {unpinned}: run ./ops/stack lock"


def test_the_dev_lock_keeps_the_runtime_pins() -> None:
    """The tests run against exactly the releases the image ships."""
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    differing = {name: (v, dev.get(name)) for name, v in runtime.items() if dev.get(name) != v}
    assert not differing


def test_the_wheel_holds_only_the_service(tmp_path: Path) -> None:
    scratch = imagebuild.Scratch(tmp_path)
    scratch.logs.mkdir()
    wheel = imagebuild.build_wheel(scratch)
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert {n for n in top_level if not n.endswith(".dist-info")} == imagebuild.SERVICE_PACKAGES
    assert "ledger/migrations/0001_ledger.sql" in names  # package data travels with the code


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (comments dropped, continuations joined), per stage."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    stages: list[list[str]] = []
    for line in lines:
        if line.startswith("FROM "):
            stages.append([])
        if line and not line.startswith("#") and stages:
            stages[-1].append(line)
    return stages


def test_the_runtime_stage_is_distroless_non_root_and_shell_free() -> None:
    header = (ROOT / "Dockerfile").read_text()
    runtime = dockerfile_stages()[-1]
    base = runtime[0].split()[1]
    assert base == "${RUNTIME_BASE}"
    assert "ARG RUNTIME_BASE=gcr.io/distroless/python3-debian13:nonroot" in header
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users, "the runtime stage names its user"
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert not [line for line in runtime if line.startswith(("RUN ", "CMD "))]
    (entrypoint,) = [line for line in runtime if line.startswith("ENTRYPOINT ")]
    assert entrypoint == 'ENTRYPOINT ["/opt/venv/bin/python", "-m", "edge"]'
    assert "sh -c" not in "\n".join(line for stage in dockerfile_stages() for line in stage)


def test_the_image_installs_from_the_runtime_lock_only() -> None:
    build = "\n".join(dockerfile_stages()[0])
    assert f"--require-hashes --only-binary=:all: -r {RUNTIME_LOCK}" in build
    assert "pip install --no-deps /wheels/" in build
    copied = {line.split()[1] for line in dockerfile_stages()[0] if line.startswith("COPY ")}
    assert not {"ops", ".", "tests"} & copied


def test_the_checkout_installs_from_the_dev_lock() -> None:
    bootstrap = (ROOT / "ops" / "bootstrap.sh").read_text()
    assert 'pip install --require-hashes -r "$lock"' in bootstrap
    assert 'local lock="$ROOT/requirements/dev.lock"' in bootstrap
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./ops/stack test" in ci  # and the whole test run includes smoke-image:
    checks = (ROOT / "ops" / "localstack" / "cli.py").read_text()
    assert '("smoke image", [*module, "smoke-image"])' in checks
