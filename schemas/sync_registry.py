"""The sync registry: every aggregate the platform replicates to the desktop's local SQLite store,
with the service that owns it and its conflict policy (issue #13 item 6).

The desktop is offline-first (ADR-0003): it reads its local copy and queues writes while the
network is down, pulls changes from sync-service directly when it is up, and drains its queue
through this BFF. What it may keep locally is this table and nothing else; ``POST
/sync/handshake`` refuses a scope that is not in it.

Not here, on purpose:

* the aggregates of ``bff-consumer-service`` and ``bff-tenant-booking-service`` — their
  SYNC_CONTRACTs say "replication scope: NONE" and "CI fails if a row is added";
* this BFF's own aggregates (SERVICE_OVERVIEW §3: sessions, caches, inboxes, activity,
  DeviceSyncStatus, preferences, the shortcut map, the offline-queue hint) — session and
  projection state that lives on the cloud side only;
* door-lock keys (lock-integration-service): issued and revoked live, with MFA and a complete
  audit trail, never from a local copy.

``tests/schemas/test_sync_registry.py`` holds the first two rules.
"""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

SYNC_SCHEMA_VERSION = 1
"""The version of the desktop's local schema for these aggregates (sent to sync-service)."""

ConflictPolicy = Literal["server_wins", "command_replay", "append_only"]
"""How a conflict between the desktop's copy and the owning service's is resolved.

* ``server_wins`` — read-only on the desktop: it never edits these rows, every pull overwrites.
* ``command_replay`` — the desktop changes the aggregate only through queued commands, each with
  its ``Idempotency-Key``; on reconnect they are replayed through the BFF in order, the owning
  service applies or refuses each (a stale transition is a 409), and the next pull overwrites
  the local rows with the service's state. No field-level merge ever happens on the desktop.
* ``append_only`` — entries are only ever added (folio charges and refunds), each keyed by its
  ``Idempotency-Key`` so a replayed entry is applied once; nothing is overwritten or merged, and
  balances are the owning service's to compute.
"""

SyncScope = Literal[
    "properties",
    "rooms",
    "inventory",
    "rates",
    "reservations",
    "housekeeping-tasks",
    "maintenance-work-orders",
    "folios",
]
"""A handshake scope: one replicated aggregate."""

SCOPES: tuple[SyncScope, ...] = get_args(SyncScope)

NOT_REPLICATED_SERVICES = frozenset(
    {"bff-backoffice-service", "bff-consumer-service", "bff-tenant-booking-service"}
)
"""Services whose aggregates never reach a desktop's local store."""


class SyncAggregate(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    scope: SyncScope
    aggregate: str
    service_name: str
    conflict_policy: ConflictPolicy
    note: str


def _entry(
    scope: SyncScope, aggregate: str, service: str, policy: ConflictPolicy, note: str
) -> SyncAggregate:
    return SyncAggregate(
        scope=scope, aggregate=aggregate, service_name=service, conflict_policy=policy, note=note
    )


SYNC_REGISTRY: tuple[SyncAggregate, ...] = (
    _entry(
        "properties",
        "Property",
        "property-service",
        "server_wins",
        "property metadata the desktop renders offline",
    ),
    _entry("rooms", "Room", "property-service", "server_wins", "room list and room types"),
    _entry(
        "inventory",
        "RoomInventory",
        "inventory-service",
        "server_wins",
        "availability per room type and day; offline it is only a hint",
    ),
    _entry("rates", "RatePlan", "pricing-service", "server_wins", "rate plans and rates"),
    _entry(
        "reservations",
        "Reservation",
        "reservation-service",
        "command_replay",
        "check-in and check-out are queued commands; reservation-service decides",
    ),
    _entry(
        "housekeeping-tasks",
        "HousekeepingTask",
        "housekeeping-service",
        "command_replay",
        "task transitions are queued commands; an invalid transition is refused on replay",
    ),
    _entry(
        "maintenance-work-orders",
        "MaintenanceWorkOrder",
        "maintenance-service",
        "command_replay",
        "work-order transitions are queued commands",
    ),
    _entry(
        "folios",
        "Folio",
        "billing-service",
        "append_only",
        "charges and refunds are entries added once each (refunds need MFA, so online only)",
    ),
)

_BY_SCOPE: dict[str, SyncAggregate] = {entry.scope: entry for entry in SYNC_REGISTRY}


def aggregate(scope: str) -> SyncAggregate | None:
    """The registry entry of ``scope``, ``None`` when the platform does not replicate it."""
    return _BY_SCOPE.get(scope)
