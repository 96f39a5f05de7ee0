"""Every Redis key the service writes has a TTL or a size bound: after a varied workload (sign
in, reads, heartbeats, dashboards, many distinct workbench days, step-up, refresh, sign-out)
the test scans the whole keyspace of the run's prefix for keys that would live forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from tests.support.desktop import Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.sim import SimHandle

BASE = "/bff/backoffice/v1"
PROPERTY = "prop-demo-1"
STREAM_MAXLEN = 100_000  # edge/bus/redis_streams.py: the embedded bus trims every stream


def _workload(desk: Desktop, gm: Desktop) -> None:
    assert desk.get(f"{BASE}/_test/whoami").status_code == 200
    for n in range(3):
        beat = desk.post(
            f"{BASE}/devices/{desk.device_id}/heartbeat",
            json={},
            headers={"Idempotency-Key": f"hb-{n}"},
        )
        assert beat.status_code == 200, beat.text
    assert gm.get(f"{BASE}/dashboard", params={"propertyId": PROPERTY}).status_code == 200
    today = datetime.now(UTC).date()
    for offset in range(-20, 20):  # every distinct day is a cache entry and an index entry
        day = (today + timedelta(days=offset)).isoformat()
        assert (
            desk.get(f"{BASE}/arrivals", params={"propertyId": PROPERTY, "date": day}).status_code
            == 200
        )
    for view in ("today", "in-house", "housekeeping/board", "maintenance/board"):
        assert desk.get(f"{BASE}/{view}", params={"propertyId": PROPERTY}).status_code in (200, 403)
    far = (today + timedelta(days=400)).isoformat()
    too_far = desk.get(f"{BASE}/arrivals", params={"propertyId": PROPERTY, "date": far})
    assert too_far.status_code == 400 and too_far.json()["error"]["message"].startswith("date")
    token = desk.device.step_up("lock.revoke").attestation_token
    sensitive = desk.post(
        f"{BASE}/_test/sensitive",
        json={"action": "lock.revoke"},
        headers={"X-MFA-Attestation": token},
    )
    assert sensitive.status_code == 200, sensitive.text
    assert gm.refresh_response().status_code == 200
    assert desk.post(f"{BASE}/auth/sign-out").status_code == 200


def test_every_key_written_has_a_ttl_or_a_size_bound(
    start_bff: ServiceFactory, sim: SimHandle, redis_prefix: str
) -> None:
    bff = start_bff(SIM_URL=sim.url)
    _workload(Desktop(bff.url, sim.url, "fd.demo"), Desktop(bff.url, sim.url, "gm.demo"))
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = sorted(client.scan_iter(f"{redis_prefix}:*", count=1000))
        forever = []
        for key in keys:
            raw_kind = client.type(key)
            kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
            if client.pttl(key) > 0:
                continue
            if kind == "stream" and client.xlen(key) <= STREAM_MAXLEN:
                continue  # trimmed at every append (MAXLEN), and its groups reaped
            forever.append((key.decode() if isinstance(key, bytes) else str(key), kind))
        index = f"{redis_prefix}:tnt-demo:property:{PROPERTY}:cache-index".encode()
        assert client.scard(index) <= 2 * 733 + 16  # two dated views x the reachable days
    finally:
        client.close()
    assert len(keys) > 20  # the workload wrote what it should have (sessions, cache, …)
    assert forever == []
