"""Routes that exist only when ``BFF_ENABLE_TEST_ROUTES=1`` (never in production mode).

They let the test suite force an internal error and hold a request in flight across a shutdown
(or, behind the idempotency layer, until a gate opens), and give the mutation benchmark its
baseline: a folio charge with everything but the idempotency layer and the audit rows.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec
import trio
from quart import Response

from actors.address import property_
from actors.property import MutationApplied
from edge.api import Api, decode_body, decode_query
from edge.assembly import Services
from edge.auth.principal import Principal
from edge.errors import ApiError, Code
from edge.idempotency import idempotent, read_key
from edge.mutations.proxy import path_id
from edge.routes.mutations import FOLIO_CHARGED
from schemas.mutations import ChargeBody, Folio
from schemas.upstream.billing import ChargeRequest

api = Api()


class SlowQuery(msgspec.Struct, kw_only=True):
    ms: Annotated[int, msgspec.Meta(ge=0, le=30_000)] = 1000


class EchoBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(max_length=1000)]
    count: Annotated[int, msgspec.Meta(ge=0)] = 1


class InternalFailure(Exception):
    """Raised on purpose by /_test/boom."""


@api.route("/_test/boom", summary="Raise an unexpected exception", tag="testing")
async def boom(services: Services) -> Response:
    raise InternalFailure("secret-detail-that-must-not-leak")


@api.route("/_test/slow", summary="Answer after `ms` milliseconds", tag="testing", query=SlowQuery)
async def slow(services: Services) -> Response:
    query = decode_query(SlowQuery)
    await trio.sleep(query.ms / 1000)
    return Response(b'{"slept":true}', content_type="application/json")


@api.route("/_test/echo", "POST", summary="Decode and echo a body", tag="testing", body=EchoBody)
async def echo(services: Services) -> Response:
    body = await decode_body(EchoBody)
    return Response(msgspec.json.encode(body), content_type="application/json")


class SensitiveBody(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    action: Literal["lock.revoke", "folio.refund"] = "lock.revoke"


@api.route(
    "/bff/backoffice/v1/_test/sensitive",
    "POST",
    summary="A sensitive action behind the MFA step-up guard",
    tag="testing",
    body=SensitiveBody,
    auth="mutation",
    mfa=True,
)
async def sensitive(services: Services, principal: Principal) -> Response:
    body = await decode_body(SensitiveBody)
    await services.auth.stepup.require(principal, body.action)
    return Response(b'{"done":true}', content_type="application/json")


@api.route(
    "/bff/backoffice/v1/_test/whoami",
    summary="The principal of an authenticated request",
    tag="testing",
    auth="read",
)
async def whoami(services: Services, principal: Principal) -> Response:
    return Response(msgspec.json.encode(principal), content_type="application/json")


@api.route(
    "/bff/backoffice/v1/_test/properties/{propertyId}/mutate",
    "POST",
    summary="A mutating route scoped to a property (auth chain tests)",
    tag="testing",
    auth="mutation",
)
async def mutate(services: Services, principal: Principal, propertyId: str) -> Response:
    return Response(b'{"done":true}', content_type="application/json")


# --- the idempotency layer (tests/edge/test_idempotency_layer.py) ------------------------------

GATE_WAIT_S = 10.0  # a held run goes on by itself after this, so no test can hang on it
MAX_NAMES = 256
_gates: dict[str, trio.Event] = {}
_runs: dict[str, int] = {}


class IdempotentBody(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    value: Annotated[str, msgspec.Meta(max_length=100)] = ""
    hold: bool = False  # wait for ``POST /_test/gates/{name}/open``
    outcome: Literal["ok", "conflict", "drift", "unavailable", "mfa"] = "ok"


@api.route(
    "/bff/backoffice/v1/_test/idempotent/{name}",
    "POST",
    summary="Count a run of `name` under the idempotency layer: held until its gate opens, "
    "answering a final error (conflict, drift), a retryable one (unavailable) or one about the "
    "caller (mfa)",
    tag="testing",
    body=IdempotentBody,
    auth="mutation",
    idempotency="required",
    errors=(Code.CONFLICT, Code.SCHEMA_DRIFT, Code.UPSTREAM_UNAVAILABLE, Code.MFA_INVALID_OR_USED),
)
async def idempotent_run(services: Services, principal: Principal, name: str) -> Response:
    checked = _test_name(name)
    body = await decode_body(IdempotentBody)
    return await idempotent(
        services, principal, lambda key: _counted_run(checked, body, key), required=True
    )


async def _counted_run(name: str, body: IdempotentBody, key: str | None) -> Response:
    run = _runs[name] = _runs.get(name, 0) + 1
    if body.hold:
        with trio.move_on_after(GATE_WAIT_S):
            await _gate(name).wait()
    if body.outcome == "conflict":
        raise ApiError(Code.CONFLICT, f"run {run} refused for good")
    if body.outcome == "unavailable":
        raise ApiError(Code.UPSTREAM_UNAVAILABLE, f"run {run} failed; retry")
    if body.outcome == "drift":
        raise ApiError(Code.SCHEMA_DRIFT, f"run {run}: the upstream answered an unknown shape")
    if body.outcome == "mfa":
        raise ApiError(Code.MFA_INVALID_OR_USED, f"run {run}: attestation refused")
    answer = {"name": name, "value": body.value, "key": key, "run": run}
    headers = {"Cache-Control": "no-store", "Location": f"/_test/runs/{name}"}
    return Response(msgspec.json.encode(answer), content_type="application/json", headers=headers)


@api.route(
    "/_test/gates/{name}/open", "POST", summary="Let held runs of `name` go on", tag="testing"
)
async def open_gate(services: Services, name: str) -> Response:
    _gate(_test_name(name)).set()
    return Response(b'{"open":true}', content_type="application/json")


@api.route("/_test/runs/{name}", summary="How often the handler of `name` ran", tag="testing")
async def runs(services: Services, name: str) -> Response:
    count = _runs.get(_test_name(name), 0)
    return Response(msgspec.json.encode({"runs": count}), content_type="application/json")


def _test_name(name: str) -> str:
    if not (0 < len(name) <= 40 and name.replace("-", "").isalnum() and name.isascii()):
        raise ApiError(Code.VALIDATION_FAILED, "name: 1 to 40 of [A-Za-z0-9-]")
    if name not in _runs and len(_runs) >= MAX_NAMES:
        _runs.pop(next(iter(_runs)))
    return name


def _gate(name: str) -> trio.Event:
    if name not in _gates:
        if len(_gates) >= MAX_NAMES:
            _gates.pop(next(iter(_gates)))
        _gates[name] = trio.Event()
    return _gates[name]


# --- the mutation benchmark's baseline (ops/bench/mutations.py) --------------------------------


@api.route(
    "/bff/backoffice/v1/_test/bench/folios/{folioId}/charges",
    "POST",
    summary="A folio charge without the idempotency layer and the audit rows: the real route's "
    "auth, body, scope, upstream calls (folio read, charge with the key) and view invalidation, "
    "nothing else (the baseline of ops/bench/mutations.py)",
    tag="testing",
    body=ChargeBody,
    response=Folio,
    auth="mutation",
    errors=(
        Code.NOT_FOUND,
        Code.CONFLICT,
        Code.UPSTREAM_UNAVAILABLE,
        Code.UPSTREAM_TIMEOUT,
        Code.SCHEMA_DRIFT,
        Code.SERVICE_UNAVAILABLE,
        Code.OVERLOADED,
    ),
)
async def bench_charge(services: Services, principal: Principal, folioId: str) -> Response:
    fid = path_id("folioId", folioId)
    body = await decode_body(ChargeBody)
    principal.require_property(body.property_id)
    key = read_key(required=False)
    billing = services.upstreams.billing
    folio = await billing.folio(principal.tenant, body.property_id, fid)
    if folio.currency != body.currency:
        raise ApiError(Code.VALIDATION_FAILED, f"currency: folio {fid} is kept in {folio.currency}")
    request = ChargeRequest(
        code=body.code,
        description=body.description,
        amount_minor=body.amount_minor,
        operator_id=principal.operator_id,
    )
    charged = await billing.charge(principal.tenant, body.property_id, fid, request, key)
    applied = MutationApplied(subject=FOLIO_CHARGED, key=uuid.uuid4().hex)
    await services.actors.ask(property_(principal.tenant, body.property_id), applied)
    return Response(
        msgspec.json.encode(charged),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
