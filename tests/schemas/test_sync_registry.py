"""The sync registry (issue #13 item 6): nothing of ``bff-consumer-service`` or
``bff-tenant-booking-service`` (their SYNC_CONTRACTs: replication scope NONE, "CI fails if a
row is added"), none of this BFF's own aggregates (SERVICE_OVERVIEW §3: session and projection
state only), every entry well-formed and owned by an upstream the BFF knows."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import get_args

import msgspec
import pytest

from schemas.sync import HandshakeBody
from schemas.sync_registry import (
    NOT_REPLICATED_SERVICES,
    SCOPES,
    SYNC_REGISTRY,
    ConflictPolicy,
    aggregate,
)
from schemas.upstream import UPSTREAM_NAMES

# The aggregates each sibling BFF owns, as their SYNC_CONTRACTs list them (§1, "Replication
# scope: NONE"); and this BFF's own (SERVICE_OVERVIEW §3).
CONSUMER = {
    "GuestSession",
    "SearchSession",
    "Wishlist",
    "BookingHandoff",
    "MetaPageView",
    "ConversionFunnelEvent",
    "BotScore",
}
TENANT_BOOKING = {
    "TenantBootstrap",
    "BookingDraft",
    "BookingHandoffArrival",
    "MarketingAttribution",
    "LoyaltyContext",
    "ConfirmationView",
    "BookingDraftSnapshot",
}
BACKOFFICE_OWN = {
    "BackofficeSession",
    "DashboardSnapshot",
    "WorkbenchView",
    "AISuggestionInbox",
    "AlertInbox",
    "OperatorActivity",
    "DeviceSyncStatus",
    "OperatorPreferences",
    "KeyboardShortcutMap",
    "OfflineActionQueueHint",
}
SPEC = Path(os.environ.get("BFF_SPEC_DIR", Path(__file__).resolve().parents[3] / "shared/spec"))


def test_no_sibling_bff_aggregate_is_replicated() -> None:
    services = {entry.service_name for entry in SYNC_REGISTRY}
    assert not services & {"bff-consumer-service", "bff-tenant-booking-service"}
    aggregates = {entry.aggregate for entry in SYNC_REGISTRY}
    assert not aggregates & CONSUMER
    assert not aggregates & TENANT_BOOKING
    assert not any(a.lower().startswith(("bff-consumer", "bff-tenant-booking")) for a in aggregates)


def test_the_bffs_own_aggregates_are_not_replicated() -> None:
    assert not {entry.aggregate for entry in SYNC_REGISTRY} & BACKOFFICE_OWN
    assert all(entry.service_name not in NOT_REPLICATED_SERVICES for entry in SYNC_REGISTRY)


def test_entries_are_well_formed_and_owned_by_known_upstreams() -> None:
    scopes = [entry.scope for entry in SYNC_REGISTRY]
    assert len(set(scopes)) == len(scopes) and tuple(scopes) == SCOPES
    assert len({entry.aggregate for entry in SYNC_REGISTRY}) == len(SYNC_REGISTRY)
    owners = {f"{name}-service" for name in UPSTREAM_NAMES} - {"lock-service"}
    for entry in SYNC_REGISTRY:
        assert entry.service_name in owners, entry
        assert entry.conflict_policy in get_args(ConflictPolicy)
        assert entry.note
        assert aggregate(entry.scope) is entry
    assert aggregate("door-locks") is None  # lock keys are issued live, never replicated


def test_handshake_scopes_are_the_registrys() -> None:
    decode = msgspec.json.Decoder(HandshakeBody).decode
    assert decode(b'{"deviceId": "d", "scopes": ["reservations", "folios"]}').scopes == [
        "reservations",
        "folios",
    ]
    for foreign in ("GuestSession", "BookingDraft", "BackofficeSession", "wishlist"):
        with pytest.raises(msgspec.ValidationError, match=r"scopes\[0\]"):
            decode(b'{"deviceId": "d", "scopes": ["%s"]}' % foreign.encode())


@pytest.mark.skipif(not SPEC.is_dir(), reason="the shared spec is not checked out here")
def test_the_lists_above_match_the_sibling_contracts() -> None:
    """The aggregate names this test guards against are the contracts' own (a renamed or added
    row there must be mirrored above)."""
    for path, expected in (
        (SPEC / "SYNC_CONTRACT.bff-consumer-service.md", CONSUMER),
        (SPEC / "SYNC_CONTRACT.bff-tenant-booking-service.md", TENANT_BOOKING),
    ):
        scope_table = path.read_text().split("2. Why", 1)[0]  # §1: the aggregates owned
        assert all(name in scope_table for name in expected), path.name
        assert re.search(r"Replication scope: NONE", scope_table), path.name
