"""Two instances (or two workers) writing one aggregate at once: the loser catches up and
retries with jitter; if the stream keeps moving past every retry the caller gets a typed
``Contended`` answer and the actor stays up — contention is not a crash (issue #14's finding:
two workers subscribing devices to one PropertyActor crashed it until its supervisor gave up)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from actors.address import property_
from actors.errors import Contended
from actors.property import SubscribeDevice, SubscriptionAck
from ledger.model import AppendResult, NewEvent, VersionConflict
from tests.support.actor_world import running_world

T, P = "tnt-a", "prop-1"


async def test_a_stream_that_keeps_moving_is_answered_not_crashed() -> None:
    async with running_world() as (system, world):
        ledger = world.ledger
        real_append = ledger.append
        conflicts = 0

        async def always_moved(
            events: Sequence[NewEvent], *, timeout: float = 5.0
        ) -> list[AppendResult]:
            nonlocal conflicts
            conflicts += 1
            raise VersionConflict("another writer got there first")

        ledger.append = always_moved  # type: ignore[method-assign]
        with pytest.raises(Contended):
            await system.ask(property_(T, P), SubscribeDevice(device_id="dev-1"))
        assert conflicts == 8  # every retry was made

        ledger.append = real_append  # type: ignore[method-assign]
        ack = await system.ask(property_(T, P), SubscribeDevice(device_id="dev-1"))
        assert isinstance(ack, SubscriptionAck) and ack.changed


async def test_a_writer_that_lost_one_race_catches_up_and_wins_the_next() -> None:
    async with running_world() as (system, world):
        ledger = world.ledger
        real_append = ledger.append
        lost = 0

        async def lose_twice(
            events: Sequence[NewEvent], *, timeout: float = 5.0
        ) -> list[AppendResult]:
            nonlocal lost
            if lost < 2:
                lost += 1
                raise VersionConflict("another writer got there first")
            return await real_append(events, timeout=timeout)

        ledger.append = lose_twice  # type: ignore[method-assign]
        ack = await system.ask(property_(T, P), SubscribeDevice(device_id="dev-1"))
        assert isinstance(ack, SubscriptionAck) and ack.changed and lost == 2
