"""Route table with schema metadata, and msgspec decoding that names the failing field.

Handlers stay plain Quart view functions; ``Api.route`` records what each one takes and returns
so the OpenAPI document is generated from the same Structs the handlers decode with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec
from quart import Quart, request

from edge.asgi import REQUEST_ID_KEY
from edge.auth.guard import authenticate
from edge.auth.principal import Access, auth_codes
from edge.decoding import Malformed, convert, decode_json
from edge.errors import ApiError, Code

S = TypeVar("S", bound=msgspec.Struct)
View = Callable[..., Awaitable[Any]]
Idempotency = Literal["none", "accepted", "required"]
_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Ndjson:
    """The ``application/x-ndjson`` form of a route's 200 response (chosen with ``Accept``): one
    ``first`` line, any number of ``lines``, one ``last`` line, each a JSON object."""

    first: type[msgspec.Struct]
    lines: type[msgspec.Struct]
    last: type[msgspec.Struct]


@dataclass(frozen=True)
class RouteSpec:
    """What a route takes and answers: the OpenAPI document (edge/openapi.py) is made of these."""

    path: str
    method: str
    summary: str
    tag: str
    query: type[msgspec.Struct] | None = None
    body: type[msgspec.Struct] | None = None
    response: Any = None
    content_type: str = "application/json"
    errors: tuple[Code, ...] = ()
    auth: Access = "none"
    # Outside the auth chain but with a DPoP proof of its own, the old access token optional
    # and X-App-Version required (the token refresh).
    proof: bool = False
    idempotency: Idempotency = "none"  # the ``Idempotency-Key`` header
    mfa: bool = False  # a sensitive action: ``X-MFA-Attestation`` (edge/auth/stepup.py)
    ndjson: Ndjson | None = None
    # Statuses other than 200 answered with ``response`` (not the error envelope): description.
    also: Mapping[int, str] = field(default_factory=dict)

    def codes(self) -> tuple[Code, ...]:
        """Every error code this route can answer with, each once: the auth chain's for its
        access, what reading its input can fail with, what it declares, and the ones any
        route can meet (another method on the path, oversized headers, an unexpected failure)."""
        found = [*auth_codes(self.auth)]
        if self.query is not None or self.body is not None or self.auth != "none" or self.proof:
            found.append(Code.VALIDATION_FAILED)
        if "{" in self.path:
            found.append(Code.NOT_FOUND)  # a path parameter that does not fit one segment
        if self.body is not None or (self.auth != "none" and self.method in _BODY_METHODS):
            found += [Code.PAYLOAD_TOO_LARGE, Code.REQUEST_TIMEOUT]  # edge/asgi.py BodyDeadlines
        if self.body is not None:
            found.append(Code.UNSUPPORTED_MEDIA_TYPE)
        if self.idempotency == "required":
            found.append(Code.IDEMPOTENCY_KEY_REQUIRED)
        if self.idempotency != "none":  # edge/idempotency.py; Postgres down refuses with 503
            found += [
                Code.IDEMPOTENCY_KEY_REUSED,
                Code.IDEMPOTENCY_IN_FLIGHT,
                Code.SERVICE_UNAVAILABLE,
            ]
        if self.mfa:
            found += [
                Code.MFA_REQUIRED,
                Code.MFA_INVALID_OR_USED,
                Code.CACHE_UNAVAILABLE,
                Code.UPSTREAM_UNAVAILABLE,
            ]
        found += [*self.errors, Code.METHOD_NOT_ALLOWED, Code.HEADERS_TOO_LARGE, Code.INTERNAL]
        return tuple(dict.fromkeys(found))


class Api:
    """Collects routes; :meth:`install` registers them on a Quart app."""

    def __init__(self) -> None:
        self.routes: list[tuple[RouteSpec, View]] = []

    def route(
        self,
        path: str,
        method: str = "GET",
        *,
        summary: str,
        tag: str,
        query: type[msgspec.Struct] | None = None,
        body: type[msgspec.Struct] | None = None,
        response: Any = None,
        content_type: str = "application/json",
        errors: tuple[Code, ...] = (),
        auth: Access = "none",
        proof: bool = False,
        idempotency: Idempotency = "none",
        mfa: bool = False,
        ndjson: Ndjson | None = None,
        also: Mapping[int, str] | None = None,
    ) -> Callable[[View], View]:
        """Register ``view``. With ``auth`` other than "none" the auth chain runs first
        (edge/auth/guard.py) and the view gets ``principal=`` as a keyword argument. The other
        keywords only describe the route, for the OpenAPI document (see :class:`RouteSpec`)."""
        spec = RouteSpec(
            path=path,
            method=method,
            summary=summary,
            tag=tag,
            query=query,
            body=body,
            response=response,
            content_type=content_type,
            errors=errors,
            auth=auth,
            proof=proof,
            idempotency=idempotency,
            mfa=mfa,
            ndjson=ndjson,
            also=dict(also or {}),
        )

        def register(view: View) -> View:
            self.routes.append((spec, view))
            return view

        return register

    def install(self, app: Quart, *, context: object) -> None:
        for spec, view in self.routes:
            endpoint = f"{spec.method.lower()}:{spec.path}"
            bound = _bind(view, context) if spec.auth == "none" else _guarded(view, context, spec)
            app.add_url_rule(_quart_path(spec.path), endpoint, bound, methods=[spec.method])


def _bind(view: View, context: object) -> View:
    async def bound(**kwargs: Any) -> Any:
        return await view(context, **kwargs)

    bound.__name__ = view.__name__
    return bound


def _guarded(view: View, context: object, spec: RouteSpec) -> View:
    async def bound(**kwargs: Any) -> Any:
        principal = await authenticate(context, spec.auth, path_params=kwargs)
        return await view(context, principal=principal, **kwargs)

    bound.__name__ = view.__name__
    return bound


def _quart_path(path: str) -> str:
    """``/devices/{deviceId}`` (OpenAPI style) → ``/devices/<deviceId>`` (Quart style)."""
    return path.replace("{", "<").replace("}", ">")


def request_id() -> str:
    """The id of the current request (set by the ASGI middleware, echoed as X-Request-Id)."""
    scope: Any = request.scope
    return str(scope.get(REQUEST_ID_KEY, ""))


async def decode_body(model: type[S]) -> S:
    """Decode the JSON body into ``model``; any failure is VALIDATION_FAILED naming the field
    (or ``body``): edge/decoding.py, the one decoder of untrusted input."""
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type.split(";")[0]:
        raise ApiError(Code.UNSUPPORTED_MEDIA_TYPE, "content-type must be application/json")
    raw = await request.get_data(as_text=False)
    try:
        return decode_json(raw, model, where="body")
    except Malformed as exc:
        raise ApiError(Code.VALIDATION_FAILED, str(exc)) from None


def decode_query(model: type[S]) -> S:
    """Convert the query string into ``model`` (strings coerced to the field types); any failure
    is VALIDATION_FAILED naming the parameter (or ``query``)."""
    args = {key: request.args.get(key) for key in request.args}
    repeated = [key for key in request.args if len(request.args.getlist(key)) > 1]
    if repeated:
        raise ApiError(Code.VALIDATION_FAILED, f"{repeated[0][:100]}: given more than once")
    try:
        return convert(args, model, strict=False, where="query")
    except Malformed as exc:
        raise ApiError(Code.VALIDATION_FAILED, str(exc)) from None
