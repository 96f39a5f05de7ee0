"""The issue's "done when" drill on a real BFF process: appends from many device actors while
``./ops/chaos kill-actors --count 50`` kills half of them; afterwards nothing is lost or
duplicated, the ledger has no gap, and each device's stream replays the whole trail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from ledger.database import Database
from tests.support.fixtures import ServiceFactory
from tests.support.procs import ROOT, free_port, wait_until

CHAOS = str(ROOT / "ops" / "chaos")


def running_actors(admin: str) -> int:
    body = httpx.get(f"{admin}/admin/actors", params={"kind": "device"}, timeout=2).json()
    return sum(1 for a in body["actors"] if a["status"] == "running")


async def _ledger_facts(dsn: str) -> dict[str, object]:
    import trio_asyncio

    async with trio_asyncio.open_loop():
        db = Database(dsn, timeout=10)
        await db.open()
        try:
            head = await db.fetchval("SELECT count(*) = coalesce(max(position), 0) FROM ledger")
            dense = await db.fetchval(
                "SELECT bool_and(n = top) FROM (SELECT count(*) AS n, max(version) AS top"
                " FROM ledger GROUP BY tenant, stream) s"
            )
            rows = await db.fetch(
                "SELECT stream, count(*) AS n FROM ledger"
                " WHERE tenant = 'chaos-load' GROUP BY stream"
            )
            return {
                "positions_dense": head,
                "versions_dense": dense,
                "per_stream": {r["stream"]: r["n"] for r in rows},
            }
        finally:
            await db.close()


def test_kill_drill_under_load_loses_nothing(
    start_bff: ServiceFactory, database_url: str, tmp_path: Path
) -> None:
    admin_port = free_port()
    start_bff(
        BFF_ADMIN_PORT=str(admin_port), BFF_LOG_LEVEL="WARNING", BFF_HEARTBEAT_SAMPLE_RATE="1"
    )
    admin = f"http://127.0.0.1:{admin_port}"
    report_path = tmp_path / "load.json"
    load = subprocess.Popen(
        [
            CHAOS,
            "--url",
            admin,
            "load",
            "--actors",
            "80",
            "--for",
            "4",
            "--concurrency",
            "16",
            "--grace",
            "10",
            "--report",
            str(report_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: running_actors(admin) >= 60, 20, "the load to activate device actors")
        kill = subprocess.run(
            [CHAOS, "--url", admin, "kill-actors", "--kind", "device", "--count", "50"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert kill.returncode == 0, kill.stderr
        assert kill.stdout.count("killed device/chaos-load/") == 50
        assert "killed 50 actor(s) in total" in kill.stdout
        output, _ = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
    sys.stdout.write(output)
    assert load.returncode == 0, output
    report = json.loads(report_path.read_text())
    assert (report["lost"], report["extra"], report["unverified"]) == (0, 0, 0)
    # Real load, not a token few (the run is timed, so a busy machine acks fewer).
    assert report["acked"] >= 80

    actors = httpx.get(f"{admin}/admin/actors", params={"kind": "device"}, timeout=5).json()
    restarted = [a for a in actors["actors"] if a["restarts"] >= 1]
    assert len(restarted) >= 50 and actors["failed"] == 0

    facts = trio.run(_ledger_facts, database_url)
    assert facts["positions_dense"] and facts["versions_dense"]  # no gap anywhere
    per_stream = facts["per_stream"]
    assert isinstance(per_stream, dict)
    for device_id, result in report["devices"].items():
        # Every acknowledged heartbeat is in DeviceSyncStatus and (sample rate 1) in the ledger,
        # exactly once; one whose answer was lost to a kill may be in either or both.
        recorded = per_stream.get(f"device:{device_id}", 0)
        for count in (result["recorded"], recorded):
            assert result["acked"] <= count <= result["acked"] + result["unresolved"]


def test_kill_actors_repeats_every_interval_and_by_id(start_bff: ServiceFactory) -> None:
    admin_port = free_port()
    start_bff(BFF_ADMIN_PORT=str(admin_port))
    admin = f"http://127.0.0.1:{admin_port}"
    for device in ("d1", "d2"):
        reply = httpx.post(
            f"{admin}/admin/actors/device/tnt-x/{device}/ask",
            json={"type": "recordHeartbeat", "commandId": "c1", "appVersion": "1"},
            timeout=5,
        )
        assert reply.status_code == 200
    by_id = subprocess.run(
        [CHAOS, "--url", admin, "kill-actors", "--id", "d2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert by_id.stdout.splitlines()[0] == "killed device/tnt-x/d2"
    repeated = subprocess.run(
        [CHAOS, "--url", admin, "kill-actors", "--all", "--every", "0.3", "--for", "0.6"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert repeated.returncode == 0, repeated.stderr
    rounds = [line for line in repeated.stdout.splitlines() if line.startswith("round ")]
    assert [r.split(":")[0] for r in rounds] == ["round 1", "round 2", "round 3"]
    listing = subprocess.run(
        [CHAOS, "--url", admin, "list", "--kind", "device"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "2 actor(s), 0 failed" in listing.stdout
    assert "lastError=killed via admin" in listing.stdout
    bad = subprocess.run(
        [CHAOS, "--url", "http://127.0.0.1:1", "kill-actors", "--count", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 1 and "chaos:" in bad.stderr
