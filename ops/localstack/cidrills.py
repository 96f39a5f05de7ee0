"""``./ops/stack drills``: the CI subset of the failure-catalogue drills (``./ops/chaos drill
--ci``) on a stack of its own — three BFF processes behind nginx with the dependency fault proxy
(``up --instances 3``), on free ports, a throwaway database and Redis prefix, and its own state
folder — torn down afterwards whatever the outcome. ``./ops/stack test`` runs it, so the drills
an operator runs are proven by CI through the same commands."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from ops.localstack import throwaway
from ops.localstack.procs import ROOT, port_open, say

INSTANCES = 3
PORTS_NEEDED = 2 * INSTANCES + 2  # nginx, the instances, their admin ports, the simulator


def free_block(size: int, tries: int = 200) -> int:
    """The first of ``size`` consecutive ports nobody listens on."""
    for _ in range(tries):
        base = random.randrange(20_000, 30_000)
        if not any(port_open(base + i) for i in range(size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports found")


def stack_env(work: Path, pg_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    base = free_block(PORTS_NEEDED)
    return {
        **os.environ,
        "BFF_STACK_STATE": str(work / "state"),
        "PORT": str(base),
        "BFF_ADMIN_PORT": str(base + INSTANCES + 1),
        "SIM_URL": f"http://127.0.0.1:{base + PORTS_NEEDED - 1}",
        "BFF_DATABASE_URL": pg_url,
        "BFF_REDIS_SESSION_URL": redis_url,
        "BFF_REDIS_CACHE_URL": "",
        "BFF_REDIS_PREFIX": prefix,
        "BFF_INSTANCE_ID": f"ci-drills-{uuid.uuid4().hex[:6]}",
    }


def run_ci_drills(work: Path) -> int:
    """Up, ``drill --ci``, down; the drills' exit status (1 when the stack would not start)."""
    stack = [str(ROOT / "ops" / "stack")]
    prefix = f"cidrills{os.getpid()}"
    with (
        throwaway.postgres(work, purpose="drills") as pg_url,
        throwaway.redis_server(work, prefix) as redis_url,
    ):
        env = stack_env(work, pg_url, redis_url, prefix)
        say(f"ci drills: a stack of {INSTANCES} instances on port {env['PORT']}")
        try:
            started = subprocess.run(
                [*stack, "up", "--instances", str(INSTANCES), "--detach"], env=env, check=False
            )
            if started.returncode != 0:
                say("ci drills: the stack did not start")
                return 1
            drills = [sys.executable, "-m", "ops.drills", "drill", "--ci"]
            return subprocess.run(drills, env=_with_stack_env(stack, env), cwd=ROOT).returncode
        finally:
            subprocess.run([*stack, "down"], env=env, check=False)


def _with_stack_env(stack: list[str], env: dict[str, str]) -> dict[str, str]:
    """``env`` plus what ``./ops/stack env`` says about the running stack (its URLs)."""
    lines = subprocess.run(
        [*stack, "env"], env=env, capture_output=True, text=True, check=True
    ).stdout
    found = dict(env)
    for line in lines.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name and value:
            found[name] = value.strip("'\"")
    return found


def cmd_drills(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="bff-drills-"))
    try:
        return run_ci_drills(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``drills`` on ``./ops/stack``'s subcommands."""
    drills = sub.add_parser(
        "drills", help="the CI subset of ./ops/chaos drill on a throwaway 3-instance stack"
    )
    drills.set_defaults(run=cmd_drills)
