"""What the runtime needs to know about an actor kind: how to build one and what it accepts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from actors.address import ActorAddress


class Actor(Protocol):
    """One incarnation of an actor. The runtime calls these from the actor's own task only,
    one at a time, so implementations need no locking."""

    async def activate(self) -> None:
        """Rebuild state (ledger replay, Redis reload). Raising here counts as a crash."""
        ...

    async def handle(self, message: Any) -> Any:
        """Process one message; the return value is the ``ask`` reply (ignored for ``tell``).
        Raise :class:`actors.errors.Refused` to answer "no"; anything else crashes."""
        ...

    async def deactivate(self) -> None:
        """Best effort on passivation (never on a crash): nothing needed for correctness."""
        ...


@dataclass(frozen=True)
class ActorKind:
    """A registered kind: its name, the message union it decodes from JSON, the Struct types it
    accepts, and a factory building a fresh incarnation for an address."""

    name: str
    messages: Any  # a msgspec tagged union, used to decode admin/HTTP bodies
    accepts: tuple[type, ...]
    factory: Callable[[ActorAddress], Actor]
