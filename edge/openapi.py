"""The OpenAPI 3.1 document, generated from the msgspec Structs of the route table.

Each operation says everything a generated client or a fuzzer needs: its security (DPoP, RFC
9449), its header parameters, every status it can answer with (the error envelope for each error
code :meth:`RouteSpec.codes` lists) and every media type of its 200 response.
"""

from __future__ import annotations

from typing import Any

import msgspec

from edge.api import Api, Ndjson, RouteSpec
from edge.errors import Code
from edge.idempotency import MAX_KEY, stores_error
from edge.sse.events import UNION as SSE_EVENT
from edge.sse.events import sse_components
from schemas.errors import ErrorEnvelope

REF = "#/components/schemas/{name}"
NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
SECURITY_SCHEME = "DPoP"
# What ``X-App-Version`` must look like (edge/auth/floor.py ``parse_version``).
SEMVER_PATTERN = r"^[0-9]{1,6}\.[0-9]{1,6}\.[0-9]{1,6}([-+][0-9A-Za-z.+-]{1,64})?$"
IDEMPOTENCY_KEY_PATTERN = f"^[\\x20-\\x7E]{{1,{MAX_KEY}}}$"  # edge/idempotency.py read_key
MAX_ATTESTATION = 4096  # edge/auth/stepup.py MAX_ATTESTATION_BYTES

DESCRIPTION = """Backend-for-Frontend of the hotel backoffice desktop.

**Authentication** (every `/bff/backoffice/v1/*` route but the token refresh): DPoP, RFC 9449.
`Authorization: DPoP <access token>` (the `DPoP` security scheme) and, on every request, a fresh
`DPoP: <proof>` header: a JWT with `typ` `dpop+jwt`, an asymmetric `alg` and the device's public
key in `jwk`, signed by that key, whose claims are `htm` (the method), `htu` (this URL without
query), `iat`, a single-use `jti` and `ath` (base64url SHA-256 of the access token). The access
token's `cnf.jkt` must be that key's thumbprint. Every call also sends `X-App-Version: <semver>`;
missing or below the app-version floor is `426 SYNC.VERSION_BLOCKED`. Sensitive actions need
`X-MFA-Attestation` from iam's step-up, good for one action, once.

**Errors** have the body `{"error": {"code", "message", "requestId", "retryable"}}`; each
response lists the codes it can carry. Besides the codes pinned by the API contract, this
service answers `METHOD_NOT_ALLOWED` (405, with `Allow`), `REQUEST_TIMEOUT` (408, retryable:
the body did not arrive within `BFF_BODY_TIMEOUT_S` or stalled for `BFF_BODY_IDLE_S`; the
connection is closed), `PAYLOAD_TOO_LARGE` (413, body over
`BFF_MAX_BODY_BYTES`), `UNSUPPORTED_MEDIA_TYPE` (415), `OVERLOADED` (503, retryable: an actor
mailbox stayed full past its deadline), `SERVICE_UNAVAILABLE` (503, retryable: a dependency such
as Postgres is down) and `INTERNAL` (500, never with a stack trace). 401s from the auth chain
carry `WWW-Authenticate: DPoP …`; 429 carries `Retry-After`. Before any route: a request line
and headers over 16 KiB are `HEADERS_TOO_LARGE` (431), and a head the HTTP/1.1 parser cannot
read (a raw non-ASCII byte in the path, a malformed header line, an unsupported
`Transfer-Encoding`) is `VALIDATION_FAILED` (400); both close the connection. Over HTTP/2 these
are stream or connection resets, not responses.

Every response carries `X-Request-Id`: the client's value when it is 1 to 128 characters of
`[A-Za-z0-9._:-]`, otherwise a new one (always a new one when the parser refused the head: the
client's was never read).
"""

_REQUEST_ID_HEADER = {
    "description": "The request's id: the client's `X-Request-Id` when it is well-formed, "
    "otherwise a new one",
    "schema": {"type": "string"},
}

