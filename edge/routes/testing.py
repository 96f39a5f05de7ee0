"""Routes that exist only when ``BFF_ENABLE_TEST_ROUTES=1`` (never in production mode).

They let the test suite force an internal error and hold a request in flight across a shutdown.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import trio
from quart import Response

from edge.api import Api, decode_body, decode_query
from edge.assembly import Services
from edge.auth.principal import Principal

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
