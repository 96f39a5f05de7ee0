"""The OpenAPI document is generated from the Structs and has no dangling references."""

import json
from typing import Any

import httpx

from tests.support.fixtures import ServiceFactory


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_openapi_document(start_bff: ServiceFactory) -> None:
    bff = start_bff()
    document = httpx.get(f"{bff.url}/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert "/health/ready" in document["paths"]
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref
    assert "ErrorEnvelope" in schemas
    assert "PAYLOAD_TOO_LARGE" in document["info"]["description"]
    widgets = document["x-widgets"]
    assert len(widgets) >= 24
    assert len({u for w in widgets.values() for u in w["upstreams"]}) >= 8
    data = schemas["WidgetLine"]["properties"]["data"]["anyOf"]
    assert {w["data"]["$ref"] for w in widgets.values()} <= {r.get("$ref") for r in data}
    json.dumps(document)
