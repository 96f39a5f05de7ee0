"""The admin endpoint on a real BFF process: loopback only, never on the public port; lists live
actors, kills them (they restart and rehydrate), and readiness reports a supervisor that gave
up."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import trio

from ledger.appendlog import Ledger
from ledger.database import Database
from ledger.model import NewEvent
from schemas.actor_events import SESSION_OPENED
from tests.support.fixtures import ServiceFactory
from tests.support.procs import free_port, wait_until

ROUNDING = 0.002  # the admin endpoint rounds ages to milliseconds


def listening_addresses(port: int, pid: int) -> list[str]:
    """Local addresses with a LISTEN socket on ``port`` held by process ``pid`` (from
    /proc/net/tcp and tcp6, matched to the process's socket inodes: another process on this
    machine may have taken the same free port meanwhile)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port and inode in inodes:
                found.append(address)
    return found


def heartbeat(admin: str, device: str, command: str) -> httpx.Response:
    return httpx.post(
        f"{admin}/admin/actors/device/tnt-a/{device}/ask",
        json={"type": "recordHeartbeat", "commandId": command, "appVersion": "3.1"},
        timeout=5,
    )


def test_admin_is_loopback_only_and_absent_from_the_public_port(start_bff: ServiceFactory) -> None:
    admin_port = free_port()
    bff = start_bff(BFF_ADMIN_PORT=str(admin_port))
    assert listening_addresses(admin_port, bff.popen.pid) == ["0100007F"]  # 127.0.0.1, nothing else
    assert httpx.get(f"{bff.url}/admin/actors", timeout=5).status_code == 404
    kill = httpx.post(f"{bff.url}/admin/actors/kill", json={"all": True}, timeout=5)
    assert kill.status_code in (404, 405)
    ready = httpx.get(f"{bff.url}/health/ready", timeout=5).json()
    assert ready["checks"]["actors"] == {"ok": True}


PRODUCTION = {"BFF_MODE": "production", "BFF_PUBLIC_URL": "https://bff.example.test"}


def _refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def test_admin_refuses_what_a_browser_could_be_made_to_send(start_bff: ServiceFactory) -> None:
    """Issue #11 finding 8: a web page in a developer's browser can POST ``text/plain`` or a
    form to 127.0.0.1 without a preflight, or rebind its own name to 127.0.0.1; neither may
    reach an actor. Only JSON, and only with a loopback ``Host`` naming the admin port."""
    admin_port = free_port()
    start_bff(BFF_ADMIN_PORT=str(admin_port))
    admin = f"http://127.0.0.1:{admin_port}"
    ask = f"{admin}/admin/actors/device/tnt-a/d1/ask"
    beat = b'{"type": "recordHeartbeat", "commandId": "c-%d", "appVersion": "3.1"}'
    assert heartbeat(admin, "d1", "c-0").json()["reply"]["heartbeatCount"] == 1

    for n, content_type in enumerate(
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""],
        start=1,
    ):
        headers = {"Content-Type": content_type} if content_type else {}
        sent = httpx.post(ask, content=beat % n, headers=headers, timeout=5)
        _refused(sent, 415, "UNSUPPORTED_MEDIA_TYPE")
        killed = httpx.post(
            f"{admin}/admin/actors/kill", content=b'{"all": true}', headers=headers, timeout=5
        )
        _refused(killed, 415, "UNSUPPORTED_MEDIA_TYPE")
        told = httpx.post(
            f"{admin}/admin/actors/device/tnt-a/d1/tell",
            content=beat % (100 + n),
            headers=headers,
            timeout=5,
        )
        _refused(told, 415, "UNSUPPORTED_MEDIA_TYPE")

    for host in (f"evil.example:{admin_port}", "127.0.0.1", f"127.0.0.1:{admin_port + 1}"):
        foreign = {"Host": host}
        _refused(
            httpx.get(f"{admin}/admin/actors", headers=foreign, timeout=5),
            421,
            "MISDIRECTED_REQUEST",
        )
        rebound = httpx.post(
            f"{admin}/admin/actors/kill", json={"all": True}, headers=foreign, timeout=5
        )
        _refused(rebound, 421, "MISDIRECTED_REQUEST")
        asked = httpx.post(
            ask,
            content=beat % 200,
            headers={**foreign, "Content-Type": "application/json"},
            timeout=5,
        )
        _refused(asked, 421, "MISDIRECTED_REQUEST")

    # nothing reached the actor: one heartbeat, never killed
    listing = httpx.get(f"{admin}/admin/actors", timeout=5).json()
    [d1] = listing["actors"]
    assert (d1["processed"], d1["restarts"], d1["status"]) == (1, 0, "running")
    for host in (f"localhost:{admin_port}", f"[::1]:{admin_port}", f"LOCALHOST:{admin_port}"):
        local = httpx.get(f"{admin}/admin/actors", headers={"Host": host}, timeout=5)
        assert local.status_code == 200, (host, local.text)
    charset = httpx.post(
        ask,
        content=beat % 300,
        headers={"Content-Type": "application/json; charset=utf-8"},
        timeout=5,
    )
    assert charset.json()["reply"]["heartbeatCount"] == 2


