"""Health and readiness payloads."""

from __future__ import annotations

import msgspec


class Liveness(msgspec.Struct, kw_only=True):
    """``worker``: which of the instance's worker processes answered (``BFF_WORKERS``; 0 when
    the instance is one process)."""

    status: str = "ok"
    worker: int = 0


class DependencyCheck(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One readiness check. ``detail`` is served on the public ``/health/ready``: a fixed text,
    never an exception's message or an identifier (those go to the log)."""

    ok: bool
    detail: str = ""


class Readiness(msgspec.Struct, kw_only=True):
    status: str
    down: list[str]
    checks: dict[str, DependencyCheck]
