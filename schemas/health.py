"""Health and readiness payloads."""

from __future__ import annotations

import msgspec


class Liveness(msgspec.Struct, kw_only=True):
    status: str = "ok"


class DependencyCheck(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    detail: str = ""


class Readiness(msgspec.Struct, kw_only=True):
    status: str
    down: list[str]
    checks: dict[str, DependencyCheck]
