"""``./ops/stack up --instances N``: N BFF processes behind one local load balancer.

Several instances are what production runs, and what the cross-instance behaviour (SSE fan-out,
force-logout, relay election, replay protection) is about; the desktop must still see one URL.
So with N > 1 the stack lays out:

* nginx (ops/localstack/balancer.py) on ``PORT``: the URL the desktop and ``BFF_URL`` use;
* BFF process *i* (1..N) on ``PORT + i``, bound to 127.0.0.1, with ``BFF_INSTANCE_ID``
  ``<stack-id>-i<i>`` (stable per state folder, so a restarted stack resumes its subscriptions)
  and ``BFF_PUBLIC_URL`` = the balancer's URL (the DPoP ``htu`` a desktop signs names the URL
  it called, not the instance's);
* one worker per process unless ``BFF_WORKERS`` says otherwise: the drills sum ``/metrics``
  per process, which needs a process to be one instance. Process *i*'s admin endpoint is on
  ``BFF_ADMIN_PORT + (i - 1) * workers`` (+ worker index), moved to start at ``PORT + 1000``
  when that range would overlap the BFF ports (the usual ``BFF_ADMIN_PORT = PORT + 1``);
* the dependency fault proxy (ops/localstack/faultproxy.py) between every BFF process and
  Redis (cache and session tiers, two routes even on one server), Postgres and, with the
  Pub/Sub bus, the emulator: the drills take one of them down for the BFF only. The simulator
  and the migrations use the real servers.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ops.localstack import balancer
from ops.localstack.deps import DEFAULT_EMULATOR_HOST, LOOPBACK, host_port, with_port
from ops.localstack.procs import STATE, PortTaken, StackError, free_port, port_open, say, spawn

MAX_INSTANCES = 32
SERVICES = ("sim", "bff", "balancer", "faultproxy")  # what `up` starts itself (not the servers)

# Waits until ``name`` answers 200 at ``url`` within ``timeout`` s (cli._wait_service).
Wait = Callable[[str, str, float], None]


def is_service(name: str) -> bool:
    """Whether a record is one of the processes ``up`` runs (not a server it found or started
    for the dependencies): the ones whose death ends a foreground stack."""
    return name in SERVICES or name.startswith("bff-")


@dataclass(frozen=True)
class Instance:
    """One BFF process behind the balancer."""

    index: int  # 1..N
    port: int
    admin_ports: tuple[int, ...]  # one per worker; empty when the admin endpoint is off
    instance_id: str

    @property
    def name(self) -> str:
        return f"bff-{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_urls(self) -> tuple[str, ...]:
        return tuple(f"http://127.0.0.1:{port}" for port in self.admin_ports)


@dataclass(frozen=True)
class Layout:
    """Where everything of an N-instance stack listens."""

    public_port: int
    listen_host: str
    public_url: str
    workers: int
    instances: tuple[Instance, ...]
    emulator_port: int = 0  # PUBSUB_EMULATOR_HOST's port when on this machine: not to be reused

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"


def stack_id(environ: Mapping[str, str] = os.environ) -> str:
    """``BFF_INSTANCE_ID`` when set, else one derived from the state folder: two stacks never
    share an id, and one stack keeps its ids (and so its subscriptions) across restarts."""
    chosen = environ.get("BFF_INSTANCE_ID", "").strip()
    if chosen:
        return chosen
    return "stack-" + hashlib.sha256(str(STATE.resolve()).encode()).hexdigest()[:6]


ADMIN_MOVED_BY = 1000  # PORT+1000…: clear of the simulator (8090) and the emulator (8085)


def admin_base(public_port: int, admin_port: int, count: int, workers: int) -> int:
    """The first admin port: ``BFF_ADMIN_PORT``, unless its range would overlap the balancer
    and BFF ports (``PORT..PORT+N``); then ``PORT + 1000``. 0 keeps the admin off."""
    if admin_port == 0:
        return 0
    admin_end = admin_port + count * workers  # exclusive
    if admin_port <= public_port + count and public_port < admin_end:
        return public_port + ADMIN_MOVED_BY
    return admin_port


def plan(
    services: Mapping[str, str], count: int, environ: Mapping[str, str] = os.environ
) -> Layout:
    """The layout of ``count`` instances from the stack's settings (``PORT``,
    ``BFF_ADMIN_PORT``, ``BFF_WORKERS``, ``BFF_PUBLIC_URL``, ``BFF_HOST``)."""
    if not 2 <= count <= MAX_INSTANCES:
        raise StackError(f"--instances must be between 1 and {MAX_INSTANCES}, not {count}")
    public_port = int(services["PORT"])
    if public_port + count > 65535:
        raise StackError(f"PORT={public_port} leaves no room for {count} instances after it")
    raw_workers = environ.get("BFF_WORKERS", "")
    workers = int(raw_workers) if raw_workers.isdigit() and int(raw_workers) > 0 else 1
    base = admin_base(public_port, int(services["BFF_ADMIN_PORT"]), count, workers)
    if base and base + count * workers > 65536:
        raise StackError(f"BFF_ADMIN_PORT={base} leaves no room for {count} admin endpoints")
    ident = stack_id(environ)
    instances = tuple(
        Instance(
            index=i,
            port=public_port + i,
            admin_ports=tuple(base + (i - 1) * workers + w for w in range(workers)) if base else (),
            instance_id=f"{ident}-i{i}",
        )
        for i in range(1, count + 1)
    )
    lb_url = f"http://127.0.0.1:{public_port}"
    return Layout(
        public_port=public_port,
        listen_host=environ.get("BFF_HOST") or "0.0.0.0",  # as the BFF's own default
        public_url=environ.get("BFF_PUBLIC_URL") or lb_url,
        workers=workers,
        instances=instances,
        emulator_port=_local_emulator_port(environ),
    )


def _local_emulator_port(environ: Mapping[str, str]) -> int:
    """The port the stack's emulator is (or would be started) on, if on this machine."""
    if environ.get("BFF_BUS") == "embedded":
        return 0
    host, _, port = (environ.get("PUBSUB_EMULATOR_HOST") or DEFAULT_EMULATOR_HOST).rpartition(":")
    return int(port) if host in LOOPBACK and port.isdigit() else 0


