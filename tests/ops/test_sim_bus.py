"""The simulator publishes domain events through the BFF's own bus adapter (here the embedded
Redis-Streams bus), where the BFF consumes them, and waits out a broker outage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import redis

from tests.support.fixtures import REDIS_URL
from tests.support.procs import PrivateRedis, wait_until
from tests.support.sim import SimHandle

SimFactory = Callable[..., SimHandle]


def _entries(url: str, key: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(url)
    try:
        rows: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(key)  # type: ignore[assignment]
        return [{k.decode(): v for k, v in fields.items()} for _, fields in rows]
    except redis.ConnectionError:
        return []
    finally:
        client.close()


def _bus_env(redis_url: str, prefix: str) -> dict[str, str]:
    return {
        "SIM_BUS": "auto",
        "BFF_BUS": "embedded",
        "PUBSUB_EMULATOR_HOST": "",
        "BFF_REDIS_SESSION_URL": redis_url,
        "BFF_REDIS_PREFIX": prefix,
    }


def test_domain_events_land_on_the_bus_the_bff_consumes(
    start_sim: SimFactory, redis_prefix: str
) -> None:
    url = REDIS_URL
    sim = start_sim(**_bus_env(url, redis_prefix))
    arrivals = sim.get("/reservation/v1/tenants/tnt-demo/properties/prop-demo-1/arrivals")
    booked = next(r for r in arrivals["items"] if r["status"] == "booked")
    sim.post(
        f"/reservation/v1/tenants/tnt-demo/properties/prop-demo-1/reservations/"
        f"{booked['id']}/check-in",
        json={"operatorId": "opr-fd-demo"},
    )
    key = f"{redis_prefix}:_bus:melmastoon.reservation"
    wait_until(lambda: bool(_entries(url, key)), 5, "the event on the bus")
    [entry] = _entries(url, key)
    assert entry["subject"] == b"melmastoon.reservation.checked_in.v1"
    assert entry["tenantId"] == b"tnt-demo"
    data = msgspec.json.decode(entry["data"])
    assert data["reservationId"] == booked["id"] and data["tenantId"] == "tnt-demo"
    [recorded] = sim.events("melmastoon.reservation")
    assert recorded["eventId"] == entry["eventId"].decode()
    wait_until(
        lambda: sim.events("melmastoon.reservation")[0]["publish"] == "published",
        5,
        "the publish to be acknowledged",
    )


def test_events_wait_out_a_broker_outage(
    start_sim: SimFactory, redis_prefix: str, log_dir: Path
) -> None:
    broker = PrivateRedis(log_dir)
    try:
        sim = start_sim(**_bus_env(broker.url, redis_prefix))
        broker.stop()
        sim.post(
            "/_sim/events",
            json={
                "subject": "melmastoon.alert.raised.v1",
                "data": {"tenantId": "tnt-demo", "alertId": "a-1"},
            },
        )
        assert sim.events("melmastoon.alert")[0]["publish"] == "pending"
        broker.start()
        key = f"{redis_prefix}:_bus:melmastoon.alert"
        wait_until(lambda: bool(_entries(broker.url, key)), 10, "the event after the outage")
        assert _entries(broker.url, key)[0]["subject"] == b"melmastoon.alert.raised.v1"
    finally:
        broker.stop()
