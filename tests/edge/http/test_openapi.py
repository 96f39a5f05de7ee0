"""The OpenAPI document is generated from the Structs, is valid OpenAPI 3.1, has no dangling
references and says what a client needs: security, header parameters, every status and media
type. (That the service does what it says: test_openapi_conformance.py.)"""

import json
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis

from edge.api import Api
from edge.app import PUBLIC_TABLES, VERSION
from edge.dashboard.docs import document_widgets
from edge.openapi import build_openapi
from edge.routes import testing
from tests.support.fixtures import ServiceFactory

BASE = "/bff/backoffice/v1"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The document as the app builds it, with the test routes (the MFA-guarded one is one)."""
    routes = Api()
    for table in (*PUBLIC_TABLES, testing.api):
        routes.routes.extend(table.routes)
    spec = build_openapi(routes, version=VERSION)
    document_widgets(spec)
    built: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(spec))
    return built


def _params(operation: dict[str, Any], document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An operation's parameters by name, ``$ref``s resolved."""
    found = {}
    for param in operation["parameters"]:
        if "$ref" in param:
            param = document["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]]
        found[param["name"]] = param
    return found


def test_the_service_serves_the_document(
    start_bff: ServiceFactory, document: dict[str, Any]
) -> None:
    bff = start_bff()
    assert httpx.get(f"{bff.url}/openapi.json").json() == document


def test_openapi_document(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()  # against the OpenAPI 3.1 schema
    assert "/health/ready" in document["paths"]
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/"), ref
        kind, name = ref.removeprefix("#/components/").split("/")
        assert name in document["components"][kind], ref
    assert "ErrorEnvelope" in schemas
    assert "PAYLOAD_TOO_LARGE" in document["info"]["description"]
    widgets = document["x-widgets"]
    assert len(widgets) >= 24
    assert len({u for w in widgets.values() for u in w["upstreams"]}) >= 8
    data = schemas["WidgetLine"]["properties"]["data"]["anyOf"]
    assert {w["data"]["$ref"] for w in widgets.values()} <= {r.get("$ref") for r in data}
    json.dumps(document)


def test_authenticated_operations_declare_dpop_and_their_headers(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["DPoP"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "DPoP")
    heartbeat = document["paths"][f"{BASE}/devices/{{deviceId}}/heartbeat"]["post"]
    assert heartbeat["security"] == [{"DPoP": []}]
    params = _params(heartbeat, document)
    assert params["DPoP"]["in"] == "header" and params["DPoP"]["required"]
    assert params["X-App-Version"]["required"] and "426" in params["X-App-Version"]["description"]
    assert not params["Idempotency-Key"]["required"]  # accepted, not required
    assert "X-MFA-Attestation" not in params
    assert params["deviceId"]["in"] == "path"
    sensitive = _params(document["paths"][f"{BASE}/_test/sensitive"]["post"], document)
    assert sensitive["X-MFA-Attestation"]["required"]
    # The refresh takes a proof of its own; the old access token is optional.
    refresh = document["paths"][f"{BASE}/auth/refresh"]["post"]
    assert refresh["security"] == [{"DPoP": []}, {}]
    assert {"DPoP", "X-App-Version"} <= set(_params(refresh, document))
    # Unauthenticated operations declare no security and no DPoP header.
    live = document["paths"]["/health/live"]["get"]
    assert "security" not in live and "DPoP" not in _params(live, document)


def test_every_status_an_operation_can_answer_is_declared(document: dict[str, Any]) -> None:
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    heartbeat = document["paths"][f"{BASE}/devices/{{deviceId}}/heartbeat"]["post"]["responses"]
    for status in ("400", "401", "403", "404", "405", "413", "415", "426", "429", "500", "503"):
        assert heartbeat[status]["content"]["application/json"]["schema"] == envelope, status
    assert "VALIDATION_FAILED" in heartbeat["400"]["description"]
    assert "SYNC.VERSION_BLOCKED" in heartbeat["426"]["description"]
    assert "Retry-After" in heartbeat["429"]["headers"]
    assert "WWW-Authenticate" in heartbeat["401"]["headers"]
    assert "Allow" in heartbeat["405"]["headers"]
    ready = document["paths"]["/health/ready"]["get"]["responses"]
    readiness = {"$ref": "#/components/schemas/Readiness"}
    assert ready["200"]["content"]["application/json"]["schema"] == readiness
    assert ready["503"]["content"]["application/json"]["schema"] == readiness
    assert "500" in ready
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]
    assert metrics["content"]["text/plain"]["schema"] == {"type": "string"}
    for path in document["paths"].values():
        for operation in path.values():
            assert "500" in operation["responses"]
            assert "X-Request-Id" in operation["responses"]["200"]["headers"]


def test_the_dashboard_declares_both_of_its_forms(document: dict[str, Any]) -> None:
    ok = document["paths"][f"{BASE}/dashboard"]["get"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/DashboardDocument"}
    stream = ok["application/x-ndjson"]["schema"]
    assert stream["type"] == "array"
    lines = {ref["$ref"].rsplit("/", 1)[1] for ref in stream["items"]["anyOf"]}
    assert lines == {"BeginLine", "WidgetLine", "EndLine"}
    assert stream["contains"] == {"$ref": "#/components/schemas/EndLine"}
    assert stream["maxContains"] == 1
