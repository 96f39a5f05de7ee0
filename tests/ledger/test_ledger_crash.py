"""A writer process SIGKILLed under load (twice): every append it acknowledged is in the ledger
exactly once with the position it reported, and the ledger stays gap-free across restarts."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import trio

from ledger.database import Database

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys, trio, trio_asyncio
from ledger.model import NewEvent
from ledger.database import Database
from ledger.appendlog import Ledger

async def main(dsn, run):
    async with trio_asyncio.open_loop():
        db = Database(dsn, max_size=2, timeout=10)
        await db.open()
        ledger = Ledger(db)
        async with trio.open_nursery() as nursery:
            await nursery.start(ledger.run)

            async def appender(i):
                while True:
                    ev = NewEvent(tenant="tnt-crash", stream=f"device:{run}-{i % 7}", payload={},
                                  subject="melmastoon.bff.backoffice.device.heartbeat.v1")
                    [r] = await ledger.append([ev])
                    print(ev.event_id, r.position, r.version, flush=True)

            for i in range(30):
                nursery.start_soon(appender, i)

trio.run(main, sys.argv[1], sys.argv[2])
"""


async def run_and_kill(database_url: str, run: str, acks_before_kill: int) -> list[list[str]]:
    """Start a writer, SIGKILL it after it acknowledged enough appends; return every ack line."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", CHILD, database_url, run], cwd=ROOT, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    buffer = b""
    with trio.fail_after(30):
        while buffer.count(b"\n") < acks_before_kill:
            chunk = await proc.stdout.receive_some()
            assert chunk, "writer exited early"
            buffer += chunk
        proc.send_signal(signal.SIGKILL)
        while chunk := await proc.stdout.receive_some():  # acks already written to the pipe
            buffer += chunk
        await proc.wait()
    lines = buffer.decode().splitlines()
    complete = lines if buffer.endswith(b"\n") else lines[:-1]
    return [line.split() for line in complete]


async def test_acknowledged_appends_survive_sigkill(db: Database, database_url: str) -> None:
    acked = await run_and_kill(database_url, "a", 300)
    acked += await run_and_kill(database_url, "b", 200)
    rows = await db.fetch("SELECT event_id::text, position, version, stream FROM ledger")
    by_id = {r["event_id"]: (r["position"], r["version"]) for r in rows}
    assert len(by_id) == len(rows)
    for event_id, position, version in acked:
        assert by_id[event_id] == (int(position), int(version))
    head = await db.fetchval("SELECT position FROM ledger_head")
    assert sorted(r["position"] for r in rows) == list(range(1, head + 1))
    for stream in {r["stream"] for r in rows}:
        versions = sorted(r["version"] for r in rows if r["stream"] == stream)
        assert versions == list(range(1, len(versions) + 1))
