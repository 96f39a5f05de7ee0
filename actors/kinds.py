"""The actor kinds of this service, bound to their dependencies, and address helpers."""

from __future__ import annotations

from actors.address import ActorAddress, address
from actors.device import KIND as DEVICE
from actors.device import DeviceDeps, device_kind
from actors.kind import ActorKind
from actors.notices import NoticeHub
from actors.ports import EventLog
from actors.property import KIND as PROPERTY
from actors.property import Compositions, property_kind
from edge.auth.sessions import SessionStore
from edge.redis_tier import RedisTier
from ledger.database import Database
from ledger.device_status import DeviceStatusStore


def standard_kinds(
    log: EventLog,
    cache: RedisTier,
    session: RedisTier,
    *,
    db: Database,
    notices: NoticeHub,
    heartbeat_sample_rate: float = 0.05,
    compositions: Compositions | None = None,
) -> list[ActorKind]:
    """DeviceActor and PropertyActor. Later features add behaviour to them, not new plumbing."""
    devices = DeviceDeps(
        log=log,
        cache=cache,
        sessions=SessionStore(session),
        status=DeviceStatusStore(db),
        notices=notices,
        heartbeat_sample_rate=heartbeat_sample_rate,
    )
    return [device_kind(devices), property_kind(log, cache, compositions)]


def device(tenant: str, device_id: str) -> ActorAddress:
    return address(DEVICE, tenant, device_id)


def property_(tenant: str, property_id: str) -> ActorAddress:
    return address(PROPERTY, tenant, property_id)
