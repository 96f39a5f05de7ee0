"""The simulator's shared state and the helpers every simulated service uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ops.sim.calls import CallLog
from ops.sim.config import SimConfig
from ops.sim.events import EventSink
from ops.sim.faults import FaultTable, LatencyModel
from ops.sim.generate import build_world
from ops.sim.http import HttpError, Request
from ops.sim.idempotency import IdempotencyStore
from ops.sim.identity import IamState
from ops.sim.world import PropertyState, World


@dataclass
class Sim:
    config: SimConfig
    world: World
    events: EventSink
    iam: IamState = field(init=False)
    faults: FaultTable = field(init=False)
    latency: LatencyModel = field(init=False)
    calls: CallLog = field(default_factory=CallLog)
    idempotency: IdempotencyStore = field(default_factory=IdempotencyStore)
    id_token_ttl_s: int = 0
    dirty: bool = False  # the world changed since it was generated

    def __post_init__(self) -> None:
        self.iam = IamState(self.config)
        self.faults = FaultTable(self.config.seed)
        self.latency = LatencyModel(self.config.latency_scale, self.config.seed)
        self.id_token_ttl_s = self.config.id_token_ttl_s

    @classmethod
    def create(cls, config: SimConfig, events: EventSink) -> Sim:
        return cls(config, build_world(config.seed, config.fleet_tenants), events)

    def reset(self) -> None:
        """Back to the freshly generated demo: data, faults, calls, events, iam sessions.

        The world is rebuilt only when something changed it (or a local date moved on), so
        resetting between tests is cheap.
        """
        stale = any(p.anchor != p.today() for p in self.world.properties.values())
        if self.dirty or stale:
            self.world = build_world(self.config.seed, self.config.fleet_tenants)
            self.dirty = False
        self.iam.reset()
        self.faults.clear()
        self.calls.clear()
        self.events.clear()
        self.idempotency.clear()
        self.id_token_ttl_s = self.config.id_token_ttl_s

    def emit(self, subject: str, data: dict[str, Any]) -> None:
        self.events.emit(subject, data)

    def property(self, request: Request) -> PropertyState:
        """The property named by the path, which must belong to the path's tenant."""
        tenant_id = request.params["tenantId"]
        ps = self.world.properties.get(request.params["propertyId"])
        if ps is None or ps.tenant_id != tenant_id:
            raise HttpError(404, "NOT_FOUND", "no such property for this tenant")
        return ps


def date_param(request: Request, ps: PropertyState, name: str = "date") -> date:
    """``?date=YYYY-MM-DD``, default today in the property's time zone."""
    raw = request.query.get(name)
    if not raw:
        return ps.today()
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise HttpError(400, "VALIDATION_FAILED", f"{name}: expected YYYY-MM-DD") from None


def not_found(what: str) -> HttpError:
    return HttpError(404, "NOT_FOUND", f"no such {what}")


def conflict(message: str, code: str = "INVALID_STATE") -> HttpError:
    return HttpError(409, code, message)
