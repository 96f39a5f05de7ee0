"""The stream's events as OpenAPI schemas (API contract §6), for generated clients.

OpenAPI 3.1 cannot type the events of a ``text/event-stream`` response, so the document carries
them as components: one per event name (``SseEvent_<name>``: the frame's ``event``, ``id`` and
the JSON of its ``data``), and their union ``SseEvent``, which the stream's media type names in
``x-sse-events``. The desktop's TypeScript types are generated from them
(clients/desktop-types).

Each ``data`` schema comes from the Struct that produces that data, so the two cannot drift:
the domain events' Structs without ``tenantId`` (actors/property.py ``_item`` drops it: the
device knows its tenant), ``DashboardHint`` and ``SessionData``. The one event built from a
dict, ``ai.suggestion.invalidated`` (actors/property.py ``_invalidated``), is described by
:class:`SuggestionInvalidatedData` here.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from schemas.dashboard import DashboardHint
from schemas.inbox import AlertRaised, AlertResolved, SuggestionCreated
from schemas.sse import EventName, SessionData

UNION = "SseEvent"
DROPPED = ("tenantId",)  # fields of a domain event the stream does not repeat


class SuggestionInvalidatedData(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``data`` of ``ai.suggestion.invalidated``: the suggestion is gone from the inbox."""

    suggestion_id: str
    property_id: str
    reason: str  # the event's reason, or ``invalidated`` when it gave none


# Each event name, the Struct its ``data`` is made from, and the name of its component.
PAYLOADS: tuple[tuple[EventName, type[msgspec.Struct], str], ...] = (
    ("ai.suggestion", SuggestionCreated, "AiSuggestion"),
    ("ai.suggestion.invalidated", SuggestionInvalidatedData, "AiSuggestionInvalidated"),
    ("alert", AlertRaised, "Alert"),
    ("alert.resolved", AlertResolved, "AlertResolved"),
    ("dashboard.hint", DashboardHint, "DashboardHint"),
    ("session", SessionData, "Session"),
)


def event_component(label: str) -> str:
    return f"SseEvent_{label}"


def sse_components(ref_template: str) -> dict[str, Any]:
    """The components: ``SseEvent_<label>Data`` and ``SseEvent_<label>`` per event, ``SseEvent``."""
    structs = [struct for _, struct, _ in PAYLOADS]
    _, generated = msgspec.json.schema_components(structs, ref_template=ref_template)
    own = {struct.__name__ for struct in structs}
    components = {name: schema for name, schema in generated.items() if name not in own}
    for event, struct, label in PAYLOADS:
        data_name = event_component(f"{label}Data")
        schema = _data_schema(generated[struct.__name__], data_name)
        if struct.__struct_config__.omit_defaults:
            _optional_when_default(schema)
        components[data_name] = schema
        components[event_component(label)] = _event_schema(event, label, ref_template)
    components[UNION] = _union(ref_template)
    return components


def _data_schema(source: dict[str, Any], name: str) -> dict[str, Any]:
    schema = copy.deepcopy(source)
    schema["title"] = name
    for field in DROPPED:
        schema.get("properties", {}).pop(field, None)
        if field in schema.get("required", []):
            schema["required"].remove(field)
    return schema


def _optional_when_default(schema: dict[str, Any]) -> None:
    """The Struct leaves a field at its default out of the frame: drop ``default`` so that
    generators make it optional (openapi-typescript types a field with a default as always
    present, as a server fills it in)."""
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        if name not in required:
            prop.pop("default", None)


def _event_schema(event: str, label: str, ref_template: str) -> dict[str, Any]:
    data_ref = ref_template.format(name=event_component(f"{label}Data"))
    return {
        "title": event_component(label),
        "description": f"An `event: {event}` frame of the stream, its `data:` parsed as JSON.",
        "type": "object",
        "properties": {
            "event": {"type": "string", "const": event},
            "id": {
                "type": "string",
                "description": "The frame's `id:` (`<ms>-<seq>`, increasing per device; what "
                "`Last-Event-ID` resumes from). Absent on a `session` event the server makes up "
                "(reconnect, replaced, a force-logout it decided itself).",
            },
            "data": {"$ref": data_ref},
        },
        "required": ["event", "data"],
    }


def _union(ref_template: str) -> dict[str, Any]:
    refs = {event: ref_template.format(name=event_component(label)) for event, _, label in PAYLOADS}
    return {
        "title": UNION,
        "description": "One event of `GET /sse/stream`, told apart by `event`. Keep-alive "
        "comment lines and the `retry:` field are not events.",
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "event", "mapping": refs},
    }
