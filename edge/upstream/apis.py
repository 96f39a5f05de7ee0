"""Typed calls, one small class per upstream, over :class:`UpstreamClient`.

Paths mirror the simulator (``ops/sim/services``) and every answer is decoded with the
upstream's Struct from ``schemas/upstream``. Mutations take the caller's ``idempotency_key``
(the BFF passes the desktop's key through, so an upstream retry is a replay, never a duplicate).

Only calls something makes are here. The mutations, preferences and sync calls are the exception:
the routes of API contract §9 (check-in/out, folio charges and refunds, task and work-order
transitions, lock keys, alert acknowledgement, AI decisions, preferences, sync handshake and
cursor) will make them; until then ``tests/edge/upstream/test_upstream_apis.py`` exercises each
against the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from edge.upstream.client import UpstreamClient
from schemas.upstream import (
    ai,
    analytics,
    billing,
    housekeeping,
    iam,
    inventory,
    lock,
    maintenance,
    notification,
    pricing,
    sync,
)
from schemas.upstream import property as prop
from schemas.upstream import reservation as rsv
from schemas.upstream import tenant as tnt


def _t(tenant_id: str) -> str:
    return f"/v1/tenants/{tenant_id}"


def _p(tenant_id: str, property_id: str) -> str:
    return f"/v1/tenants/{tenant_id}/properties/{property_id}"


def _day(day: date | None, **more: str | None) -> dict[str, str]:
    params = {"date": day.isoformat()} if day else {}
    params.update({k: v for k, v in more.items() if v is not None})
    return params


class _Api:
    def __init__(self, client: UpstreamClient) -> None:
        self.c = client


class IamApi(_Api):
    async def introspect_refresh(self, refresh_token: str, jkt: str) -> iam.RefreshTokenInfo:
        """Whose is this refresh token (nothing is spent; a reused one gets its session revoked
        at iam)? ``jkt``: the key the BFF verified the device's proof with."""
        return await self.c.call(
            "iam",
            "POST",
            "/v1/service/refresh-tokens/introspect",
            iam.RefreshTokenInfo,
            op="introspectRefresh",
            body=iam.KeyRefreshRequest(refresh_token=refresh_token, jkt=jkt),
        )

    async def refresh_for_key(self, refresh_token: str, jkt: str) -> iam.TokenResponse:
        """Rotate the refresh token on behalf of the device key ``jkt`` (API contract §2): the
        BFF, a trusted service, has verified the device's proof for its own refresh URL."""
        return await self.c.call(
            "iam",
            "POST",
            "/v1/service/sessions/refresh",
            iam.TokenResponse,
            op="refresh",
            body=iam.KeyRefreshRequest(refresh_token=refresh_token, jkt=jkt),
        )

    async def session(self, session_id: str) -> iam.SessionInfo:
        return await self.c.call(
            "iam", "GET", f"/v1/sessions/{session_id}", iam.SessionInfo, op="validate"
        )

    async def revoke(
        self, session_id: str, reason: iam.RevokeReason = "sign_out"
    ) -> iam.SessionInfo:
        return await self.c.call(
            "iam",
            "POST",
            f"/v1/sessions/{session_id}/revoke",
            iam.SessionInfo,
            op="signOut",
            body=iam.RevokeRequest(reason=reason),
        )

    async def attest_step_up(
        self, attestation_token: str, operator_id: str, device_id: str, action: iam.StepUpAction
    ) -> iam.StepUpVerifyResponse:
        return await self.c.call(
            "iam",
            "POST",
            "/v1/step-up/verify",
            iam.StepUpVerifyResponse,
            op="attestStepUp",
            body=iam.StepUpVerifyRequest(
                attestation_token=attestation_token,
                operator_id=operator_id,
                device_id=device_id,
                action=action,
            ),
        )

    async def jwks(self) -> iam.Jwks:
        return await self.c.call("iam", "GET", "/.well-known/jwks.json", iam.Jwks, op="jwks")


