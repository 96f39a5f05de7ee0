"""The ledger/bus subsystems inside a real BFF process (embedded bus): the instance's consumer
groups exist while it runs, its relay publishes rows appended by another instance, and a clean
shutdown removes its groups."""

from __future__ import annotations

import signal

import redis
import trio

from edge.bus.port import CONSUMED_TOPICS
from edge.bus.redis_streams import stream_key
from ledger.appendlog import Ledger
from ledger.database import Database
from ledger.model import NewEvent
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.procs import wait_until


def groups(client: redis.Redis, prefix: str, topic: str) -> set[str]:
    try:
        info = client.xinfo_groups(stream_key(prefix, topic))
    except redis.ResponseError:
        return set()
    return {g["name"].decode() for g in info}


async def test_bff_process_relays_and_subscribes_per_instance(
    start_bff: ServiceFactory, db: Database, redis_prefix: str
) -> None:
    bff = start_bff(BFF_INSTANCE_ID="proc-1", BFF_RELAY_POLL_S="0.05")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        wait_until(
            lambda: all("bff:proc-1" in groups(client, redis_prefix, t) for t in CONSUMED_TOPICS),
            15,
            "the instance's consumer groups",
        )
        other_instance = Ledger(db)
        async with trio.open_nursery() as nursery:
            await nursery.start(other_instance.run)
            for i in range(3):
                await other_instance.append(
                    [
                        NewEvent(
                            tenant="tnt-demo",
                            stream=f"device:d{i}",
                            payload={"i": i},
                            subject="melmastoon.bff.backoffice.device.heartbeat.v1",
                        )
                    ]
                )
            nursery.cancel_scope.cancel()
        key = stream_key(redis_prefix, "melmastoon.bff.backoffice")
        wait_until(lambda: client.xlen(key) == 3, 15, "the BFF's relay to publish 3 rows")
        bff.signal(signal.SIGTERM)
        assert bff.wait(20) == 0
        assert all("bff:proc-1" not in groups(client, redis_prefix, t) for t in CONSUMED_TOPICS)
    finally:
        client.close()
