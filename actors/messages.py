"""Messages every actor kind accepts. Kind-specific commands live with their kind; each kind's
messages form one tagged union (``{"type": "<tag>", ...}`` on the wire)."""

from __future__ import annotations

from typing import Annotated

import msgspec

CommandId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Message(msgspec.Struct, frozen=True, kw_only=True, rename="camel", tag_field="type"):
    """Base of every actor message."""


class GetState(Message, frozen=True, tag="getState"):
    """Reply with the actor's current state (a snapshot Struct)."""


class DomainEvent(Message, frozen=True, tag="domainEvent"):
    """A consumed domain event (``melmastoon.<service>.…``) that concerns this actor."""

    subject: str
    event_id: str
    data: msgspec.Raw = msgspec.Raw(b"{}")


class Handled(msgspec.Struct, frozen=True, rename="camel"):
    """Reply to a :class:`DomainEvent`: whether it changed anything."""

    acted: bool
