"""Every typed upstream call against the simulator: paths and schemas agree end to end."""

from __future__ import annotations

import pytest

from edge.errors import Code
from edge.upstream.errors import UpstreamRejected
from schemas.upstream import (
    ai,
    billing,
    housekeeping,
    lock,
    maintenance,
    notification,
    reservation,
    sync,
    tenant,
)
from tests.support.sim import SimHandle
from tests.support.upstream import clients_for, sample

T, P = "tnt-demo", "prop-demo-1"


async def test_every_read_decodes(sim: SimHandle) -> None:
    async with clients_for(sim) as (u, metrics):
        assert (await u.tenant.tenant(T)).status == "active"
        assert (await u.tenant.tenant("tnt-suspended")).status == "suspended"
        assert (await u.tenant.preferences(T, "opr-fd-demo")).version == 1
        prop = await u.property.property(T, P)
        assert prop.local_date == sim.today(P) and prop.time_zone == "Asia/Kolkata"
        assert len((await u.property.rooms(T, P)).items) == prop.room_count
        arrivals = await u.reservation.arrivals(T, P)
        assert arrivals.date == prop.local_date and arrivals.total > 0
        assert (await u.reservation.departures(T, P)).total > 0
        in_house = await u.reservation.in_house(T, P)
        assert in_house.total > 0
        assert (await u.reservation.no_shows(T, P)).total >= 1
        assert (await u.inventory.availability(T, P)).total_rooms == prop.room_count
        assert len((await u.pricing.rates(T, P)).rates) == len(prop.room_types)
        assert (await u.housekeeping.tasks(T, P)).total > 0
        assert (await u.maintenance.work_orders(T, P)).total > 0
        # the summary agrees with the in-house guests' own folios (the simulator's, read
        # directly); the seeded world has open ones
        summary = await u.billing.summary(T, P)
        base = f"/billing/v1/tenants/{T}/properties/{P}/reservations"
        house = [sim.get(f"{base}/{r.id}/folio") for r in in_house.items]
        assert summary.open_folios == sum(f["status"] == "open" for f in house) > 0
        assert summary.total_balance_minor == sum(f["balanceMinor"] for f in house)
        assert (await u.ai.suggestions(T, P)).total > 0
        assert (await u.notification.alerts(T, P)).total > 0
        assert (await u.sync.cursor(T, "dev-x")).cursor_version == 0
        assert len((await u.analytics.kpis(T, P)).trend) == 7
        assert len((await u.iam.jwks()).keys) == 1
        assert (
            sample(
                metrics,
                "bff_upstream_requests_total",
                upstream="reservation",
                operation="arrivals",
                outcome="ok",
            )
            == 1
        )