PARAMETERS: dict[str, dict[str, Any]] = {
    "DPoP": {
        "name": "DPoP",
        "in": "header",
        "required": True,
        "description": "A DPoP proof (RFC 9449 §4) for this request, signed by the device key: "
        "`htm` this method, `htu` this URL without query, `iat` now, a `jti` never used before "
        "and, with an access token, its `ath`. One proof per request.",
        "schema": {"type": "string", "minLength": 1},
    },
    "XRequestId": {
        "name": "X-Request-Id",
        "in": "header",
        "required": False,
        "description": "Echoed in the response when it is 1 to 128 characters of "
        "`[A-Za-z0-9._:-]`; otherwise the service makes one.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    },
}

HEADERS: dict[str, dict[str, Any]] = {
    "XRequestId": _REQUEST_ID_HEADER,
    "RetryAfter": {
        "description": "Seconds until the rate limit's window ends",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
    "WWWAuthenticate": {
        "description": 'The RFC 9449 §7.1 challenge: `DPoP algs="…", error="…"`',
        "schema": {"type": "string"},
    },
    "Allow": {"description": "The methods this path takes", "schema": {"type": "string"}},
    "IdempotentReplayed": {
        "description": "`true` when this is the stored answer to an earlier request with the "
        "same `Idempotency-Key` (nothing ran again)",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "RetryAfterInFlight": {
        "description": "Seconds after which retrying the request with this `Idempotency-Key` "
        "may find it finished (`IDEMPOTENCY_IN_FLIGHT`)",
        "schema": {"type": "integer", "minimum": 1},
    },
}


def build_openapi(api: Api, *, version: str) -> dict[str, Any]:
    models: set[Any] = {ErrorEnvelope}
    for spec, _ in api.routes:
        for model in (spec.query, spec.body, spec.response):
            if model is not None:
                models.add(model)
        if spec.ndjson is not None:
            models.update((spec.ndjson.first, spec.ndjson.lines, spec.ndjson.last))
    ordered = sorted(models, key=repr)
    schemas, components = msgspec.json.schema_components(ordered, ref_template=REF)
    by_model = dict(zip(ordered, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for spec, view in api.routes:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec, view, by_model)
    if any(spec.content_type == EVENT_STREAM for spec, _ in api.routes):
        components.update(sse_components(REF))  # the stream's events (edge/sse/events.py)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bff-backoffice-service", "version": version, "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "DPoP",
                    "description": "`Authorization: DPoP <access token>` (RFC 9449): an ES256 JWT "
                    "from iam-service bound to the device key (`cnf.jkt`). Every request also "
                    "sends a fresh proof in the `DPoP` header (parameter `DPoP`).",
                }
            },
            "parameters": PARAMETERS,
            "headers": HEADERS,
        },
    }


def _operation(spec: RouteSpec, view: Any, by_model: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": spec.summary,
        "tags": [spec.tag],
        "operationId": view.__name__,
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_params(spec.path)
    ]
    if spec.query is not None:
        params += _query_params(spec.query)
    codes = spec.codes()
    params += _header_params(spec, codes)
    if spec.auth != "none":
        op["security"] = [{SECURITY_SCHEME: []}]
    elif spec.proof:
        op["security"] = [{SECURITY_SCHEME: []}, {}]  # the old access token is optional
    op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": by_model[spec.body]}},
        }
    op["responses"] = _responses(spec, codes, by_model)
    return op


def _header_params(spec: RouteSpec, codes: tuple[Code, ...]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    if spec.auth != "none" or spec.proof:
        params.append({"$ref": "#/components/parameters/DPoP"})
        floor = Code.SYNC_VERSION_BLOCKED in codes  # sign-out is allowed below the floor
        held = (
            "missing or below the app-version floor is `426 SYNC.VERSION_BLOCKED`"
            if floor
            else "optional here, never held against the app-version floor"
        )
        params.append(
            {
                "name": "X-App-Version",
                "in": "header",
                "required": floor,
                "description": f"The desktop app's version (semver): {held}; malformed is "
                "`400 VALIDATION_FAILED`.",
                "schema": {"type": "string", "pattern": SEMVER_PATTERN},
            }
        )
    if spec.idempotency != "none":
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": spec.idempotency == "required",
                "description": "Makes a retry safe: the same key (per tenant and device) is the "
                "same command, applied once, and remembered 24 h. A repeat of the same request "
                "gets the first final answer with `Idempotent-Replayed: true`; the key with a "
                "different request is `422 IDEMPOTENCY_KEY_REUSED`; while the first request "
                "runs, `409 IDEMPOTENCY_IN_FLIGHT` (retry after `Retry-After`).",
                "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
            }
        )
    if spec.mfa:
        params.append(
            {
                "name": "X-MFA-Attestation",
                "in": "header",
                "required": True,
                "description": "A step-up attestation from iam-service for this action; good "
                "for one action, once (missing: `401 MFA_REQUIRED`).",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ATTESTATION},
            }
        )
    params.append({"$ref": "#/components/parameters/XRequestId"})
    return params