def test_admin_is_off_by_default_in_production_mode(start_bff: ServiceFactory) -> None:
    """Issue #11 finding 8: in production mode the admin endpoint is served only when
    ``BFF_ADMIN=on`` says so (and never when ``BFF_ADMIN=off``, whatever the mode)."""
    default_port, enabled_port, off_port = free_port(), free_port(), free_port()
    # the admin server starts before the public port answers: absent now is absent for good
    default = start_bff(BFF_ADMIN_PORT=str(default_port), **PRODUCTION)
    assert listening_addresses(default_port, default.popen.pid) == []
    enabled = start_bff(BFF_ADMIN_PORT=str(enabled_port), BFF_ADMIN="on", **PRODUCTION)
    assert listening_addresses(enabled_port, enabled.popen.pid) == ["0100007F"]
    health = httpx.get(f"http://127.0.0.1:{enabled_port}/admin/health", timeout=5)
    assert health.status_code == 200
    off = start_bff(BFF_ADMIN_PORT=str(off_port), BFF_ADMIN="off")
    assert listening_addresses(off_port, off.popen.pid) == []


def test_admin_lists_asks_and_kills_actors(start_bff: ServiceFactory) -> None:
    admin_port = free_port()
    start_bff(BFF_ADMIN_PORT=str(admin_port))
    admin = f"http://127.0.0.1:{admin_port}"
    first_message_at = time.monotonic()  # d1 is activated by its first message, after this
    for n in range(3):
        assert heartbeat(admin, "d1", f"c{n}").json()["reply"]["heartbeatCount"] == n + 1
    assert heartbeat(admin, "d2", "c0").status_code == 200
    subscribe = httpx.post(
        f"{admin}/admin/actors/property/tnt-a/p1/ask",
        json={"type": "subscribeDevice", "deviceId": "d1"},
        timeout=5,
    )
    assert subscribe.json()["reply"] == {"version": 1, "subscribed": True, "changed": True}
    state_before = httpx.post(
        f"{admin}/admin/actors/device/tnt-a/d1/ask", json={"type": "getState"}, timeout=5
    ).json()["reply"]

    listing = httpx.get(f"{admin}/admin/actors", timeout=5).json()
    listed_at = time.monotonic()
    assert (listing["count"], listing["failed"]) == (3, 0)
    d1 = next(a for a in listing["actors"] if a["id"] == "d1")
    assert d1["kind"] == "device" and d1["tenant"] == "tnt-a" and d1["status"] == "running"
    assert d1["mailboxDepth"] == 0 and d1["restarts"] == 0 and d1["processed"] == 4
    # the age counts from d1's activation (during this test), in seconds
    assert 0 < d1["ageSeconds"] <= listed_at - first_message_at + ROUNDING
    only_props = httpx.get(f"{admin}/admin/actors", params={"kind": "property"}, timeout=5).json()
    assert [a["id"] for a in only_props["actors"]] == ["p1"]

    killed_at = time.monotonic()
    killed = httpx.post(
        f"{admin}/admin/actors/kill",
        json={"kind": "device", "tenant": "tnt-a", "ids": ["d1", "nope"]},
        timeout=5,
    ).json()
    assert killed == {"killed": [{"kind": "device", "tenant": "tnt-a", "id": "d1"}]}

    def restarted() -> bool:
        actors = httpx.get(f"{admin}/admin/actors", params={"kind": "device"}, timeout=5).json()
        d1 = next(a for a in actors["actors"] if a["id"] == "d1")
        return bool(d1["restarts"] == 1 and d1["status"] == "running")

    wait_until(restarted, 10, "d1 to restart")
    actors = httpx.get(f"{admin}/admin/actors", params={"kind": "device"}, timeout=5).json()
    checked_at = time.monotonic()
    again = next(a for a in actors["actors"] if a["id"] == "d1")
    # a restart is not a new activation: the age runs on, the time since restart starts over
    assert again["ageSeconds"] >= d1["ageSeconds"] + (killed_at - listed_at) - ROUNDING
    assert again["sinceRestartSeconds"] <= checked_at - killed_at + ROUNDING
    assert again["sinceRestartSeconds"] < again["ageSeconds"]
    state_after = httpx.post(
        f"{admin}/admin/actors/device/tnt-a/d1/ask", json={"type": "getState"}, timeout=5
    ).json()["reply"]
    assert state_after == state_before
    everything = httpx.post(f"{admin}/admin/actors/kill", json={"all": True}, timeout=5).json()
    assert len(everything["killed"]) == 3


