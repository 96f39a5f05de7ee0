"""``./ops/stack up --instances N``: N BFF processes behind a local nginx, one URL for the desktop.

The system test starts the real stack (its own state folder, ports, database and key prefix),
drives it only through the balancer's URL, and tells the instances apart by the header the
balancer adds (``X-Bff-Upstream``) and by each process's own ``/metrics``. The layout tests
check the port plan, the fault proxy's routes and the rendered nginx config without starting
anything but ``nginx -t``.
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops.localstack import balancer, instances
from ops.localstack.procs import StackError
from tests.support.desktop import Desktop
from tests.support.procs import port_open, wait_until
from tests.support.pubsub import Bus
from tests.support.sse import SseReader
from tests.support.stack import Stack, StackFactory, nginx_or_skip

TOPICS = ("melmastoon.iam", "melmastoon.alert")


# --- the layout (no processes) ----------------------------------------------------------------


def test_instances_sit_after_the_balancer_and_admin_ports_move_out_of_their_way() -> None:
    services = {"PORT": "8080", "BFF_ADMIN_PORT": "8081", "SIM_URL": "http://127.0.0.1:8090"}
    layout = instances.plan(services, 3, {"BFF_INSTANCE_ID": "dev"})
    assert [i.port for i in layout.instances] == [8081, 8082, 8083]
    assert [i.admin_ports for i in layout.instances] == [(9080,), (9081,), (9082,)]
    assert [i.instance_id for i in layout.instances] == ["dev-i1", "dev-i2", "dev-i3"]
    assert layout.public_url == layout.lb_url == "http://127.0.0.1:8080"
    # an admin range clear of the BFF ports stays where it was put; workers widen each step
    apart = instances.plan({**services, "BFF_ADMIN_PORT": "9000"}, 2, {"BFF_WORKERS": "2"})
    assert [i.admin_ports for i in apart.instances] == [(9000, 9001), (9002, 9003)]
    with pytest.raises(StackError, match="would serve both"):
        instances.check_ports(instances.plan(services, 10, {}), 8090)


def test_the_fault_proxy_gets_a_route_per_dependency_and_urls_keep_their_parts() -> None:
    env = {
        "BFF_REDIS_CACHE_URL": "redis://127.0.0.1:6379/3",
        "BFF_REDIS_SESSION_URL": "redis://:secret@127.0.0.1:6380/0",
        "BFF_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/bff_x",
        "BFF_BUS": "pubsub",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085",
    }
    routes = {r.name: r for r in instances.dependency_routes(env)}
    assert set(routes) == {"redis-cache", "redis-session", "postgres", "pubsub", "pubsub-publish"}
    assert (routes["redis-session"].target_host, routes["redis-session"].target_port) == (
        "127.0.0.1",
        6380,
    )
    via = instances.proxied(env, list(routes.values()))
    assert via["BFF_REDIS_CACHE_URL"] == f"redis://127.0.0.1:{routes['redis-cache'].listen_port}/3"
    port = routes["redis-session"].listen_port
    assert via["BFF_REDIS_SESSION_URL"] == f"redis://:secret@127.0.0.1:{port}/0"
    assert via["BFF_DATABASE_URL"].endswith(f":{routes['postgres'].listen_port}/bff_x")
    assert via["PUBSUB_EMULATOR_HOST"] == f"127.0.0.1:{routes['pubsub'].listen_port}"
    assert via["BFF_PUBSUB_PUBLISH_HOST"] == f"127.0.0.1:{routes['pubsub-publish'].listen_port}"
    assert routes["pubsub-publish"].target_port == routes["pubsub"].target_port == 8085
    embedded = {**env, "BFF_BUS": "embedded"}
    assert "pubsub" not in {r.name for r in instances.dependency_routes(embedded)}


def test_the_rendered_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = nginx_or_skip()
    config = balancer.BalancerConfig("127.0.0.1", 8080, (8081, 8082), bff_keepalive_s=5)
    conf = balancer.write_config(config, tmp_path / "balancer")
    text = conf.read_text()
    assert "least_conn;" in text and "keepalive_timeout 4000ms;" in text
    assert "proxy_buffering off;" in text.split(balancer.SSE_PREFIX, 1)[1].split("}", 1)[0]
    checked = subprocess.run(balancer.check_argv(nginx, conf), capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


# --- the stack ----------------------------------------------------------------------------------


def _metric(url: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples at ``url``/metrics whose labels include ``labels``."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


@pytest.fixture
def stack(start_stack: StackFactory) -> Stack:
    return start_stack(2)


@pytest.mark.slow
def test_two_instances_behind_one_url_share_streams_and_down_stops_all(
    stack: Stack, redis_prefix: str
) -> None:
    assert httpx.get(f"{stack.lb}/health/ready").status_code == 200
    assert len(stack.instances) == 2 and len(stack.admins) == 2
    for admin in stack.admins:
        assert httpx.get(f"{admin}/admin/actors").status_code == 200
    bus = Bus("embedded", redis_prefix)
    for ident in stack.ids:
        for topic in TOPICS:
            bus.wait_subscribed(ident, topic)

    # Requests through the one URL reach both instances: the balancer says which answered,
    # and each instance's own request counter agrees.
    live = "/health/live"
    before = [_metric(url, "bff_http_requests_total", route=live) for url in stack.instances]
    answered = [stack.instance_of(httpx.get(stack.lb + live)) for _ in range(4)]
    assert set(answered) == set(stack.instances), answered
    after = [_metric(url, "bff_http_requests_total", route=live) for url in stack.instances]
    assert [a - b for a, b in zip(after, before, strict=True)] == [
        answered.count(url) for url in stack.instances
    ]

    # A stream through nginx gets its events as they happen (nothing buffered on the way).
    desk = Desktop(stack.lb, stack.sim)
    with SseReader(desk) as stream:
        holder = stack.instance_of(stream.response)
        other = next(url for url in stack.instances if url != holder)
        wait_until(lambda: stream.parsed.retry == 3000, 10, "the stream's retry hint")
        assert _metric(holder, "bff_sse_connections") == 1
        assert _metric(other, "bff_sse_connections") == 0
        alert_id = _raise_alert(stack.sim)
        assert stream.next().data["alertId"] == alert_id

        # The same device's next call goes to the other instance (least_conn: the stream
        # holds one); the session's revocation still ends the stream held on the first.
        whoami = desk.get("/bff/backoffice/v1/_test/whoami")
        assert whoami.status_code == 200, whoami.text
        assert stack.instance_of(whoami) == other
        revoked = httpx.post(
            f"{stack.sim}/_sim/iam/sessions/{desk.session_id}/revoke", json={"reason": "security"}
        )
        assert revoked.status_code < 300, revoked.text
        ended = stream.next()
        assert (ended.event, ended.data) == (
            "session",
            {"kind": "force_logout", "reason": "security"},
        )
        assert stream.rest() == []

    ports = stack.ports()
    stack.down()
    for port in ports:
        assert not port_open(port), f"port {port} still open after down"
    assert not list((Path(stack.env["BFF_STACK_STATE"]) / "run").glob("*.json"))


def _raise_alert(sim: str) -> str:
    alert_id = f"al-{uuid.uuid4().hex[:10]}"
    data = {
        "tenantId": "tnt-demo",
        "propertyId": "prop-demo-1",
        "alertId": alert_id,
        "severity": "high",
        "category": "maintenance",
        "title": "Boiler pressure low",
        "occurredAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    answer = httpx.post(
        f"{sim}/_sim/events", json={"subject": "melmastoon.alert.raised.v1", "data": data}
    )
    assert answer.status_code < 300, answer.text
    return alert_id