def _responses(
    spec: RouteSpec, codes: tuple[Code, ...], by_model: dict[Any, Any]
) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK", "headers": _request_id()}
    if spec.response is not None:
        ok["content"] = {spec.content_type: {"schema": by_model[spec.response]}}
    elif spec.content_type.startswith("text/"):
        ok["content"] = {spec.content_type: {"schema": {"type": "string"}}}
    if spec.content_type == EVENT_STREAM:  # what the stream's frames hold (edge/sse/events.py)
        ok["content"][EVENT_STREAM]["x-sse-events"] = {"$ref": REF.format(name=SSE_EVENT)}
    if spec.ndjson is not None:
        ok.setdefault("content", {})[NDJSON] = {"schema": _stream_schema(spec.ndjson, by_model)}
    responses: dict[str, Any] = {"200": ok}
    own = {str(status) for status in spec.also}  # answered with the route's model as well
    for status, description in spec.also.items():
        responses[str(status)] = {
            "description": description,
            "headers": _request_id(),
            "content": {spec.content_type: {"schema": by_model[spec.response]}},
        }
    replays = spec.idempotency != "none"  # a final answer may be a replay (edge/idempotency.py)
    if replays:
        for entry in responses.values():
            entry["headers"].update(_replayed())
    error_schema = by_model[ErrorEnvelope]
    for code in sorted(codes, key=lambda c: c.status):
        key = str(code.status)
        entry = responses.get(key)
        if entry is None:
            entry = responses[key] = {
                "description": "",
                "headers": _request_id(),
                "content": {"application/json": {"schema": error_schema}},
            }
        elif key in own:
            own.discard(key)
            media = entry["content"].setdefault("application/json", {})
            media["schema"] = {"anyOf": [media["schema"], error_schema]} if media else error_schema
        entry["description"] = ", ".join(filter(None, [entry["description"], code.wire]))
        entry["headers"].update(_error_headers(code))
        if replays and stores_error(code):
            entry["headers"].update(_replayed())
    return responses


def _replayed() -> dict[str, Any]:
    return {"Idempotent-Replayed": {"$ref": "#/components/headers/IdempotentReplayed"}}


def _request_id() -> dict[str, Any]:
    return {"X-Request-Id": {"$ref": "#/components/headers/XRequestId"}}


def _error_headers(code: Code) -> dict[str, Any]:
    if code is Code.RATE_LIMITED:
        return {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    if code is Code.IDEMPOTENCY_IN_FLIGHT:
        return {"Retry-After": {"$ref": "#/components/headers/RetryAfterInFlight"}}
    if code in (Code.SESSION_REQUIRED, Code.DPOP_INVALID, Code.SESSION_EXPIRED):
        return {"WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"}}
    if code is Code.METHOD_NOT_ALLOWED:
        return {"Allow": {"$ref": "#/components/headers/Allow"}}
    return {}


def _stream_schema(ndjson: Ndjson, by_model: dict[Any, Any]) -> dict[str, Any]:
    """The stream read as an array of its lines (how OpenAPI 3.2 describes a sequential media
    type's ``schema``). The order (first line first, last line last) is in the description:
    ``prefixItems`` would say it, but schemathesis 4 cannot validate against it."""
    first, lines, last = (by_model[m] for m in (ndjson.first, ndjson.lines, ndjson.last))
    names = (ndjson.first.__name__, ndjson.lines.__name__, ndjson.last.__name__)
    return {
        "type": "array",
        "description": "Newline-delimited JSON, one object per line, each flushed as soon as it "
        f"is ready, read as an array of its lines: one `{names[0]}` first, then any number of "
        f"`{names[1]}`, one `{names[2]}` last.",
        "items": {"anyOf": [first, lines, last]},
        "contains": last,
        "minContains": 1,
        "maxContains": 1,
        "minItems": 2,
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _query_params(model: type[msgspec.Struct]) -> list[dict[str, Any]]:
    (schema,), components = msgspec.json.schema_components([model], ref_template=REF)
    resolved = components[model.__name__] if "$ref" in schema else schema
    required = set(resolved.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in resolved.get("properties", {}).items()
    ]
