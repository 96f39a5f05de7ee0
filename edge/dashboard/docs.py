"""The dashboard's widget catalogue in the OpenAPI document: each widget's ``data`` schema,
upstream, roles and deadline (the stream itself carries ``data`` as plain JSON)."""

from __future__ import annotations

from typing import Any

import msgspec

from edge.dashboard.catalogue import CATALOGUE
from edge.openapi import REF


def document_widgets(document: dict[str, Any]) -> None:
    """Add the widget data schemas to ``document`` and describe ``WidgetLine.data`` with them."""
    types = sorted({w.data_type for w in CATALOGUE}, key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    schemas: dict[str, Any] = document["components"]["schemas"]
    schemas.update(components)
    ref_of = dict(zip(types, refs, strict=True))
    line = schemas.get("WidgetLine")
    if line is not None:
        line["properties"]["data"] = {
            "anyOf": [*refs, {"type": "null"}],
            "description": "The widget's data when `status` is `ok`, null when `unavailable`;"
            " `x-widgets` names the schema of each widget id.",
        }
    document["x-widgets"] = {
        w.id: {
            "data": ref_of[w.data_type],
            "upstreams": sorted({s.upstream for s in w.sources}),
            "roles": sorted(w.roles),
            "deadlineMs": round(w.deadline_s * 1000),
        }
        for w in CATALOGUE
    }
