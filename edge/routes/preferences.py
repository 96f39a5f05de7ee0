"""The calling operator's preferences and keyboard shortcuts (API contract §9): ``GET`` and
``PUT /preferences`` (write-through to tenant-service, ``edge/operator_preferences.py``) and
``GET /shortcuts`` (the rendered ``KeyboardShortcutMap``, ``edge/shortcuts.py``).

The operator and tenant are the token's: no route names another operator, so one never reads
or writes someone else's preferences. A ``PUT`` is checked whole before anything is asked of
anyone (field types and bounds by msgspec, chords and actions by ``edge.shortcuts``, a column
listed twice), and only then claims its ``Idempotency-Key`` (accepted, not required).
"""

from __future__ import annotations

import msgspec
from quart import Response

from edge.api import Api, decode_body, request_id
from edge.assembly import Services
from edge.auth.principal import Principal
from edge.errors import ApiError, Code
from edge.idempotency import idempotent
from edge.shortcuts import ACTIONS, BadShortcut, check_overrides
from schemas.preferences import KeyboardShortcutMap, Preferences, PreferencesUpdate

api = Api()
BASE = "/bff/backoffice/v1"
JSON = "application/json; charset=utf-8"
_encoder = msgspec.json.Encoder()
_KNOWN = ", ".join(a.name for a in ACTIONS)


def _json(body: msgspec.Struct) -> Response:
    return Response(_encoder.encode(body), content_type=JSON, headers={"Cache-Control": "no-store"})


@api.route(
    f"{BASE}/preferences",
    summary="The calling operator's preferences (tenant-service's). Served from the BFF's "
    "cache or mirror when fresh, else read from tenant-service; while tenant-service is down, "
    "the mirror's copy with `stale: true` when tenant-service last confirmed it longer ago than "
    "the cache keeps an entry",
    tag="preferences",
    response=Preferences,
    auth="read",
    errors=(Code.UPSTREAM_UNAVAILABLE, Code.SCHEMA_DRIFT, Code.NOT_FOUND),
)
async def get_preferences(services: Services, *, principal: Principal) -> Response:
    return _json(await services.preferences.read(principal.tenant, principal.operator_id))


@api.route(
    f"{BASE}/preferences",
    "PUT",
    summary="Change the calling operator's preferences: each field given replaces that field "
    "(`shortcuts` is the whole set of overrides, chord → action; `{}` restores the defaults). "
    "Written to tenant-service first; the BFF's mirror and cache only after it accepted. "
    "tenant-service unavailable → 503 and nothing changed. Shortcut actions: " + _KNOWN,
    tag="preferences",
    body=PreferencesUpdate,
    response=Preferences,
    auth="mutation",
    idempotency="accepted",
    errors=(
        Code.SERVICE_UNAVAILABLE,
        Code.CACHE_UNAVAILABLE,
        Code.CONFLICT,
        Code.NOT_FOUND,
        Code.SCHEMA_DRIFT,
        Code.IDEMPOTENCY_KEY_REUSED,
        Code.IDEMPOTENCY_IN_FLIGHT,
    ),
)
async def put_preferences(services: Services, *, principal: Principal) -> Response:
    change = checked(await decode_body(PreferencesUpdate))

    async def apply(key: str | None) -> Response:
        updated = await services.preferences.update(principal, change, key, request_id=request_id())
        return _json(updated)

    return await idempotent(services, principal, apply, required=False)


@api.route(
    f"{BASE}/shortcuts",
    summary="The calling operator's keyboard shortcuts, rendered: every action with its chord "
    "(the defaults, with the operator's overrides applied). Overrides stored elsewhere that "
    "cannot be honoured are listed in `ignored`; `degraded: true` means the preferences could "
    "not be read (defaults only)",
    tag="preferences",
    response=KeyboardShortcutMap,
    auth="read",
)
async def get_shortcuts(services: Services, *, principal: Principal) -> Response:
    return _json(await services.preferences.shortcut_map(principal.tenant, principal.operator_id))


def checked(change: PreferencesUpdate) -> PreferencesUpdate:
    """``change`` with canonical chords, or VALIDATION_FAILED naming the field."""
    fields = (change.layout, change.density, change.columns, change.shortcuts)
    if all(value is None for value in fields):
        raise ApiError(
            Code.VALIDATION_FAILED, "body: give at least one of layout, density, columns, shortcuts"
        )
    for view, columns in (change.columns or {}).items():
        if len(set(columns)) != len(columns):
            twice = next(c for c in columns if columns.count(c) > 1)
            raise ApiError(Code.VALIDATION_FAILED, f"columns.{view}: {twice} listed twice")
    if change.shortcuts is None:
        return change
    try:
        shortcuts = check_overrides(change.shortcuts)
    except BadShortcut as exc:
        raise ApiError(Code.VALIDATION_FAILED, str(exc)) from None
    return msgspec.structs.replace(change, shortcuts=shortcuts)