class TenantApi(_Api):
    async def tenant(self, tenant_id: str) -> tnt.Tenant:
        return await self.c.call("tenant", "GET", _t(tenant_id), tnt.Tenant, op="tenant")

    async def preferences(self, tenant_id: str, operator_id: str) -> tnt.OperatorPreferences:
        return await self.c.call(
            "tenant",
            "GET",
            f"{_t(tenant_id)}/operators/{operator_id}/preferences",
            tnt.OperatorPreferences,
            op="preferences",
        )

    async def put_preferences(
        self,
        tenant_id: str,
        operator_id: str,
        update: tnt.PreferencesUpdate,
        idempotency_key: str | None,
    ) -> tnt.OperatorPreferences:
        return await self.c.call(
            "tenant",
            "PUT",
            f"{_t(tenant_id)}/operators/{operator_id}/preferences",
            tnt.OperatorPreferences,
            op="putPreferences",
            body=update,
            idempotency_key=idempotency_key,
        )


class PropertyApi(_Api):
    async def property(self, tenant_id: str, property_id: str) -> prop.Property:
        return await self.c.call(
            "property", "GET", _p(tenant_id, property_id), prop.Property, op="property"
        )

    async def rooms(self, tenant_id: str, property_id: str) -> prop.RoomList:
        return await self.c.call(
            "property", "GET", f"{_p(tenant_id, property_id)}/rooms", prop.RoomList, op="rooms"
        )


class ReservationApi(_Api):
    async def _list(
        self, op: str, tenant_id: str, property_id: str, path: str, day: date | None = None
    ) -> rsv.ReservationList:
        return await self.c.call(
            "reservation",
            "GET",
            f"{_p(tenant_id, property_id)}/{path}",
            rsv.ReservationList,
            op=op,
            params=_day(day),
        )

    async def arrivals(
        self, tenant_id: str, property_id: str, day: date | None = None
    ) -> rsv.ReservationList:
        return await self._list("arrivals", tenant_id, property_id, "arrivals", day)

    async def departures(
        self, tenant_id: str, property_id: str, day: date | None = None
    ) -> rsv.ReservationList:
        return await self._list("departures", tenant_id, property_id, "departures", day)

    async def in_house(self, tenant_id: str, property_id: str) -> rsv.ReservationList:
        return await self._list("inHouse", tenant_id, property_id, "in-house")

    async def no_shows(
        self, tenant_id: str, property_id: str, day: date | None = None
    ) -> rsv.ReservationList:
        return await self._list("noShows", tenant_id, property_id, "no-shows", day)

    async def check_in(
        self,
        tenant_id: str,
        property_id: str,
        reservation_id: str,
        request: rsv.CheckInRequest,
        idempotency_key: str | None,
    ) -> rsv.Reservation:
        return await self.c.call(
            "reservation",
            "POST",
            f"{_p(tenant_id, property_id)}/reservations/{reservation_id}/check-in",
            rsv.Reservation,
            op="checkIn",
            body=request,
            idempotency_key=idempotency_key,
        )

    async def check_out(
        self,
        tenant_id: str,
        property_id: str,
        reservation_id: str,
        request: rsv.CheckOutRequest,
        idempotency_key: str | None,
    ) -> rsv.Reservation:
        return await self.c.call(
            "reservation",
            "POST",
            f"{_p(tenant_id, property_id)}/reservations/{reservation_id}/check-out",
            rsv.Reservation,
            op="checkOut",
            body=request,
            idempotency_key=idempotency_key,
        )


class InventoryApi(_Api):
    async def availability(
        self, tenant_id: str, property_id: str, day: date | None = None
    ) -> inventory.Availability:
        return await self.c.call(
            "inventory",
            "GET",
            f"{_p(tenant_id, property_id)}/availability",
            inventory.Availability,
            op="availability",
            params=_day(day),
        )


class PricingApi(_Api):
    async def rates(
        self, tenant_id: str, property_id: str, day: date | None = None
    ) -> pricing.RateSnapshot:
        return await self.c.call(
            "pricing",
            "GET",
            f"{_p(tenant_id, property_id)}/rates",
            pricing.RateSnapshot,
            op="rates",
            params=_day(day),
        )


