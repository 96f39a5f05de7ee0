"""tenant-service: tenants (status, app-version floor), operator profiles and preferences."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from schemas.identifiers import Role
from schemas.upstream.common import Wire

TenantStatus = Literal["active", "suspended"]
Density = Literal["compact", "comfortable", "spacious"]


class Theme(Wire):
    id: str
    version: int


class Tenant(Wire):
    id: str
    name: str
    status: TenantStatus
    app_version_floor: str
    locale: str
    property_ids: list[str]
    theme: Theme


class Operator(Wire):
    id: str
    tenant_id: str
    username: str
    display_name: str
    role: Role
    property_ids: list[str]
    status: Literal["active", "disabled"]


class OperatorPreferences(Wire):
    operator_id: str
    layout: str
    density: Density
    columns: dict[str, list[str]]
    shortcuts: dict[str, str]
    version: int
    updated_at: datetime


class PreferencesUpdate(Wire):
    """``PUT`` body; ``expectedVersion`` turns the write into a compare-and-set (409 when stale)."""

    layout: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    density: Density
    columns: dict[str, list[str]] = msgspec.field(default_factory=dict)
    shortcuts: dict[str, str] = msgspec.field(default_factory=dict)
    expected_version: int | None = None
