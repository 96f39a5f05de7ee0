"""The OpenAPI 3.1 document, generated from the msgspec Structs of the route table."""

from __future__ import annotations

from typing import Any

import msgspec

from edge.api import Api, RouteSpec
from edge.auth.principal import auth_codes
from edge.errors import Code
from schemas.errors import ErrorEnvelope

REF = "#/components/schemas/{name}"

DESCRIPTION = """Backend-for-Frontend of the hotel backoffice desktop.

Every error has the body `{"error": {"code", "message", "requestId", "retryable"}}`. Besides the
codes pinned by the API contract, this service answers `METHOD_NOT_ALLOWED` (405, with `Allow`),
`PAYLOAD_TOO_LARGE` (413, body over `BFF_MAX_BODY_BYTES`), `UNSUPPORTED_MEDIA_TYPE` (415),
`OVERLOADED` (503, retryable: an actor mailbox stayed full past its deadline),
`SERVICE_UNAVAILABLE` (503, retryable: a dependency such as Postgres is down) and `INTERNAL` (500,
never with a stack trace). Every response carries `X-Request-Id`: the client's value when it is
1 to 128 characters of `[A-Za-z0-9._:-]`, otherwise a new one.
"""


def build_openapi(api: Api, *, version: str) -> dict[str, Any]:
    models: set[Any] = {ErrorEnvelope}
    for spec, _ in api.routes:
        for model in (spec.query, spec.body, spec.response):
            if model is not None:
                models.add(model)
    ordered = sorted(models, key=repr)
    schemas, components = msgspec.json.schema_components(ordered, ref_template=REF)
    by_model = dict(zip(ordered, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for spec, view in api.routes:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec, view, by_model)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bff-backoffice-service", "version": version, "description": DESCRIPTION},
        "paths": paths,
        "components": {"schemas": components},
    }


def _operation(spec: RouteSpec, view: Any, by_model: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": spec.summary,
        "tags": [spec.tag],
        "operationId": view.__name__,
        "responses": {},
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_params(spec.path)
    ]
    if spec.query is not None:
        params += _query_params(spec.query)
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": by_model[spec.body]}},
        }
    ok: dict[str, Any] = {"description": "OK"}
    if spec.response is not None:
        ok["content"] = {spec.content_type: {"schema": by_model[spec.response]}}
    op["responses"]["200"] = ok
    error_schema = by_model[ErrorEnvelope]
    codes = dict.fromkeys((*auth_codes(spec.auth), *spec.errors, Code.INTERNAL))
    for code in codes:
        entry = op["responses"].setdefault(
            str(code.status),
            {"description": "", "content": {"application/json": {"schema": error_schema}}},
        )
        entry["description"] = " | ".join(filter(None, [entry["description"], code.wire]))
    return op


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
