"""Actor identity: ``(kind, tenant, id)``. The tenant is part of every actor's identity, so two
tenants' devices with the same id are two different actors with two different streams."""

from __future__ import annotations

from typing import Annotated

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class ActorAddress(msgspec.Struct, frozen=True, order=True):
    """Hashable, ordered address of one virtual actor."""

    kind: str
    tenant: Name
    id: Name

    @property
    def stream(self) -> str:
        """The actor's ledger stream: ``<kind>:<id>`` (the tenant is its own ledger column)."""
        return f"{self.kind}:{self.id}"

    def __str__(self) -> str:
        return f"{self.kind}/{self.tenant}/{self.id}"


def address(kind: str, tenant: str, actor_id: str) -> ActorAddress:
    """Build an address, validating tenant and id (they end up in keys and stream names)."""
    return msgspec.convert({"kind": kind, "tenant": tenant, "id": actor_id}, ActorAddress)
