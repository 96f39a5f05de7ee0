"""Simulated tenant-service: tenant status (suspension, version floor), operators, preferences."""

from __future__ import annotations

from ops.sim.context import Sim, conflict, not_found
from ops.sim.http import Request, Response, Router
from ops.sim.world import utc_now
from schemas.upstream.tenant import Operator, OperatorPreferences, PreferencesUpdate, Tenant

BASE = "/tenant/v1/tenants/{tenantId}"


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE, lambda r: get_tenant(sim, r))
    router.add("GET", BASE + "/operators/{operatorId}", lambda r: get_operator(sim, r))
    router.add("GET", BASE + "/operators/{operatorId}/preferences", lambda r: get_prefs(sim, r))
    router.add("PUT", BASE + "/operators/{operatorId}/preferences", lambda r: put_prefs(sim, r))


def _tenant(sim: Sim, request: Request) -> Tenant:
    tenant = sim.world.tenants.get(request.params["tenantId"])
    if tenant is None:
        raise not_found("tenant")
    return tenant


def _operator(sim: Sim, request: Request) -> Operator:
    tenant = _tenant(sim, request)
    op = sim.world.operators.get(request.params["operatorId"])
    if op is None or op.tenant_id != tenant.id:
        raise not_found("operator")
    return op


async def get_tenant(sim: Sim, request: Request) -> Response:
    return Response(200, _tenant(sim, request))


async def get_operator(sim: Sim, request: Request) -> Response:
    return Response(200, _operator(sim, request))


async def get_prefs(sim: Sim, request: Request) -> Response:
    return Response(200, sim.world.preferences[_operator(sim, request).id])


async def put_prefs(sim: Sim, request: Request) -> Response:
    op = _operator(sim, request)
    body: PreferencesUpdate = request.decode(PreferencesUpdate)
    current = sim.world.preferences[op.id]
    if body.expected_version is not None and body.expected_version != current.version:
        raise conflict(f"preferences are at version {current.version}", "VERSION_CONFLICT")
    updated = OperatorPreferences(
        operator_id=op.id,
        layout=body.layout,
        density=body.density,
        columns=body.columns,
        shortcuts=body.shortcuts,
        version=current.version + 1,
        updated_at=utc_now(),
    )
    sim.world.preferences[op.id] = updated
    return Response(200, updated)
