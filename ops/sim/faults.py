"""Fault injection (API contract §7 ``/_sim/faults``) and the default, production-like latencies.

Modes: ``error`` answers 5xx, ``latency`` adds ``latencyMs`` before a normal answer, ``hang``
never answers (the request ends when the client gives up), ``drift`` answers 200 with a payload
that violates the upstream's schema. Each fires with probability ``rate``.
"""

from __future__ import annotations

import math
import random
from typing import Annotated, Any, Literal

import msgspec

from schemas.upstream import UPSTREAM_NAMES

FaultMode = Literal["error", "latency", "hang", "drift"]
# Besides the 14 upstreams, the metadata-server emulator can be faulted too.
FAULTABLE = (*UPSTREAM_NAMES, "metadata")

# Median latency (ms) per service: tens of ms, a lognormal tail, capped below the client timeouts.
DEFAULT_MEDIAN_MS: dict[str, float] = {
    "iam": 12,
    "tenant": 15,
    "property": 18,
    "reservation": 35,
    "inventory": 25,
    "pricing": 25,
    "housekeeping": 30,
    "maintenance": 30,
    "billing": 28,
    "lock": 140,
    "ai": 60,
    "notification": 15,
    "sync": 40,
    "analytics": 45,
    "metadata": 2,
}
SIGMA = 0.45
CAP_FACTOR = 4.0


class FaultSpec(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    service: str
    mode: FaultMode
    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] = 0
    rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    status: Annotated[int, msgspec.Meta(ge=500, le=599)] = 503


class FaultTable:
    """At most one fault per service; a new one for the same service replaces the old."""

    def __init__(self, seed: int) -> None:
        self._faults: dict[str, FaultSpec] = {}
        self._rng = random.Random(seed)

    def set(self, spec: FaultSpec) -> None:
        if spec.service not in FAULTABLE:
            raise ValueError(f"service: unknown upstream {spec.service!r}")
        self._faults[spec.service] = spec

    def clear(self, service: str | None = None) -> None:
        if service is None:
            self._faults.clear()
        else:
            self._faults.pop(service, None)

    def all(self) -> list[FaultSpec]:
        return list(self._faults.values())

    def draw(self, service: str) -> FaultSpec | None:
        """The fault that hits this request, if any."""
        spec = self._faults.get(service)
        if spec is None or spec.rate <= 0:
            return None
        return spec if spec.rate >= 1 or self._rng.random() < spec.rate else None


class LatencyModel:
    """Lognormal per-service latency x ``scale`` (``SIM_LATENCY``; 0 turns it off)."""

    def __init__(self, scale: float, seed: int) -> None:
        self.scale = scale
        self._rng = random.Random(seed ^ 0x5EED)

    def delay_s(self, service: str) -> float:
        if self.scale <= 0:
            return 0.0
        median = DEFAULT_MEDIAN_MS.get(service, 20.0)
        ms = min(self._rng.lognormvariate(math.log(median), SIGMA), median * CAP_FACTOR)
        return ms * self.scale / 1000


def drift(payload: Any) -> Any:
    """A copy of ``payload`` with one field of the wrong type (nested in ``items[0]`` when there
    is a list of items, so drift also shows deep inside a payload)."""
    data = msgspec.to_builtins(payload)
    if not isinstance(data, dict):
        return {"unexpected": data}
    target: dict[str, Any] = data
    items = data.get("items")
    if isinstance(items, list) and items and isinstance(items[0], dict):
        target = items[0]
    for key, value in target.items():
        if value is not None:
            target[key] = _wrong_type(value)
            return data
    target["id"] = 0
    return data


def _wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, int | float):
        return "not-a-number"
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return {"unexpected": "object"}
    return "not-an-object"