class HousekeepingApi(_Api):
    async def tasks(
        self,
        tenant_id: str,
        property_id: str,
        day: date | None = None,
        status: housekeeping.TaskStatus | None = None,
    ) -> housekeeping.TaskList:
        return await self.c.call(
            "housekeeping",
            "GET",
            f"{_p(tenant_id, property_id)}/tasks",
            housekeeping.TaskList,
            op="tasks",
            params=_day(day, status=status),
        )

    async def transition(
        self,
        tenant_id: str,
        property_id: str,
        task_id: str,
        request: housekeeping.TaskTransition,
        idempotency_key: str | None,
    ) -> housekeeping.HousekeepingTask:
        return await self.c.call(
            "housekeeping",
            "POST",
            f"{_p(tenant_id, property_id)}/tasks/{task_id}/transition",
            housekeeping.HousekeepingTask,
            op="transition",
            body=request,
            idempotency_key=idempotency_key,
        )


class MaintenanceApi(_Api):
    def _base(self, tenant_id: str, property_id: str) -> str:
        return f"{_p(tenant_id, property_id)}/work-orders"

    async def work_orders(
        self,
        tenant_id: str,
        property_id: str,
        status: maintenance.WorkOrderStatus | None = None,
    ) -> maintenance.WorkOrderList:
        return await self.c.call(
            "maintenance",
            "GET",
            self._base(tenant_id, property_id),
            maintenance.WorkOrderList,
            op="workOrders",
            params=_day(None, status=status),
        )

    async def transition(
        self,
        tenant_id: str,
        property_id: str,
        work_order_id: str,
        request: maintenance.WorkOrderTransition,
        idempotency_key: str | None,
    ) -> maintenance.WorkOrder:
        return await self.c.call(
            "maintenance",
            "POST",
            f"{self._base(tenant_id, property_id)}/{work_order_id}/transition",
            maintenance.WorkOrder,
            op="transition",
            body=request,
            idempotency_key=idempotency_key,
        )


class BillingApi(_Api):
    async def summary(
        self, tenant_id: str, property_id: str, day: date | None = None
    ) -> billing.FolioSummary:
        return await self.c.call(
            "billing",
            "GET",
            f"{_p(tenant_id, property_id)}/folio-summary",
            billing.FolioSummary,
            op="summary",
            params=_day(day),
        )

    async def folio(self, tenant_id: str, property_id: str, folio_id: str) -> billing.Folio:
        return await self.c.call(
            "billing",
            "GET",
            f"{_p(tenant_id, property_id)}/folios/{folio_id}",
            billing.Folio,
            op="folio",
        )

    async def charge(
        self,
        tenant_id: str,
        property_id: str,
        folio_id: str,
        request: billing.ChargeRequest,
        idempotency_key: str | None,
    ) -> billing.Folio:
        return await self.c.call(
            "billing",
            "POST",
            f"{_p(tenant_id, property_id)}/folios/{folio_id}/charges",
            billing.Folio,
            op="charge",
            body=request,
            idempotency_key=idempotency_key,
        )

    async def refund(
        self,
        tenant_id: str,
        property_id: str,
        folio_id: str,
        request: billing.RefundRequest,
        idempotency_key: str | None,
    ) -> billing.Folio:
        return await self.c.call(
            "billing",
            "POST",
            f"{_p(tenant_id, property_id)}/folios/{folio_id}/refunds",
            billing.Folio,
            op="refund",
            body=request,
            idempotency_key=idempotency_key,
        )


class LockApi(_Api):
    def _base(self, tenant_id: str, property_id: str, reservation_id: str) -> str:
        return f"{_p(tenant_id, property_id)}/reservations/{reservation_id}/keys"

    async def issue(
        self,
        tenant_id: str,
        property_id: str,
        reservation_id: str,
        request: lock.IssueKeyRequest,
        idempotency_key: str | None,
    ) -> lock.KeyList:
        return await self.c.call(
            "lock",
            "POST",
            self._base(tenant_id, property_id, reservation_id),
            lock.KeyList,
            op="issueKey",
            body=request,
            idempotency_key=idempotency_key,
        )

    async def revoke(
        self,
        tenant_id: str,
        property_id: str,
        reservation_id: str,
        request: lock.RevokeKeysRequest,
        idempotency_key: str | None,
    ) -> lock.KeyList:
        return await self.c.call(
            "lock",
            "POST",
            self._base(tenant_id, property_id, reservation_id) + "/revoke",
            lock.KeyList,
            op="revokeKey",
            body=request,
            idempotency_key=idempotency_key,
        )


