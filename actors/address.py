"""Actor identity: ``(kind, tenant, id)``. The tenant is part of every actor's identity, so two
tenants' devices with the same id are two different actors with two different streams."""

from __future__ import annotations

import msgspec

from schemas.identifiers import Identifier

DEVICE = "device"
PROPERTY = "property"


class ActorAddress(msgspec.Struct, frozen=True, order=True):
    """Hashable, ordered address of one virtual actor."""

    kind: str
    tenant: Identifier
    id: Identifier

    @property
    def stream(self) -> str:
        """The actor's ledger stream: ``<kind>:<id>`` (the tenant is its own ledger column)."""
        return f"{self.kind}:{self.id}"

    def __str__(self) -> str:
        return f"{self.kind}/{self.tenant}/{self.id}"


def address(kind: str, tenant: str, actor_id: str) -> ActorAddress:
    """Build an address, validating tenant and id (they end up in keys and stream names)."""
    return msgspec.convert({"kind": kind, "tenant": tenant, "id": actor_id}, ActorAddress)


def device(tenant: str, device_id: str) -> ActorAddress:
    """The DeviceActor of one workstation."""
    return address(DEVICE, tenant, device_id)


def property_(tenant: str, property_id: str) -> ActorAddress:
    """The PropertyActor of one hotel."""
    return address(PROPERTY, tenant, property_id)