def wanted_ports(layout: Layout, sim_port: int) -> list[tuple[int, str, str]]:
    """(port, what listens there, the setting that moves it) for every port ``up`` will bind."""
    wanted = [
        (layout.public_port, "the load balancer", "PORT"),
        (sim_port, "the simulator", "SIM_URL"),
    ]
    if layout.emulator_port:
        wanted.append((layout.emulator_port, "the Pub/Sub emulator", "PUBSUB_EMULATOR_HOST"))
    for instance in layout.instances:
        wanted.append((instance.port, f"BFF instance {instance.index}", "PORT"))
        wanted += [
            (port, f"BFF instance {instance.index}'s admin endpoint", "BFF_ADMIN_PORT")
            for port in instance.admin_ports
        ]
    return wanted


def check_ports(layout: Layout, sim_port: int) -> None:
    """Refuse, before anything starts, two uses of one port or a port something else holds."""
    seen: dict[int, str] = {}
    for port, what, setting in wanted_ports(layout, sim_port):
        if port in seen:
            raise StackError(
                f"port {port} would serve both {seen[port]} and {what}: move {setting}"
                f" (with --instances {len(layout.instances)} the BFF processes use PORT+1.."
                f"PORT+{len(layout.instances)})"
            )
        seen[port] = what
    for port, what, setting in wanted_ports(layout, sim_port):
        if port_open(port) and port != layout.emulator_port:  # an emulator may be meant to answer
            raise PortTaken(port, what, f"set {setting} so that it is free (e.g. {free_port()})")


# --- the fault proxy between the BFF processes and their dependencies -------------------------


@dataclass(frozen=True)
class Route:
    """One dependency behind the fault proxy: the BFF processes call ``listen_port``."""

    name: str
    listen_port: int
    target_host: str
    target_port: int

    def spec(self) -> str:
        return f"{self.name}=127.0.0.1:{self.listen_port}:{self.target_host}:{self.target_port}"


def dependency_routes(env: Mapping[str, str]) -> list[Route]:
    """A route per dependency the BFF processes use (Pub/Sub only with the Pub/Sub bus)."""
    targets = {
        "redis-cache": host_port(env["BFF_REDIS_CACHE_URL"], 6379),
        "redis-session": host_port(env["BFF_REDIS_SESSION_URL"], 6379),
        "postgres": host_port(env["BFF_DATABASE_URL"], 5432),
    }
    emulator = env.get("PUBSUB_EMULATOR_HOST", "")
    if env.get("BFF_BUS") == "pubsub" and emulator:
        host, _, port = emulator.rpartition(":")
        # Pulling and publishing on separate routes: F-22 fails publishing alone (and the
        # emulator never forgets a streaming pull whose connection was cut: see the drill).
        targets["pubsub"] = targets["pubsub-publish"] = (host or "127.0.0.1", int(port))
    return [Route(name, free_port(), host, port) for name, (host, port) in targets.items()]


