"""Command line of ``./ops/chaos``."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ops.drills.admin_client import AdminClient, AdminError, admin_url
from ops.drills.kill import kill_rounds, selection
from ops.drills.load import LoadRun


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="./ops/chaos", description=__doc__)
    top.add_argument(
        "--url", help="admin endpoint (default $BFF_ADMIN_URL or http://127.0.0.1:8081)"
    )
    commands = top.add_subparsers(dest="command", required=True)

    kill = commands.add_parser("kill-actors", help="kill live actors (they restart and rehydrate)")
    kill.add_argument("--kind", help="only this kind (device, property)")
    kill.add_argument("--tenant", help="only this tenant")
    which = kill.add_mutually_exclusive_group(required=True)
    which.add_argument("--count", type=int, help="kill this many, chosen at random")
    which.add_argument("--id", dest="ids", action="append", help="kill this actor id (repeatable)")
    which.add_argument("--all", action="store_true", help="kill every selected actor")
    kill.add_argument("--every", type=float, help="repeat every SECONDS ...")
    kill.add_argument("--for", dest="duration", type=float, help="... for SECONDS")

    load = commands.add_parser("load", help="heartbeats from many device actors, then a loss check")
    load.add_argument("--actors", type=int, default=200)
    load.add_argument("--for", dest="duration", type=float, default=20.0, help="seconds of load")
    load.add_argument("--tenant", default="chaos-load")
    load.add_argument("--concurrency", type=int, default=32, help="commands in flight")
    load.add_argument("--timeout", type=float, default=5.0, help="deadline of one command")
    load.add_argument("--grace", type=float, default=10.0, help="time to resolve in-doubt commands")
    load.add_argument("--report", type=Path, help="write the per-device result as JSON here")

    drills = commands.add_parser(
        "drill", help="failure-catalogue drills: ./ops/chaos drill F-5 | --all | --ci | --list"
    )
    drills.add_argument("rows", nargs="*", help="rows to drill, e.g. F-5 F-17")
    drills.add_argument("--all", dest="all_rows", action="store_true", help="every drill")
    drills.add_argument("--ci", action="store_true", help="the subset .ci/run runs")
    drills.add_argument("--list", dest="list_rows", action="store_true", help="list, run none")

    listing = commands.add_parser("list", help="list live actors")
    listing.add_argument("--kind")
    listing.add_argument("--tenant")
    return top


async def run(args: argparse.Namespace) -> int:
    client = AdminClient(admin_url(args.url), connections=max(getattr(args, "concurrency", 8), 8))
    try:
        if args.command == "kill-actors":
            return await _kill(client, args)
        if args.command == "load":
            return await _load(client, args)
        return await _list(client, args)
    finally:
        await client.aclose()


async def _kill(client: AdminClient, args: argparse.Namespace) -> int:
    if (args.every is None) != (args.duration is None):
        print("--every and --for go together", file=sys.stderr)
        return 2
    chosen = selection(
        kind=args.kind, tenant=args.tenant, count=args.count, ids=args.ids, all_=args.all
    )
    total = await kill_rounds(client, chosen, every=args.every, duration=args.duration)
    print(f"killed {total} actor(s) in total")
    return 0


async def _load(client: AdminClient, args: argparse.Namespace) -> int:
    load = LoadRun(
        client, actors=args.actors, tenant=args.tenant, timeout=args.timeout, grace=args.grace
    )
    print(
        f"load run {load.report.run}: {args.actors} device actors for {args.duration}s", flush=True
    )
    report = await load.drive(args.duration, args.concurrency)
    for line in report.summary():
        print(line)
    if args.report:
        args.report.write_text(json.dumps(report.as_json(), indent=1))
    print("OK: no loss, no duplicates" if report.ok() else "FAILED: see check line")
    return 0 if report.ok() else 1


async def _list(client: AdminClient, args: argparse.Namespace) -> int:
    body: Any = await client.list_actors(args.kind, args.tenant)
    print(f"{body['count']} actor(s), {body['failed']} failed")
    for a in body["actors"]:
        print(
            f"{a['kind']}/{a['tenant']}/{a['id']}  {a['status']}  mailbox={a['mailboxDepth']}"
            f"  restarts={a['restarts']}  age={a['ageSeconds']:.1f}s"
            + (f"  lastError={a['lastError']}" if a["lastError"] else "")
        )
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "drill":
        from ops.drills.report import run_drills

        raise SystemExit(
            run_drills(args.rows, all_rows=args.all_rows, ci=args.ci, list_rows=args.list_rows)
        )
    try:
        code = trio.run(partial(run, args))
    except AdminError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)
