"""The fleet benchmark in miniature (issue #16): one tenant of three desktops for five seconds
against a real BFF and simulator, every activity of the capacity model exercised and every
route in the report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ops.bench.fleet import FleetConfig, FleetTarget, run_fleet
from ops.bench.fleet_model import ROUTES
from ops.bench.fleet_report import deliveries, plot, route_rows, run_markdown, streams_held
from ops.sim.outbox import applied
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.sim import SimHandle


def test_a_tiny_fleet_runs_every_activity_and_reports_every_route(
    start_sim: Callable[..., SimHandle],
    start_bff: ServiceFactory,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    sim = start_sim(
        SIM_FLEET_TENANTS="1",
        SIM_BUS="auto",  # alerts and suggestions reach the BFF's bus, then the streams
        BFF_BUS="embedded",
        BFF_REDIS_PREFIX=redis_prefix,
        BFF_REDIS_SESSION_URL=REDIS_URL,
        PUBSUB_EMULATOR_HOST="",
    )
    bff = start_bff(SIM_URL=sim.url)
    config = FleetConfig(tenants=1, devices_per_tenant=3, seconds=5, loaders=1, live_seconds=1)
    target = FleetTarget(bff.url, sim.url, bff.popen.pid, sim.proc.popen.pid)

    run = run_fleet(config, target, tmp_path)

    assert run.devices == 3 and not run.signin_failed
    rows = {row.route: row for row in route_rows(run)}
    assert list(rows) == list(ROUTES)
    for route, row in rows.items():
        assert row.requests >= 1, f"{route} never ran"
        assert row.errors == 0, f"{route}: {row.errors} errors"
    assert run.live["requests"] > 0
    # every desk held its stream; every alert and suggestion reached all three
    assert streams_held(run) == 3
    for delivery in deliveries(run):
        assert delivery.events >= 1
        assert delivery.arrived == delivery.expected == 3 * delivery.events
    # the replayed queues were answered by the idempotency layer: no key applied twice
    queued = [c for c in sim.calls() if str(c["idempotencyKey"]).startswith("outbox-")]
    applications = Counter(c["idempotencyKey"] for c in queued if applied(c))
    assert applications and max(applications.values()) == 1
    assert run.resources.at and max(run.resources.bff_rss_mib) > 0
    text = run_markdown(run, "fleet.png")
    for route in ROUTES:
        assert f"| {route} |" in text
    plot(run, tmp_path / "fleet.png")
    assert (tmp_path / "fleet.png").stat().st_size > 10_000
