"""Operator preferences and the keyboard-shortcut map (API contract §9, SERVICE_OVERVIEW §3):
the routes' bodies and answers, the Postgres mirror's row, and the theme event that makes the
rendered shortcut help stale.

tenant-service owns ``OperatorPreferences`` (``schemas.upstream.tenant``); the BFF mirrors them
in Postgres and caches them in Redis. ``shortcuts`` are the operator's *overrides* of the static
defaults (``edge/shortcuts.py``), chord → action, as tenant-service stores them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from schemas.upstream.tenant import Density

THEME_PUBLISHED = "melmastoon.theme.published.v1"

MAX_VIEWS = 32
MAX_COLUMNS = 64
MAX_SHORTCUTS = 64

# A layout, view or column name: a lower-case slug (these end up in the desktop's UI state).
Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")]
# Loosely bounded here; ``edge/shortcuts.py`` parses chords and knows the actions, and names the
# offending chord (``shortcuts.<chord>``) when one is malformed, unknown, reserved or repeated.
Chord = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ActionName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Columns = Annotated[
    dict[Slug, Annotated[list[Slug], msgspec.Meta(max_length=MAX_COLUMNS)]],
    msgspec.Meta(max_length=MAX_VIEWS),
]
Shortcuts = Annotated[dict[Chord, ActionName], msgspec.Meta(max_length=MAX_SHORTCUTS)]


class _Wire(msgspec.Struct, kw_only=True, rename="camel"):
    pass


class PreferencesUpdate(_Wire, forbid_unknown_fields=True):
    """Body of ``PUT /preferences``: each field given replaces that field (``columns`` and
    ``shortcuts`` as a whole: ``shortcuts: {}`` drops every override); a field left out (or
    ``null``) keeps its value. At least one field is required."""

    layout: Slug | None = None
    density: Density | None = None
    columns: Columns | None = None
    shortcuts: Shortcuts | None = None


class Preferences(_Wire):
    """The operator's preferences as tenant-service holds them (``version`` is its version).

    ``stale``: tenant-service could not be asked and the BFF's mirror last heard from it at
    ``syncedAt``, longer ago than the preferences cache keeps an entry."""

    operator_id: str
    layout: str
    density: str
    columns: dict[str, list[str]]
    shortcuts: dict[str, str]
    version: int
    updated_at: datetime
    synced_at: datetime
    stale: bool = False


class MirroredPreferences(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One operator's preferences as the BFF keeps them (the Postgres mirror, the Redis cache):
    tenant-service's copy at ``version``, confirmed by tenant-service at ``synced_at``."""

    tenant: str
    operator_id: str
    layout: str
    density: str
    columns: dict[str, list[str]]
    shortcuts: dict[str, str]
    version: int
    updated_at: datetime
    synced_at: datetime


# --- the keyboard-shortcut map ------------------------------------------------------------------

BindingSource = Literal["default", "override"]


class ShortcutBinding(_Wire):
    """One action of the desktop and the chord that triggers it (``null``: unbound)."""

    action: str
    label: str
    group: str
    chord: str | None
    source: BindingSource


class IgnoredOverride(_Wire):
    """A stored override the map could not honour (tenant-service may hold overrides written
    by another client, or naming an action this BFF no longer knows): the action keeps its
    default chord."""

    chord: str
    action: str
    reason: str


class KeyboardShortcutMap(_Wire):
    """The operator's keyboard shortcuts, rendered by the BFF: the static defaults merged with
    the operator's overrides. ``preferencesVersion`` is the version of the preferences it was
    rendered from (``null`` when they could not be read: ``degraded``, defaults only)."""

    operator_id: str
    bindings: list[ShortcutBinding]
    rendered_at: datetime
    preferences_version: int | None = None
    ignored: list[IgnoredOverride] = msgspec.field(default_factory=list)
    stale: bool = False
    degraded: bool = False


class RenderedShortcuts(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered map in the cache tier, with what it was rendered from: valid while the
    tenant's help generation and the operator's preferences version are still these."""

    generation: int
    map: KeyboardShortcutMap


# --- consumed ----------------------------------------------------------------------------------


class ThemePublished(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``melmastoon.theme.published.v1``: a tenant published a new theme; any shortcut help
    rendered for its operators is stale (SERVICE_OVERVIEW §6). Fields beyond these are ignored."""

    tenant_id: str
    theme_id: str | None = None
    version: int | None = None
