"""Route table with schema metadata, and msgspec decoding that names the failing field.

Handlers stay plain Quart view functions; ``Api.route`` records what each one takes and returns
so the OpenAPI document is generated from the same Structs the handlers decode with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from quart import Quart, request

from edge.asgi import REQUEST_ID_KEY
from edge.auth.guard import authenticate
from edge.auth.principal import Access
from edge.errors import ApiError, Code

S = TypeVar("S", bound=msgspec.Struct)
View = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class RouteSpec:
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
    extra_responses: Mapping[int, str] = field(default_factory=dict)


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
    ) -> Callable[[View], View]:
        """Register ``view``. With ``auth`` other than "none" the auth chain runs first
        (edge/auth/guard.py) and the view gets ``principal=`` as a keyword argument."""
        spec = RouteSpec(
            path, method, summary, tag, query, body, response, content_type, errors, auth
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


def validation_message(exc: msgspec.ValidationError | msgspec.DecodeError) -> str:
    """msgspec's message with its JSON path as a field name (``… - at `$.a.b``` → ``a.b: …``)."""
    text = str(exc)
    detail, _, path = text.partition(" - at `$")
    name = path.rstrip("`").lstrip(".")
    return f"{name}: {detail}" if name else detail


async def decode_body(model: type[S]) -> S:
    """Decode the JSON body into ``model``; any failure is VALIDATION_FAILED naming the field."""
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type.split(";")[0]:
        raise ApiError(Code.UNSUPPORTED_MEDIA_TYPE, "content-type must be application/json")
    raw = await request.get_data(as_text=False)
    try:
        return msgspec.json.decode(raw, type=model)
    except msgspec.ValidationError as exc:
        raise ApiError(Code.VALIDATION_FAILED, validation_message(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(Code.VALIDATION_FAILED, f"body: {exc}") from None


def decode_query(model: type[S]) -> S:
    """Convert the query string into ``model`` (strings coerced to the field types)."""
    args = {key: request.args.get(key) for key in request.args}
    repeated = [key for key in request.args if len(request.args.getlist(key)) > 1]
    if repeated:
        raise ApiError(Code.VALIDATION_FAILED, f"{repeated[0]}: given more than once")
    try:
        return msgspec.convert(args, model, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(Code.VALIDATION_FAILED, validation_message(exc)) from None