def test_admin_rejects_bad_requests_naming_the_field(start_bff: ServiceFactory) -> None:
    admin_port = free_port()
    start_bff(BFF_ADMIN_PORT=str(admin_port))
    admin = f"http://127.0.0.1:{admin_port}"
    no_selector = httpx.post(f"{admin}/admin/actors/kill", json={"kind": "device"}, timeout=5)
    assert no_selector.status_code == 400
    assert no_selector.json()["error"]["message"].startswith("ids:")
    bad_count = httpx.post(f"{admin}/admin/actors/kill", json={"count": 0}, timeout=5)
    assert bad_count.status_code == 400 and "count" in bad_count.json()["error"]["message"]
    missing = httpx.post(
        f"{admin}/admin/actors/device/tnt-a/d1/ask", json={"type": "recordHeartbeat"}, timeout=5
    )
    assert missing.status_code == 400
    assert "commandId" in missing.json()["error"]["message"]
    unknown = httpx.post(f"{admin}/admin/actors/robot/tnt-a/d1/ask", json={}, timeout=5)
    assert unknown.status_code == 404
    bad_tenant = httpx.post(
        f"{admin}/admin/actors/device/a%20b/d1/ask", json={"type": "getState"}, timeout=5
    )
    assert bad_tenant.status_code == 400 and "tenant" in bad_tenant.json()["error"]["message"]


async def _poison(dsn: str) -> None:
    """A session event this version cannot decode: every activation of dev-bad fails."""
    import trio_asyncio

    async with trio_asyncio.open_loop():
        db = Database(dsn, timeout=10)
        await db.open()
        try:
            ledger = Ledger(db)
            async with trio.open_nursery() as nursery:
                await nursery.start(ledger.run)
                bad = NewEvent(
                    tenant="tnt-a",
                    stream="device:dev-bad",
                    subject=SESSION_OPENED,
                    payload={"x": 1},
                )
                await ledger.append([bad])
                nursery.cancel_scope.cancel()
        finally:
            await db.close()


def test_a_supervisor_that_gives_up_fails_readiness_until_cleared(
    start_bff: ServiceFactory, database_url: str
) -> None:
    trio.run(_poison, database_url)
    admin_port = free_port()
    bff = start_bff(
        BFF_ADMIN_PORT=str(admin_port),
        BFF_ACTOR_MAX_RESTARTS="2",
        BFF_ACTOR_RESTART_MIN_S="0.01",
        BFF_ACTOR_RESTART_MAX_S="0.02",
    )
    admin = f"http://127.0.0.1:{admin_port}"
    first = heartbeat(admin, "dev-bad", "c1")  # waits in the mailbox while activation fails
    assert first.status_code == 503
    assert first.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert heartbeat(admin, "dev-ok", "c1").status_code == 200  # others are unaffected
    ready = httpx.get(f"{bff.url}/health/ready", timeout=5)
    assert ready.status_code == 503
    body = ready.json()
    assert "actors" in body["down"]
    assert "supervisor gave up on 1 actor" in body["checks"]["actors"]["detail"]
    assert "dev-bad" not in ready.text and "tnt-a" not in ready.text  # public: no ids
    listing = httpx.get(f"{admin}/admin/actors", timeout=5).json()
    bad = next(a for a in listing["actors"] if a["id"] == "dev-bad")
    assert bad["status"] == "failed" and bad["restarts"] == 2
    assert "ValidationError" in bad["lastError"]
    metrics = httpx.get(f"{bff.url}/metrics", timeout=5).text
    assert 'bff_actor_escalations_total{kind="device"} 1.0' in metrics
    assert 'bff_actors_failed{kind="device"} 1.0' in metrics

    everyone = httpx.post(f"{admin}/admin/actors/kill", json={"all": True}, timeout=5).json()
    assert [a["id"] for a in everyone["killed"]] == ["dev-ok"]  # only a named failed actor clears
    cleared = httpx.post(f"{admin}/admin/actors/kill", json={"ids": ["dev-bad"]}, timeout=5)
    assert cleared.json()["killed"] == [{"kind": "device", "tenant": "tnt-a", "id": "dev-bad"}]
    assert httpx.get(f"{bff.url}/health/ready", timeout=5).status_code == 200