def proxied(env: Mapping[str, str], routes: list[Route]) -> dict[str, str]:
    """The dependency settings of a BFF process pointed at the proxy (database name, key
    prefix, credentials and Redis db kept)."""
    by_name = {route.name: route.listen_port for route in routes}
    settings = {
        "BFF_REDIS_CACHE_URL": with_port(env["BFF_REDIS_CACHE_URL"], by_name["redis-cache"]),
        "BFF_REDIS_SESSION_URL": with_port(env["BFF_REDIS_SESSION_URL"], by_name["redis-session"]),
        "BFF_DATABASE_URL": with_port(env["BFF_DATABASE_URL"], by_name["postgres"]),
    }
    if "pubsub" in by_name:
        settings["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{by_name['pubsub']}"
        settings["BFF_PUBSUB_PUBLISH_HOST"] = f"127.0.0.1:{by_name['pubsub-publish']}"
    return settings


def instance_env(
    env: Mapping[str, str], layout: Layout, instance: Instance, via_proxy: Mapping[str, str]
) -> dict[str, str]:
    """Everything BFF process ``instance`` is started with."""
    return {
        **env,
        **via_proxy,
        "PORT": str(instance.port),
        "BFF_HOST": "127.0.0.1",  # reached through the balancer (and directly, from here)
        "BFF_ADMIN_PORT": str(instance.admin_ports[0] if instance.admin_ports else 0),
        "BFF_WORKERS": str(layout.workers),
        "BFF_INSTANCE_ID": instance.instance_id,
        "BFF_PUBLIC_URL": layout.public_url,
    }


# --- starting them ----------------------------------------------------------------------------


def start_fault_proxy(env: Mapping[str, str], wait: Wait) -> tuple[str, dict[str, str]]:
    """Start the fault proxy; return its control URL and the BFF processes' dependency
    settings through it."""
    routes = dependency_routes(env)
    control = free_port()
    argv = [sys.executable, "-m", "ops.localstack.faultproxy", "--control", f"127.0.0.1:{control}"]
    for route in routes:
        argv += ["--route", route.spec()]
    say("starting the dependency fault proxy (" + ", ".join(r.name for r in routes) + ")")
    spawn("faultproxy", argv, {"PYTHONUNBUFFERED": "1"}, port=control, marker=argv[2])
    url = f"http://127.0.0.1:{control}"
    wait("faultproxy", f"{url}/health", 30)
    return url, proxied(env, routes)


def start_balancer(layout: Layout, env: Mapping[str, str], wait: Wait) -> None:
    nginx = balancer.ensure_nginx()
    config = balancer.BalancerConfig(
        listen_host=layout.listen_host,
        listen_port=layout.public_port,
        upstream_ports=tuple(i.port for i in layout.instances),
        max_body_bytes=_number(env, "BFF_MAX_BODY_BYTES", balancer.DEFAULT_MAX_BODY),
        bff_keepalive_s=_number(env, "BFF_KEEPALIVE_TIMEOUT_S", balancer.DEFAULT_KEEPALIVE_S),
        run_as_root=os.geteuid() == 0,
    )
    conf = balancer.write_config(config)
    checked = subprocess.run(balancer.check_argv(nginx, conf), capture_output=True, text=True)
    if checked.returncode != 0:
        raise StackError(f"nginx refused {conf}: {checked.stderr.strip()}")
    say(f"starting the load balancer (nginx, least_conn) on {layout.lb_url}")
    spawn("balancer", balancer.argv(nginx, conf), {}, port=layout.public_port, marker=str(conf))
    wait("balancer", f"{layout.lb_url}/health/ready", 30)


def _number(env: Mapping[str, str], name: str, default: float) -> int:
    raw = env.get(name) or os.environ.get(name, "")
    try:
        return int(float(raw)) if raw else int(default)
    except ValueError:
        return int(default)  # the BFF itself refuses the bad value, naming it


def prepare(services: Mapping[str, str], count: int) -> Layout:
    """The layout, with nginx found (or installed) before anything starts: without it the
    stack says what to install and stops."""
    layout = plan(services, count)
    balancer.ensure_nginx()
    return layout


def start(layout: Layout, env: Mapping[str, str], wait: Wait) -> dict[str, str]:
    """Start the fault proxy, the N BFF processes (all at once, then wait for each) and the
    balancer; return what ``./ops/stack env`` adds for them."""
    say(
        f"{len(layout.instances)} BFF processes behind {layout.lb_url};"
        f" BFF_WORKERS={layout.workers} per process"
        + (" (the drills sum /metrics per process)" if layout.workers == 1 else "")
    )
    faults_url, via_proxy = start_fault_proxy(env, wait)
    for instance in layout.instances:
        admin = ", ".join(instance.admin_urls) or "no admin endpoint"
        say(f"{instance.name}: {instance.url} ({admin}; id {instance.instance_id})")
        spawn(
            instance.name,
            [sys.executable, "-m", "edge"],
            instance_env(env, layout, instance, via_proxy),
            port=instance.port,
            marker="-m edge",
        )
    for instance in layout.instances:
        wait(instance.name, f"{instance.url}/health/ready", 180)
    start_balancer(layout, env, wait)
    return exports(layout, faults_url)


def exports(layout: Layout, faults_url: str) -> dict[str, str]:
    """The ``./ops/stack env`` lines of an N-instance stack (BFF_URL stays the balancer's)."""
    admin_urls = [url for instance in layout.instances for url in instance.admin_urls]
    return {
        "BFF_ADMIN_URL": admin_urls[0] if admin_urls else "",
        "BFF_INSTANCE_URLS": ",".join(i.url for i in layout.instances),
        "BFF_ADMIN_URLS": ",".join(admin_urls),
        "BFF_FAULTPROXY_URL": faults_url,
    }
