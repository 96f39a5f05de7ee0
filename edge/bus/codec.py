"""What goes on the wire, for both brokers: message attributes, the ledger envelope the relay
publishes, and the strict decoding of inbound domain events.

Attributes (Pub/Sub attributes; fields of a Redis stream entry): ``subject``, ``eventId``,
``tenantId`` on every message, plus adapter- or producer-specific extras. The data is one JSON
object that always has ``tenantId``.
"""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

from actors.ports import InboundEvent
from edge.bus.port import BusMessage, Delivery, topic_for
from ledger.model import RecordedEvent
from schemas.identifiers import Identifier

SUBJECT_RE = re.compile(r"^melmastoon\.[a-z0-9_]+(\.[a-z0-9_]+)*\.v[0-9]+$")
RESERVED = frozenset({"subject", "eventId", "tenantId"})


def attributes_of(message: BusMessage) -> dict[str, str]:
    """The attributes a message carries on the wire (extras cannot override the reserved ones)."""
    extra = {k: v for k, v in message.attributes.items() if k not in RESERVED}
    return {
        **extra,
        "subject": message.subject,
        "eventId": message.event_id,
        "tenantId": message.tenant,
    }


class LedgerEnvelope(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The data of a message the relay publishes for one ledger row."""

    event_id: str
    subject: str
    tenant_id: str
    stream: str
    version: int
    position: int
    operator_id: str | None
    device_id: str | None
    request_id: str | None
    occurred_at: datetime
    recorded_at: datetime
    payload: msgspec.Raw


_envelope_encoder = msgspec.json.Encoder()


def ledger_message(row: RecordedEvent) -> BusMessage:
    """A ledger row as a bus message: event id for dedupe, ordering key = tenant + stream."""
    envelope = LedgerEnvelope(
        event_id=str(row.event_id),
        subject=row.subject,
        tenant_id=row.tenant,
        stream=row.stream,
        version=row.version,
        position=row.position,
        operator_id=row.operator_id,
        device_id=row.device_id,
        request_id=row.request_id,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
        payload=row.payload,
    )
    return BusMessage(
        subject=row.subject,
        data=_envelope_encoder.encode(envelope),
        event_id=str(row.event_id),
        tenant=row.tenant,
        ordering_key=f"{row.tenant}:{row.stream}",
        attributes={
            "stream": row.stream,
            "version": str(row.version),
            "position": str(row.position),
        },
    )


class InvalidEvent(ValueError):
    """The message cannot be a domain event (dead-lettered, never retried)."""


TenantId = Identifier


class _DomainData(msgspec.Struct, rename="camel"):
    """The part of every domain event's data the subscriber relies on; other fields pass through."""

    tenant_id: TenantId


_data_decoder = msgspec.json.Decoder(_DomainData)


def decode_inbound(delivery: Delivery) -> InboundEvent:
    """Validate a delivery as a domain event, or raise :class:`InvalidEvent` saying why."""
    attrs = delivery.attributes
    subject = attrs.get("subject", "")
    if not SUBJECT_RE.match(subject) or len(subject) > 200:
        raise InvalidEvent(f"missing or malformed subject attribute {subject[:80]!r}")
    if topic_for(subject) != delivery.topic:
        raise InvalidEvent(f"subject {subject} does not belong to topic {delivery.topic}")
    event_id = attrs.get("eventId", "")
    if not event_id or len(event_id) > 128:
        raise InvalidEvent("missing eventId attribute")
    try:
        data = _data_decoder.decode(delivery.data)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise InvalidEvent(f"data is not a domain event: {exc}") from None
    claimed = attrs.get("tenantId")
    if claimed is not None and claimed != data.tenant_id:
        raise InvalidEvent("tenantId attribute does not match the data's tenantId")
    extra = {k: v for k, v in attrs.items() if k not in RESERVED}
    return InboundEvent(
        subject=subject,
        event_id=event_id,
        tenant=data.tenant_id,
        data=msgspec.Raw(delivery.data),
        attributes=extra,
    )
