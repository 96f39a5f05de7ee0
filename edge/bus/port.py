"""What the service needs from a message bus, independent of the broker behind it.

Topics are per subject family: the producing service (``melmastoon.<service>``; the BFF's own
family is ``melmastoon.bff.backoffice``). Every message carries the event id (consumers dedupe on
it), the tenant, and an ordering key (the ledger stream for the BFF's own events).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec
import trio


def topic_for(subject: str) -> str:
    """``melmastoon.iam.session.revoked.v1`` → ``melmastoon.iam``;
    ``melmastoon.bff.backoffice.session.opened.v1`` → ``melmastoon.bff.backoffice``."""
    parts = subject.split(".")
    if len(parts) < 3 or parts[0] != "melmastoon":
        raise ValueError(f"not a melmastoon subject: {subject!r}")
    return ".".join(parts[:3] if parts[1] == "bff" else parts[:2])


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


# --- subscriber side of the adapters (added with the relay and subscriber) -------------------


@dataclass(eq=False)
class Delivery:
    """One message as a broker adapter hands it to the subscriber, with its own ack/nack.

    ``attempt`` counts deliveries of this message to this instance (1 on the first).
    """

    topic: str
    data: bytes
    attributes: dict[str, str]
    message_id: str
    attempt: int
    ack: Callable[[], Awaitable[None]]
    nack: Callable[[], Awaitable[None]]


class BusSource(Protocol):
    """The receiving half of an adapter: one subscription / consumer group per instance."""

    async def run(
        self,
        deliveries: trio.MemorySendChannel[Delivery],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Create the instance's subscription if needed (then ``started()``), feed deliveries
        until cancelled, close ``deliveries`` on exit; raise :class:`BusUnavailable` if the
        broker goes away (the subscriber restarts it with backoff)."""
        ...

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Park an unprocessable message (with the reason) where operators can inspect it."""
        ...

    async def retire(self) -> None:
        """The instance is going away for good: delete its subscription / consumer group."""
        ...