async def test_every_mutation_applies(sim: SimHandle) -> None:
    """Also the calls no route makes yet (the mutation, preferences and sync routes of the
    contract's §9 will): this test is what keeps them working until then."""
    today = sim.today(P)
    async with clients_for(sim) as (u, _):
        booked = next(r for r in (await u.reservation.arrivals(T, P)).items if r.status == "booked")
        done = await u.reservation.check_in(
            T, P, booked.id, reservation.CheckInRequest(operator_id="opr-fd-demo"), "k1"
        )
        assert done.status == "checked_in"
        keys = await u.lock.issue(
            T,
            P,
            booked.id,
            lock.IssueKeyRequest(operator_id="opr-fd-demo", device_id="dev-1", key_count=2),
            "k2",
        )
        assert len(keys.items) == 2
        revoked = await u.lock.revoke(
            T,
            P,
            booked.id,
            lock.RevokeKeysRequest(
                operator_id="opr-fd-demo", device_id="dev-1", reason="lost card"
            ),
            "k3",
        )
        assert {k.status for k in revoked.items} == {"revoked"}
        folio = await u.billing.charge(
            T,
            P,
            done.folio_id,
            billing.ChargeRequest(
                code="FNB", description="Dinner", amount_minor=4500, operator_id="opr-fd-demo"
            ),
            "k4",
        )
        assert folio.charges_minor >= 4500
        staying = next(
            r for r in (await u.reservation.in_house(T, P)).items if r.arrival_date < today
        )
        refunded = await u.billing.refund(
            T,
            P,
            staying.folio_id,
            billing.RefundRequest(amount_minor=100, reason="Goodwill", operator_id="opr-fd-demo"),
            "k4r",
        )
        assert refunded.lines[-1].kind == "refund" and refunded.lines[-1].amount_minor == 100
        out = await u.reservation.check_out(
            T, P, booked.id, reservation.CheckOutRequest(operator_id="opr-fd-demo"), "k5"
        )
        assert out.status == "checked_out"
        task = (await u.housekeeping.tasks(T, P, status="pending")).items[0]
        moved = await u.housekeeping.transition(
            T,
            P,
            task.id,
            housekeeping.TaskTransition(
                to="assigned", operator_id="opr-hk-demo", assignee_id="stf-prop-demo-1-2"
            ),
            "k6",
        )
        assert moved.assignee_name == "Bilal"
        wo = (await u.maintenance.work_orders(T, P, status="open")).items[0]
        assert (
            await u.maintenance.transition(
                T,
                P,
                wo.id,
                maintenance.WorkOrderTransition(to="in_progress", operator_id="opr-mt-demo"),
                "k8",
            )
        ).status == "in_progress"
        suggestion = (await u.ai.suggestions(T, P)).items[0]
        decided = await u.ai.decide(
            T,
            P,
            suggestion.id,
            ai.DecideRequest(decision="accept", operator_id="opr-gm-demo"),
            "k9",
        )
        assert decided.status == "accepted"
        alert = (await u.notification.alerts(T, P, status="open")).items[0]
        acked = await u.notification.acknowledge(
            T, P, alert.id, notification.AcknowledgeRequest(operator_id="opr-fd-demo"), "k10"
        )
        assert acked.status == "acknowledged"
        prefs = await u.tenant.put_preferences(
            T,
            "opr-fd-demo",
            tenant.PreferencesUpdate(layout="compact-grid", density="compact", expected_version=1),
            "k11",
        )
        assert prefs.version == 2
        shake = await u.sync.handshake(
            T,
            "dev-1",
            sync.HandshakeRequest(operator_id="opr-fd-demo", app_version="1.4.0", schema_version=3),
        )
        assert shake.mode == "full"
        cursor = await u.sync.advance_cursor(T, "dev-1", sync.CursorAdvance(cursor_version=17))
        assert (await u.sync.cursor(T, "dev-1")).cursor_version == cursor.cursor_version == 17
    subjects = {e["subject"] for e in sim.events()}
    assert {
        "melmastoon.reservation.checked_in.v1",
        "melmastoon.reservation.checked_out.v1",
        "melmastoon.maintenance.workorder.status_changed.v1",
        "melmastoon.ai.suggestion.invalidated.v1",
    } <= subjects


async def test_a_4xx_is_a_rejection_with_the_upstream_code(sim: SimHandle) -> None:
    async with clients_for(sim) as (u, metrics):
        with pytest.raises(UpstreamRejected) as missing:
            await u.reservation.check_out(
                T, P, "rsv-nope", reservation.CheckOutRequest(operator_id="opr-fd-demo"), "k"
            )
        assert missing.value.code is Code.NOT_FOUND and missing.value.status == 404
        stale = tenant.PreferencesUpdate(layout="x", density="compact", expected_version=99)
        with pytest.raises(UpstreamRejected) as conflict:
            await u.tenant.put_preferences(T, "opr-fd-demo", stale, "k")
        assert conflict.value.code is Code.CONFLICT
        assert conflict.value.upstream_code == "VERSION_CONFLICT"
        assert (
            sample(
                metrics,
                "bff_upstream_requests_total",
                upstream="tenant",
                operation="putPreferences",
                outcome="rejected",
            )
            == 1
        )
    assert len(sim.calls("tenant")) == 1  # a 4xx is never retried
