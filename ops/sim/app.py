"""Assemble the simulator: shared state, every simulated service, control routes."""

from __future__ import annotations

from ops.sim import control, metadata
from ops.sim.context import Sim
from ops.sim.http import Router
from ops.sim.pipeline import SimApp
from ops.sim.services import register_all


def build_app(sim: Sim) -> SimApp:
    router = Router()
    register_all(router, sim)
    metadata.register(router, sim)
    control.register(router, sim)
    return SimApp(sim, router)
