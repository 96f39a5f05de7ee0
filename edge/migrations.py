"""``python -m edge.migrations [--create-database]``: apply the ledger's migrations to the
database the settings name (``BFF_DATABASE_URL``). The migrator itself is the ledger's
(``ledger/migrate.py``); reading settings is the edge's."""

from __future__ import annotations

import argparse
import sys

import trio
import trio_asyncio

from edge.settings import SettingsError, load_settings, redact_url
from ledger.migrate import migrate_url


async def _run(dsn: str, create: bool) -> list[int]:
    async with trio_asyncio.open_loop():
        return await migrate_url(dsn, create=create)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="edge.migrations", description=__doc__)
    parser.add_argument("--create-database", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    applied = trio.run(_run, settings.database_url, args.create_database)
    target = redact_url(settings.database_url)
    if applied:
        print(f"migrated {target}: applied {', '.join(map(str, applied))}")
    else:
        print(f"migrated {target}: up to date")


if __name__ == "__main__":
    main()
