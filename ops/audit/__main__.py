"""Ledger operations.

  ./ops/ledger replay --tenant T [--stream S] [--since TIME] [--until TIME] [--json]
      The tenant's audit trail in commit order: a table (position, recorded_at, stream,
      version, subject, operator, device, request id) or JSON lines with --json. A progress
      bar goes to stderr when stdout is a terminal or the replay is long.
  ./ops/ledger verify [--max-lag-s 60] [--attempt-grace-s 60] [--json]
      Checks positions are gap-free, every stream's versions are dense, the relay has
      published everything up to its cursor (and is not lagging), and every lock action and
      mutation attempted more than --attempt-grace-s (60) ago has its outcome (F-27); exits 1
      with a report if not.

TIME is ISO 8601 (``2026-11-21T09:30:00Z``) or a date (``2026-11-21``, midnight UTC).
The database is ``BFF_DATABASE_URL``. Exit codes: 0 ok, 1 verify found problems, 2 usage or
connection error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from functools import partial

import trio
import trio_asyncio

from edge.settings import SettingsError, load_settings, redact_url
from ledger.database import Database, DatabaseUnavailable
from ops.audit.replay import replay
from ops.audit.verify import run_verify


def parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="ops/ledger", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = root.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("replay", help="print a tenant's audit trail")
    rep.add_argument("--tenant", required=True)
    rep.add_argument("--stream", default=None, help='one stream, e.g. "device:dev-1"')
    rep.add_argument("--since", type=parse_time, default=None)
    rep.add_argument("--until", type=parse_time, default=None)
    rep.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    rep.add_argument("--progress", choices=("auto", "always", "never"), default="auto")
    ver = sub.add_parser("verify", help="check the ledger's invariants")
    ver.add_argument(
        "--max-lag-s",
        type=float,
        default=60.0,
        help="unpublished rows older than this are a problem (default 60)",
    )
    ver.add_argument(
        "--attempt-grace-s",
        type=float,
        default=60.0,
        help="attempts younger than this may still be running (default 60)",
    )
    ver.add_argument("--json", action="store_true")
    return root


async def run(args: argparse.Namespace, dsn: str) -> int:
    async with trio_asyncio.open_loop():
        db = Database(dsn, max_size=2, timeout=30)
        await db.open()
        try:
            if args.command == "replay":
                return await replay(db, args)
            return await run_verify(db, args)
        except (DatabaseUnavailable, OSError) as exc:
            print(f"cannot reach the ledger at {redact_url(dsn)}: {exc}", file=sys.stderr)
            return 2
        finally:
            await db.close()


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        code = trio.run(partial(run, args, settings.database_url))
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()
