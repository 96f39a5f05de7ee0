"""Bus operations (the configured bus: ``BFF_BUS`` / ``PUBSUB_EMULATOR_HOST`` as the service).

  ./ops/bus dead-letters list [--limit 50] [--json]
      The parked messages, oldest first: id, when, source topic, subject and event id, how
      many deliveries it had, which instance parked it, and why. Nothing is removed.
  ./ops/bus dead-letters replay (--id ID [--id ID ...] | --all) [--dry-run] [--json]
      Publishes each named message (or every one) again to its topic, once even when several
      instances parked a copy, then removes it and its copies; --dry-run only says what would
      be replayed.

Dead letters are kept 7 days (FAILURE_MODES F-38). Exit codes: 0 ok, 1 an --id was not found,
2 usage, configuration or bus error.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

import trio
import trio_asyncio

from edge.bus.dead_letters import open_dead_letters
from edge.bus.port import BusUnavailable
from edge.settings import Settings, SettingsError, load_settings
from ops.buscli.render import render_json, render_replay, render_table


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="ops/bus", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    groups = root.add_subparsers(dest="group", required=True)
    dead = groups.add_parser("dead-letters", help="inspect and replay dead letters")
    sub = dead.add_subparsers(dest="command", required=True)
    show = sub.add_parser("list", help="list the parked messages (oldest first)")
    show.add_argument("--limit", type=int, default=50)
    show.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    rep = sub.add_parser("replay", help="publish parked messages again, then remove them")
    which = rep.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", action="append", dest="ids", help="a dead letter's id")
    which.add_argument("--all", action="store_true", help="every parked message")
    rep.add_argument("--dry-run", action="store_true", help="only say what would be replayed")
    rep.add_argument("--json", action="store_true")
    return root


async def run(args: argparse.Namespace, settings: Settings) -> int:
    async with trio_asyncio.open_loop(), open_dead_letters(settings) as store:
        if args.command == "list":
            letters = await store.read(max(1, args.limit))
            print(render_json(letters) if args.json else render_table(letters))
            return 0
        report = await store.replay(None if args.all else args.ids, dry_run=args.dry_run)
        print(render_replay(report, dry_run=args.dry_run, as_json=args.json))
        return 1 if report.missing else 0


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        code = trio.run(partial(run, args, settings))
    except BusUnavailable as exc:
        print(f"the {settings.bus_kind} bus is not reachable: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()
