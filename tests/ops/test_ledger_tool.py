"""``./ops/ledger`` as operators run it (a real process against a real database): the replay
table and JSON lines, filters, the progress bar, and ``verify`` failing with a report on gaps,
non-dense versions and unpublished rows."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import trio

from ledger.appendlog import Ledger
from ledger.database import Database
from ledger.model import NewEvent

ROOT = Path(__file__).resolve().parents[2]
SUBJECT = "melmastoon.bff.backoffice.alert.acknowledged.v1"


@pytest.fixture
async def ledger(db: Database) -> AsyncIterator[Ledger]:
    led = Ledger(db)
    async with trio.open_nursery() as nursery:
        await nursery.start(led.run)
        yield led
        nursery.cancel_scope.cancel()


async def tool(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "BFF_DATABASE_URL": database_url}
    with trio.fail_after(30):
        done = await trio.run_process(
            [str(ROOT / "ops" / "ledger"), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def fill(ledger: Ledger) -> None:
    for i in range(6):
        tenant = "tnt-a" if i % 3 else "tnt-b"
        await ledger.append(
            [
                NewEvent(
                    tenant=tenant,
                    stream=f"device:dev-{i % 2}",
                    subject=SUBJECT,
                    payload={"alertId": f"al-{i}"},
                    operator_id="fd.demo",
                    device_id=f"dev-{i % 2}",
                    request_id=f"req-{i}",
                )
            ]
        )


async def test_replay_prints_the_tenants_trail_as_a_table(
    ledger: Ledger, database_url: str
) -> None:
    await fill(ledger)
    code, out, err = await tool(database_url, "replay", "--tenant", "tnt-a")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:4] == ["position", "recorded_at", "stream", "version"]
    assert [line.split()[0] for line in lines] == ["2", "3", "5", "6"]  # tnt-a only, in order
    assert "fd.demo" in lines[0] and "req-1" in lines[0] and SUBJECT in lines[0]
    assert "4 events for tenant tnt-a" in err and "[" not in err  # no bar: short, not a TTY


async def test_replay_json_lines_with_stream_and_time_filters(
    ledger: Ledger, database_url: str
) -> None:
    await fill(ledger)
    code, out, _ = await tool(
        database_url, "replay", "--tenant", "tnt-a", "--stream", "device:dev-1", "--json"
    )
    assert code == 0
    rows = [msgspec.json.decode(line) for line in out.splitlines()]
    assert [r["position"] for r in rows] == [2, 6]
    assert rows[0]["payload"] == {"alertId": "al-1"} and rows[0]["tenantId"] == "tnt-a"
    assert rows[0]["requestId"] == "req-1" and rows[0]["version"] == 1
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    code, out, _ = await tool(
        database_url, "replay", "--tenant", "tnt-a", "--since", future, "--json"
    )
    assert (code, out) == (0, "")
    code, out, _ = await tool(
        database_url, "replay", "--tenant", "tnt-a", "--until", "2000-01-01", "--json"
    )
    assert (code, out) == (0, "")


async def test_replay_progress_bar_goes_to_stderr(ledger: Ledger, database_url: str) -> None:
    await fill(ledger)
    code, out, err = await tool(
        database_url, "replay", "--tenant", "tnt-a", "--json", "--progress", "always"
    )
    assert code == 0 and len(out.splitlines()) == 4
    assert "100% 4/4 rows" in err


async def test_verify_passes_on_a_healthy_ledger(
    ledger: Ledger, db: Database, database_url: str
) -> None:
    await fill(ledger)
    await db.execute("UPDATE relay_cursor SET position = 6")
    code, out, _ = await tool(database_url, "verify")
    assert code == 0, out
    assert "OK" in out and "head 6" in out
    code, out, _ = await tool(database_url, "verify", "--json")
    assert code == 0 and msgspec.json.decode(out)["ok"] is True


async def test_verify_reports_gaps_versions_and_unpublished_rows(
    ledger: Ledger, db: Database, database_url: str
) -> None:
    await fill(ledger)
    await db.execute("UPDATE relay_cursor SET position = 3")
    await db.execute("UPDATE ledger SET recorded_at = now() - interval '1 hour' WHERE position = 4")
    await db.execute("DELETE FROM ledger WHERE position = 5")  # a hole (and a missing version)
    await db.execute("UPDATE ledger SET version = 7 WHERE position = 6")  # non-dense
    code, out, _ = await tool(database_url, "verify", "--max-lag-s", "60")
    assert code == 1, out
    assert "FAILED" in out
    assert "[positions] gap: 5..5 missing" in out
    assert "[versions] tnt-a/device:dev-1" in out
    assert "[relay] bus: 3 rows unpublished (positions 4..6)" in out


async def test_unreachable_database_exits_2(tmp_path: Path) -> None:
    code, _, err = await tool("postgresql://postgres@127.0.0.1:1/none", "verify")
    assert code == 2 and "cannot reach the ledger" in err
