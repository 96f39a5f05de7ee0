"""What the service needs from a message bus, independent of the broker behind it.

Topics are per subject family: the producing service (``melmastoon.<service>``; the BFF's own
family is ``melmastoon.bff.backoffice``). Every message carries the event id (consumers dedupe on
it), the tenant, and an ordering key (the ledger stream for the BFF's own events).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec


def topic_for(subject: str) -> str:
    """``melmastoon.iam.session.revoked.v1`` → ``melmastoon.iam``;
    ``melmastoon.bff.backoffice.session.opened.v1`` → ``melmastoon.bff.backoffice``."""
    parts = subject.split(".")
    if len(parts) < 3 or parts[0] != "melmastoon":
        raise ValueError(f"not a melmastoon subject: {subject!r}")
    return ".".join(parts[:4] if parts[1] == "bff" else parts[:2])


# The domain topics the BFF consumes (SERVICE_OVERVIEW §6).
CONSUMED_TOPICS = (
    "melmastoon.iam",
    "melmastoon.reservation",
    "melmastoon.housekeeping",
    "melmastoon.maintenance",
    "melmastoon.ai",
    "melmastoon.alert",
    "melmastoon.theme",
)
PUBLISHED_TOPICS = ("melmastoon.bff.backoffice",)


class BusMessage(msgspec.Struct, frozen=True, kw_only=True):
    subject: str
    data: bytes  # a JSON document (msgspec-encoded)
    event_id: str
    tenant: str
    ordering_key: str = ""
    attributes: dict[str, str] = msgspec.field(default_factory=dict)


class BusUnavailable(Exception):
    """The broker did not accept the publish (down, timed out); nothing was acknowledged."""


class Publisher(Protocol):
    async def publish(self, messages: Sequence[BusMessage]) -> None:
        """Publish in order; return only when the broker acknowledged all of them,
        else raise :class:`BusUnavailable` (a retry may publish some twice: consumers dedupe)."""
        ...


class InboundEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A domain event as the subscriber hands it to the actor layer.

    On the wire a domain event's data is one JSON object that always has ``tenantId`` and, where
    it concerns one, ``propertyId`` / ``deviceId`` / ``operatorId`` / ``sessionId``.
    """

    subject: str
    event_id: str
    tenant: str
    data: msgspec.Raw
    attributes: dict[str, str] = msgspec.field(default_factory=dict)


class EventHandler(Protocol):
    async def __call__(self, event: InboundEvent) -> None:
        """Handle one event; return only when it was handled (then the subscriber acks),
        raise to have it redelivered."""
        ...
