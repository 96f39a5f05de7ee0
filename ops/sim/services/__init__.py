"""The 14 simulated upstream services, one module each, all under ``SIM_URL/<name>/v1/…``."""

from __future__ import annotations

from ops.sim.context import Sim
from ops.sim.http import Router
from ops.sim.services import (
    ai,
    analytics,
    billing,
    housekeeping,
    iam,
    inventory,
    lock,
    maintenance,
    notification,
    pricing,
    property,
    reservation,
    sync,
    tenant,
)

MODULES = (
    iam,
    tenant,
    property,
    reservation,
    inventory,
    pricing,
    housekeeping,
    maintenance,
    billing,
    lock,
    ai,
    notification,
    sync,
    analytics,
)


def register_all(router: Router, sim: Sim) -> None:
    for module in MODULES:
        module.register(router, sim)