class AiApi(_Api):
    async def suggestions(
        self,
        tenant_id: str,
        property_id: str,
        category: ai.SuggestionCategory | None = None,
        status: str | None = None,
    ) -> ai.SuggestionList:
        return await self.c.call(
            "ai",
            "GET",
            f"{_p(tenant_id, property_id)}/suggestions",
            ai.SuggestionList,
            op="suggestions",
            params=_day(None, category=category, status=status),
        )

    async def decide(
        self,
        tenant_id: str,
        property_id: str,
        suggestion_id: str,
        request: ai.DecideRequest,
        idempotency_key: str | None,
    ) -> ai.Suggestion:
        return await self.c.call(
            "ai",
            "POST",
            f"{_p(tenant_id, property_id)}/suggestions/{suggestion_id}/decide",
            ai.Suggestion,
            op="decide",
            body=request,
            idempotency_key=idempotency_key,
        )


class NotificationApi(_Api):
    async def alerts(
        self, tenant_id: str, property_id: str, status: str | None = None
    ) -> notification.AlertList:
        return await self.c.call(
            "notification",
            "GET",
            f"{_p(tenant_id, property_id)}/alerts",
            notification.AlertList,
            op="alerts",
            params=_day(None, status=status),
        )

    async def acknowledge(
        self,
        tenant_id: str,
        property_id: str,
        alert_id: str,
        request: notification.AcknowledgeRequest,
        idempotency_key: str | None,
    ) -> notification.Alert:
        return await self.c.call(
            "notification",
            "POST",
            f"{_p(tenant_id, property_id)}/alerts/{alert_id}/acknowledge",
            notification.Alert,
            op="acknowledge",
            body=request,
            idempotency_key=idempotency_key,
        )


class SyncApi(_Api):
    def _base(self, tenant_id: str, device_id: str) -> str:
        return f"{_t(tenant_id)}/devices/{device_id}"

    async def handshake(
        self,
        tenant_id: str,
        device_id: str,
        request: sync.HandshakeRequest,
        idempotency_key: str | None = None,
    ) -> sync.HandshakeResponse:
        return await self.c.call(
            "sync",
            "POST",
            f"{self._base(tenant_id, device_id)}/handshake",
            sync.HandshakeResponse,
            op="handshake",
            body=request,
            idempotency_key=idempotency_key,
        )

    async def cursor(self, tenant_id: str, device_id: str) -> sync.DeviceCursor:
        return await self.c.call(
            "sync",
            "GET",
            f"{self._base(tenant_id, device_id)}/cursor",
            sync.DeviceCursor,
            op="cursor",
        )

    async def advance_cursor(
        self,
        tenant_id: str,
        device_id: str,
        request: sync.CursorAdvance,
        idempotency_key: str | None = None,
    ) -> sync.DeviceCursor:
        return await self.c.call(
            "sync",
            "POST",
            f"{self._base(tenant_id, device_id)}/cursor",
            sync.DeviceCursor,
            op="advanceCursor",
            body=request,
            idempotency_key=idempotency_key,
        )


class AnalyticsApi(_Api):
    async def kpis(
        self, tenant_id: str, property_id: str, day: date | None = None
    ) -> analytics.KpiSnapshot:
        return await self.c.call(
            "analytics",
            "GET",
            f"{_p(tenant_id, property_id)}/kpis",
            analytics.KpiSnapshot,
            op="kpis",
            params=_day(day),
        )


@dataclass(frozen=True)
class Upstreams:
    """What handlers use: ``services.upstreams.reservation.arrivals(tenant, property)``."""

    client: UpstreamClient
    iam: IamApi
    tenant: TenantApi
    property: PropertyApi
    reservation: ReservationApi
    inventory: InventoryApi
    pricing: PricingApi
    housekeeping: HousekeepingApi
    maintenance: MaintenanceApi
    billing: BillingApi
    lock: LockApi
    ai: AiApi
    notification: NotificationApi
    sync: SyncApi
    analytics: AnalyticsApi

    @classmethod
    def over(cls, client: UpstreamClient) -> Upstreams:
        return cls(
            client,
            IamApi(client),
            TenantApi(client),
            PropertyApi(client),
            ReservationApi(client),
            InventoryApi(client),
            PricingApi(client),
            HousekeepingApi(client),
            MaintenanceApi(client),
            BillingApi(client),
            LockApi(client),
            AiApi(client),
            NotificationApi(client),
            SyncApi(client),
            AnalyticsApi(client),
        )
