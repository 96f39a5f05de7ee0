"""Putting an event on devices' streams: the delivery log row first, then the feeds.

Every stream event a device is shown goes through :func:`deliver` — force-logouts from the
DeviceActor, alerts, AI suggestions and dashboard hints from the PropertyActor — so an audit
replay of the ledger shows what each device was shown and when (``sse.delivered.v1``).

Both steps are idempotent, so every instance may deliver the same domain event (each consumes
all of them) and a redelivered event may be delivered again: the ledger row's id derives from
the item's key and its devices, and a device's feed refuses a key it already holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from actors.ports import DeviceFeed, EventLog
from ledger.model import NewEvent
from schemas.actor_events import FEED_DELIVERED, FeedDelivered
from schemas.sse import FeedItem

_encoder = msgspec.json.Encoder()
DELIVERY_IDS = uuid.UUID("3b0e1f47-5c2a-4e8d-9f61-2a7d4c9e8b15")  # namespace of delivery rows


def delivery_id(tenant: str, key: str, device_ids: Sequence[str]) -> uuid.UUID:
    """The same item to the same devices is the same row, whoever records it."""
    return uuid.uuid5(DELIVERY_IDS, "\n".join((tenant, key, *sorted(device_ids))))


async def deliver(
    log: EventLog,
    feed: DeviceFeed,
    tenant: str,
    device_ids: Sequence[str],
    item: FeedItem,
    *,
    stream: str,
    operator_id: str | None = None,
) -> int:
    """Record that ``item`` goes to ``device_ids`` (ledger stream ``stream``), then append it to
    their feeds; returns how many feeds took it. Raises an outage of either (the caller's
    message is then retried or redelivered: both steps are idempotent)."""
    devices = sorted(set(device_ids))
    if not devices:
        return 0
    row = FeedDelivered(
        key=item.key,
        event=item.event,
        data=item.data,
        device_ids=devices,
        at=datetime.now(UTC),
        property_id=item.property_id,
        session_id=item.session_id,
    )
    await log.append(
        [
            NewEvent(
                tenant=tenant,
                stream=stream,
                subject=FEED_DELIVERED,
                payload=msgspec.Raw(_encoder.encode(row)),
                event_id=delivery_id(tenant, item.key, devices),
                device_id=devices[0] if len(devices) == 1 else None,
                operator_id=operator_id,
            )
        ]
    )
    return await feed.append(tenant, devices, item)
