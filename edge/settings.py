"""One typed settings object, read from environment variables.

Field ``foo_bar`` is read from ``BFF_FOO_BAR``; the few fields in ``UNPREFIXED`` keep the name
the platform or a client library already uses. Each field documents itself
(``Meta(description=...)``), and the README's settings table is generated from those
descriptions (``python -m edge.settings --markdown``), so names, defaults and meanings live here
only. A bad value stops start-up with a single line naming the variable, never a traceback.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
import msgspec.inspect
from msgspec import Meta

Port = Annotated[int, Meta(ge=0, le=65535)]
Seconds = Annotated[float, Meta(gt=0, le=3600)]
# A URL's scheme is checked before conversion (see ``load_settings``), not by a msgspec pattern:
# a pattern failure would echo the value, password included.
HttpUrl = Annotated[str, Meta(extra={"schemes": ("http://", "https://")})]
PostgresUrl = Annotated[str, Meta(extra={"schemes": ("postgres://", "postgresql://")})]
RedisUrl = Annotated[str, Meta(extra={"schemes": ("redis://", "rediss://", "unix://")})]
UpstreamUrl = Annotated[
    HttpUrl,
    Meta(
        description="base URL per upstream; empty = `SIM_URL/<name>` (local) or "
        "`https://<name>.melmastoon.internal` (production)"
    ),
]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Process configuration. Defaults suit the local demo stack.

    Fields are declared in the order of the README table; ``SECTIONS`` names where a group starts.
    """

    port: Annotated[Port, Meta(description="public HTTP port")] = 8080
    host: Annotated[str, Meta(description="public bind address")] = "0.0.0.0"
    admin_port: Annotated[
        Port, Meta(description="admin endpoint port (always bound to 127.0.0.1; `0` disables it)")
    ] = 8081
    admin: Annotated[
        Literal["auto", "on", "off"],
        Meta(
            description="admin endpoint: `on`, `off`, or `auto` (on in `local` mode, off in "
            "`production` mode)"
        ),
    ] = "auto"
    mode: Annotated[
        Literal["local", "production"],
        Meta(
            description="`local` (simulator, no upstream auth) or `production` "
            "(Google ID tokens upstream)"
        ),
    ] = "local"
    public_url: Annotated[
        str,
        Meta(description="externally visible base URL (DPoP `htu` checks behind a load balancer)"),
    ] = ""
    database_url: Annotated[PostgresUrl, Meta(description="Postgres (ledger, outbox)")] = (
        "postgresql://postgres@127.0.0.1:5432/bff_backoffice"
    )
    db_pool_max: Annotated[
        int,
        Meta(ge=1, le=200, description="most Postgres connections open at once (opened on demand)"),
    ] = 10
    redis_session_url: Annotated[RedisUrl, Meta(description="Redis session tier (no eviction)")] = (
        "redis://127.0.0.1:6379/0"
    )
    redis_cache_url: Annotated[RedisUrl, Meta(description="Redis cache tier")] = (
        "redis://127.0.0.1:6379/0"
    )
    redis_prefix: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9_.-]{1,40}$",
            description="first segment of every Redis key (`<prefix>:<tenant>:…`)",
        ),
    ] = "bff"
    sim_url: Annotated[
        HttpUrl,
        Meta(description="upstream simulator; in local mode every upstream is `SIM_URL/<name>`"),
    ] = "http://127.0.0.1:8090"
    bus: Annotated[
        Literal["auto", "pubsub", "embedded"],
        Meta(
            description="`pubsub`, `embedded` (Redis Streams) or `auto` (Pub/Sub when "
            "`PUBSUB_EMULATOR_HOST` is set or in production)"
        ),
    ] = "auto"
    pubsub_emulator_host: Annotated[
        str, Meta(description="`host:port` of the Pub/Sub emulator")
    ] = ""
    pubsub_publish_host: Annotated[
        str,
        Meta(
            pattern=r"^$|^[A-Za-z0-9.-]{1,253}:[0-9]{1,5}$",
            description="`host:port` the publisher talks to when it is not where subscriptions "
            "pull from: a locational endpoint (Pub/Sub's advice for ordered publishing, e.g. "
            "`asia-south1-pubsub.googleapis.com:443`), or a second address of the emulator "
            "(`./ops/stack up --instances` routes publishing through its own proxy route, so "
            "the F-22 drill fails publishing alone); empty = the same as for pulling",
        ),
    ] = ""
    pubsub_project: Annotated[
        str, Meta(description="Google Cloud project of the topics and subscriptions")
    ] = "bff-local"
    instance_id: Annotated[
        str,
        Meta(
            description="names this instance's subscriptions (each instance receives every "
            "event); empty = generated"
        ),
    ] = ""
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        Meta(description="`DEBUG`, `INFO`, `WARNING`, `ERROR` (JSON lines on stdout)"),
    ] = "INFO"
    tracing: Annotated[
        Literal["off", "console", "otlp"],
        Meta(
            description="OpenTelemetry traces (request, dashboard composition, upstream calls): "
            "`off`, `console` (one JSON line per span on stderr) or `otlp` (OTLP/HTTP to "
            "`BFF_OTLP_ENDPOINT`)"
        ),
    ] = "off"
    otlp_endpoint: Annotated[
        str,
        Meta(description="OTLP/HTTP traces endpoint (`BFF_TRACING=otlp`)"),
    ] = "http://127.0.0.1:4318/v1/traces"
    max_body_bytes: Annotated[
        int,
        Meta(
            ge=1024,
            le=16 * 1024 * 1024,
            description="larger request bodies get 413 `PAYLOAD_TOO_LARGE`",
        ),
    ] = 256 * 1024
    keepalive_timeout_s: Annotated[
        Seconds, Meta(description="idle keep-alive connections are closed after this")
    ] = 5.0
    body_timeout_s: Annotated[
        Seconds,
        Meta(
            description="a request body must arrive within this (from the end of the headers), "
            "else 408 `REQUEST_TIMEOUT` and the connection is closed"
        ),
    ] = 10.0
    body_idle_s: Annotated[
        Seconds,
        Meta(
            description="longest silence between two chunks of a request body (then 408 "
            "`REQUEST_TIMEOUT`, connection closed); the headers must arrive within "
            "`BFF_KEEPALIVE_TIMEOUT_S` of the connection's start or its previous response"
        ),
    ] = 5.0
    shutdown_grace_s: Annotated[
        Seconds, Meta(description="on SIGTERM, in-flight requests get this long to finish")
    ] = 10.0
    dependency_timeout_s: Annotated[
        Seconds, Meta(description="deadline of each Redis call and of readiness probes")
    ] = 2.0
    enable_test_routes: Annotated[
        bool, Meta(description="mounts `/_test/*` (tests only; never in production mode)")
    ] = False

    actor_mailbox_size: Annotated[
        int, Meta(ge=1, le=100_000, description="bounded mailbox per actor")
    ] = 64
    actor_tell_timeout_s: Annotated[
        Seconds,
        Meta(description="how long a sender waits on a full mailbox (then 503 `OVERLOADED`)"),
    ] = 1.0
    actor_ask_timeout_s: Annotated[
        Seconds,
        Meta(description="how long a sender waits for a reply (then 503 `SERVICE_UNAVAILABLE`)"),
    ] = 5.0
    actor_idle_s: Annotated[Seconds, Meta(description="idle actors passivate after this")] = 300.0
    actor_restart_min_s: Annotated[
        Seconds, Meta(description="first restart delay of a crashed actor (doubles per restart)")
    ] = 0.05
    actor_restart_max_s: Annotated[
        Seconds, Meta(description="longest restart delay of a crashed actor")
    ] = 5.0
    actor_restart_jitter: Annotated[
        float, Meta(ge=0, le=1, description="random share added to each restart delay")
    ] = 0.2
    actor_max_restarts: Annotated[
        int,
        Meta(
            ge=0,
            le=1000,
            description="restart budget per window; past it the supervisor gives up "
            "(readiness fails)",
        ),
    ] = 5
    actor_restart_window_s: Annotated[
        Seconds, Meta(description="the window the restart budget counts over")
    ] = 30.0
    actor_failed_hold_s: Annotated[
        Seconds,
        Meta(description="how long a given-up actor stays failed before it may reactivate"),
    ] = 60.0
    actor_max_active: Annotated[
        int, Meta(ge=1, le=10_000_000, description="live actors per process")
    ] = 100_000

    ledger_max_batch: Annotated[int, Meta(ge=1, le=5000, description="events per group commit")] = (
        500
    )
    ledger_retention_days: Annotated[
        float,
        Meta(
            gt=0,
            le=3650,
            description="activity retention: age past which rows go (only rows the relay "
            "published)",
        ),
    ] = 90.0
    ledger_retention_interval_s: Annotated[
        float, Meta(gt=0, le=86_400, description="activity retention: how often the job runs")
    ] = 3600.0
    ledger_retention_batch: Annotated[
        int, Meta(ge=1, le=100_000, description="activity retention: rows per deletion batch")
    ] = 5000
    relay_enabled: Annotated[bool, Meta(description="run the outbox relay to the bus")] = True
    relay_batch: Annotated[
        int, Meta(ge=1, le=5000, description="outbox rows the relay publishes per batch")
    ] = 500
    relay_poll_s: Annotated[
        Seconds, Meta(description="how often an idle relay looks for new outbox rows")
    ] = 0.2
    relay_backoff_max_s: Annotated[
        Seconds, Meta(description="longest relay backoff while the bus is failing")
    ] = 30.0
    bus_publish_timeout_s: Annotated[Seconds, Meta(description="deadline of one publish")] = 10.0
    bus_stream_maxlen: Annotated[
        int,
        Meta(
            ge=100,
            le=100_000_000,
            description="approximate length cap of each embedded-bus stream",
        ),
    ] = 100_000
    bus_subscription_ttl_s: Annotated[
        int,
        Meta(
            ge=86_400,
            le=31 * 86_400,
            description="an instance's subscription expires this long after the instance is gone",
        ),
    ] = 86_400
    subscriber_enabled: Annotated[bool, Meta(description="consume domain events from the bus")] = (
        True
    )
    subscriber_max_attempts: Annotated[
        int,
        Meta(ge=1, le=100, description="attempts at a consumed event before dead-lettering it"),
    ] = 5
    subscriber_handler_timeout_s: Annotated[
        Seconds, Meta(description="deadline of handling one consumed event")
    ] = 10.0

    upstream_auth: Annotated[
        Literal["auto", "none", "google"],
        Meta(
            description="`google` (ID tokens from the metadata server), `none`, or `auto` "
            "(google in production)"
        ),
    ] = "auto"
    metadata_url: Annotated[HttpUrl, Meta(description="metadata server for ID tokens")] = (
        "http://metadata.google.internal"
    )
    breaker_failures: Annotated[
        int,
        Meta(ge=1, le=1000, description="consecutive failures that open an upstream's circuit"),
    ] = 5
    breaker_open_s: Annotated[
        Seconds, Meta(description="how long an open circuit stays open before a trial")
    ] = 5.0
    upstream_concurrency: Annotated[
        int, Meta(ge=1, le=1000, description="requests in flight per upstream")
    ] = 64
    upstream_refresh_concurrency: Annotated[
        int,
        Meta(
            ge=1,
            le=1000,
            description="requests in flight to iam's token-refresh operations, a limit of their "
            "own (a refresh flood cannot starve JWKS or step-up)",
        ),
    ] = 16
    upstream_iam_url: UpstreamUrl = ""
    upstream_tenant_url: UpstreamUrl = ""
    upstream_property_url: UpstreamUrl = ""
    upstream_reservation_url: UpstreamUrl = ""
    upstream_inventory_url: UpstreamUrl = ""
    upstream_pricing_url: UpstreamUrl = ""
    upstream_housekeeping_url: UpstreamUrl = ""
    upstream_maintenance_url: UpstreamUrl = ""
    upstream_billing_url: UpstreamUrl = ""
    upstream_lock_url: UpstreamUrl = ""
    upstream_ai_url: UpstreamUrl = ""
    upstream_notification_url: UpstreamUrl = ""
    upstream_sync_url: UpstreamUrl = ""
    upstream_analytics_url: UpstreamUrl = ""

    dpop_max_age_s: Annotated[
        float,
        Meta(
            gt=0,
            le=600,
            description="oldest accepted DPoP proof `iat` (a `jti` is remembered for the whole "
            "acceptance window plus 30 s of clock skew between instances)",
        ),
    ] = 60.0
    dpop_max_future_s: Annotated[
        float,
        Meta(ge=0, le=60, description="how far in the future a DPoP proof `iat` may be"),
    ] = 5.0
    rate_limit_per_minute: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000,
            description="requests per device per minute (429 `RATE_LIMITED` with `Retry-After`)",
        ),
    ] = 600
    refresh_limit_per_device: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000,
            description="`/auth/refresh` calls per device key per minute (then 429 "
            "`RATE_LIMITED` with `Retry-After`, before iam is asked)",
        ),
    ] = 10
    refresh_limit_per_address: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000,
            description="`/auth/refresh` calls per client address per minute (then 429 "
            "`RATE_LIMITED` with `Retry-After`, before iam is asked)",
        ),
    ] = 300
    heartbeat_sample_rate: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description="share of heartbeats appended to the ledger as `device.heartbeat.v1` "
            "telemetry; the flag `heartbeatSampleRate` overrides it at run time",
        ),
    ] = 0.05
    tenant_status_ttl_s: Annotated[
        float, Meta(gt=0, le=3600, description="tenant suspension cache (F-3)")
    ] = 300.0
    version_floor_refresh_s: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description="re-read of the runtime flags (`<prefix>:_global:flags` → "
            "`appVersionFloor`, `heartbeatSampleRate`)",
        ),
    ] = 30.0
    jwks_ttl_s: Annotated[
        float,
        Meta(gt=0, le=86400, description="iam's JWKS is refreshed this long after a fetch"),
    ] = 600.0
    jwks_min_refetch_s: Annotated[
        float,
        Meta(ge=0, le=3600, description="an unknown `kid` refetches iam's JWKS at most this often"),
    ] = 5.0
    iam_issuer: Annotated[str, Meta(description="required `iss` of access tokens")] = (
        "https://iam.melmastoon.internal"
    )
    iam_audience: Annotated[str, Meta(description="required `aud` of access tokens")] = (
        "bff-backoffice-service"
    )

    dashboard_deadline_s: Annotated[
        float,
        Meta(gt=0, le=30, description="hard deadline of one dashboard composition (F-33)"),
    ] = 0.55
    dashboard_ttl_s: Annotated[
        Seconds, Meta(description="`DashboardSnapshot` cache time, complete")
    ] = 30.0
    dashboard_partial_ttl_s: Annotated[
        Seconds, Meta(description="`DashboardSnapshot` cache time, partial")
    ] = 5.0
    dashboard_cache_timeout_s: Annotated[
        float,
        Meta(gt=0, le=10, description="deadline of a cache-tier read before reading through"),
    ] = 0.25
    workbench_deadline_s: Annotated[
        float, Meta(gt=0, le=30, description="workbench composition deadline")
    ] = 0.9
    workbench_ttl_s: Annotated[Seconds, Meta(description="`WorkbenchView` cache time")] = 15.0
    workbench_stale_max_s: Annotated[
        Seconds,
        Meta(
            description="how stale a board may be served (`stale: true`) while its upstream is down"
        ),
    ] = 600.0

    sse_keepalive_s: Annotated[
        float,
        Meta(gt=0, le=15, description="an SSE stream sends a keep-alive comment this often"),
    ] = 15.0
    sse_retry_ms: Annotated[
        int, Meta(ge=0, le=600_000, description="the `retry:` hint sent at the start of a stream")
    ] = 3000
    sse_history: Annotated[
        int,
        Meta(
            ge=16,
            le=100_000,
            description="events a device's feed keeps for `Last-Event-ID` resume (Redis "
            "Stream `MAXLEN`)",
        ),
    ] = 256
    sse_history_ttl_s: Annotated[
        float,
        Meta(
            gt=0,
            le=7 * 86400,
            description="a device's feed is dropped this long after its last event",
        ),
    ] = 86400.0
    sse_buffer: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description="events queued for one stream before it is cut off as a slow "
            "consumer (it resumes with `Last-Event-ID`)",
        ),
    ] = 256
    sse_opens_per_minute: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000,
            description="streams a device may open per minute (then 429 `RATE_LIMITED`)",
        ),
    ] = 20
    sse_owner_ttl_s: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description="a stream's ownership record lives this long unless its instance "
            "renews it (every keep-alive period): a crashed instance's streams are forgotten",
        ),
    ] = 60.0
    gc_gen0_threshold: Annotated[
        int,
        Meta(
            ge=0,
            le=1_000_000,
            description="once serving, start-up objects are frozen out of the collector and "
            "young-generation collections wait for this many allocations (a fan-out to "
            "thousands of streams is otherwise mostly GC); 0 keeps Python's defaults",
        ),
    ] = 50_000
    sse_drain_s: Annotated[
        float,
        Meta(
            gt=0,
            le=300,
            description="on SIGTERM, how long streams get to receive `reconnect` and close",
        ),
    ] = 5.0
    inbox_ttl_s: Annotated[
        Seconds,
        Meta(
            description="an AI suggestion / alert inbox projection expires this long after "
            "its last change (then it is read through from the upstream again)"
        ),
    ] = 3600.0
    ack_forward_interval_s: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description="how often acknowledgements not yet accepted by notification-service "
            "are retried",
        ),
    ] = 5.0

    sync_cursor_ttl_s: Annotated[
        float,
        Meta(
            gt=0,
            le=30 * 86400,
            description="a device's sync cursor is copied to the cache tier (read while "
            "Postgres is down) and the copy expires this long after its last change",
        ),
    ] = 604800.0

    idempotency_ttl_s: Annotated[
        float,
        Meta(
            gt=0,
            le=30 * 86400,
            description="an `Idempotency-Key` is remembered this long after its first use "
            "(the desktop's offline outbox must drain within it)",
        ),
    ] = 86400.0
    idempotency_lease_s: Annotated[
        float,
        Meta(
            gt=0,
            le=600,
            description="a request holds its key this long; then (its instance crashed) a "
            "retry may run again, absorbed upstream by the forwarded key. Longer than any "
            "upstream deadline with its retries",
        ),
    ] = 30.0
    idempotency_cleanup_s: Annotated[
        float,
        Meta(gt=0, le=86400, description="how often expired idempotency keys are deleted"),
    ] = 3600.0

    preferences_cache_ttl_s: Annotated[
        Seconds,
        Meta(
            description="operator preferences stay in the cache tier this long; the Postgres "
            "mirror is served without asking tenant-service while it was confirmed this recently, "
            "and served `stale` past it while tenant-service is down (F-3)"
        ),
    ] = 300.0
    shortcuts_cache_ttl_s: Annotated[
        Seconds,
        Meta(
            description="a rendered keyboard-shortcut map stays in the cache tier this long "
            "(a preferences change or `theme.published` makes it stale sooner)"
        ),
    ] = 900.0

    workers: Annotated[
        int,
        Meta(
            ge=0,
            le=64,
            description="worker processes serving `PORT` together (`SO_REUSEPORT`), each a full "
            "member of the cluster like another instance; `0` = one per CPU available (the "
            "process's CPU affinity, capped by the cgroup `cpu.max` quota); `1` = one process, "
            "no supervisor. Worker *i* serves the admin endpoint on `BFF_ADMIN_PORT` + *i*",
        ),
    ] = 0
    workers_max_restarts: Annotated[
        int,
        Meta(
            ge=0,
            le=1000,
            description="worker restarts the supervisor allows within "
            "`BFF_WORKERS_RESTART_WINDOW_S`; one more and it stops every worker and exits 1 "
            "(the platform restarts the container)",
        ),
    ] = 5
    workers_restart_window_s: Annotated[
        Seconds, Meta(description="the window the workers' restart budget counts over")
    ] = 60.0
    worker_index: Annotated[
        int,
        Meta(
            ge=-1,
            le=63,
            description="internal: set by the supervisor on each worker process (`-1`: not a "
            "worker); never set it yourself",
        ),
    ] = -1
    worker_supervisor: Annotated[
        int,
        Meta(
            ge=0,
            description="internal: the supervisor's pid, set on each worker process (a worker "
            "whose supervisor is gone shuts down); never set it yourself",
        ),
    ] = 0

    @property
    def admin_enabled(self) -> bool:
        """Whether to serve the admin endpoint: never on port 0, and in production mode only
        when ``BFF_ADMIN=on`` says so."""
        if self.admin_port == 0 or self.admin == "off":
            return False
        return self.admin == "on" or self.mode == "local"

    @property
    def bus_kind(self) -> Literal["pubsub", "embedded"]:
        """The bus adapter to use: Pub/Sub when configured or reachable, else the embedded bus."""
        if self.bus == "auto":
            return (
                "pubsub" if self.pubsub_emulator_host or self.mode == "production" else "embedded"
            )
        return self.bus


# Variables read without the ``BFF_`` prefix: Cloud Run sets ``PORT``; ``SIM_URL`` is shared with
# the simulator and the ops tools; the Google client library itself reads ``PUBSUB_EMULATOR_HOST``.
UNPREFIXED = frozenset({"port", "sim_url", "pubsub_emulator_host"})

# README table headings, keyed by the first field of each group.
SECTIONS: dict[str, str] = {
    "actor_mailbox_size": "**actors** (`actors/`)",
    "ledger_max_batch": "**ledger, relay, bus** (`ledger/`, `edge/bus/`)",
    "upstream_auth": "**upstreams** (`edge/upstream/`)",
    "dpop_max_age_s": "**device auth** (`edge/auth/`)",
    "dashboard_deadline_s": "**dashboard and workbench** (`edge/dashboard/`)",
    "sse_keepalive_s": "**SSE stream and inboxes** (`edge/sse/`, `edge/inbox/`)",
    "sync_cursor_ttl_s": "**sync** (`edge/routes/sync.py`, `edge/sync_cursors.py`)",
    "idempotency_ttl_s": "**idempotency** (`edge/idempotency.py`, `ledger/idempotency.py`)",
    "preferences_cache_ttl_s": "**preferences and shortcuts** (`edge/operator_preferences.py`, "
    "`edge/shortcuts.py`)",
    "workers": "**worker processes** (`edge/workers.py`)",
}


def env_name(field: str) -> str:
    """The environment variable ``field`` is read from."""
    return field.upper() if field in UNPREFIXED else f"BFF_{field.upper()}"


@dataclass(frozen=True)
class Variable:
    """One setting as the environment and the README see it."""

    field: str
    name: str
    default: object
    meaning: str
    schemes: tuple[str, ...]  # accepted URL prefixes; empty when the value is not a URL


def variables() -> list[Variable]:
    """Every setting, in declaration order, described by its field's ``Meta``."""
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    found = []
    for f in info.fields:
        meta = f.type if isinstance(f.type, msgspec.inspect.Metadata) else None
        schema = (meta.extra_json_schema if meta else None) or {}
        extra = (meta.extra if meta else None) or {}
        found.append(
            Variable(
                field=f.name,
                name=env_name(f.name),
                default=f.default,
                meaning=str(schema.get("description", "")),
                schemes=tuple(extra.get("schemes", ())),
            )
        )
    return found


ENV_NAMES: dict[str, str] = {v.field: v.name for v in variables()}
_URL_SCHEMES: dict[str, tuple[str, ...]] = {v.field: v.schemes for v in variables() if v.schemes}


class SettingsError(ValueError):
    """A variable has a value the service cannot run with; the message names the variable."""


FILE_SUFFIX = "_FILE"
MAX_FILE_BYTES = 64 * 1024


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from ``environ`` (default: the process environment).

    Any variable may instead name a file holding its value, ``<NAME>_FILE=/path`` (secrets
    mounted as files, e.g. Secret Manager volumes on Cloud Run): read once here, one trailing
    newline dropped. Setting both is refused, so a value is never chosen silently."""
    env = os.environ if environ is None else environ
    raw: dict[str, str] = {f: env[v] for f, v in ENV_NAMES.items() if env.get(v, "") != ""}
    for field, name in ENV_NAMES.items():
        path = env.get(name + FILE_SUFFIX, "")
        if not path:
            continue
        if field in raw:
            raise SettingsError(f"{name} and {name}{FILE_SUFFIX} are both set: keep one")
        raw[field] = _read_value_file(name + FILE_SUFFIX, path)
    for field, prefixes in _URL_SCHEMES.items():
        if field in raw and not raw[field].startswith(prefixes):
            shown = redact_url(raw[field])
            raise SettingsError(
                f"{ENV_NAMES[field]}={shown!r} is invalid: must start with " + " or ".join(prefixes)
            )
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        detail, _, path = str(exc).partition(" - at `$.")
        field = path.rstrip("`")
        name = ENV_NAMES.get(field, field)
        raise SettingsError(f"{name}={raw.get(field)!r} is invalid: {detail}") from None
    if settings.mode == "production" and not settings.public_url.startswith("https://"):
        raise SettingsError("BFF_PUBLIC_URL must be the https:// URL clients use, in production")
    return settings


def _read_value_file(variable: str, path: str) -> str:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SettingsError(f"{variable}={path!r} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SettingsError(f"{variable}={path!r} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{variable}={path!r} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


# A parameter is secret when its name (case and ``-``/``_`` aside) says password, secret,
# token, credential or a private/API/access key: ``password``, ``sslpassword``, ``passfile``,
# ``pwd``, ``auth_token``… (``sslkey``, ``sslcert``, ``sslrootcert`` name files, and stay).
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|credential|(api|access|private)key")
# ``name=value`` in a query or a libpq key/value string. A value is a single-quoted libpq
# string or runs to the next ``&`` or blank (past a ``#`` or ``;``: hiding too much is harmless).
_PARAMETER = re.compile(
    r"(?P<lead>^|[?&;\s])(?P<name>[^=&;#?\s]+)=(?P<value>'(?:[^'\\]|\\.)*'|[^&\s]*)"
)


def redact_url(url: str) -> str:
    """Hide a password in a URL so it never reaches a message or a log line: the userinfo's
    (``scheme://user:***@host``) and every secret-looking parameter's (``?sslpassword=***``)."""

    def hide(match: re.Match[str]) -> str:
        name = urllib.parse.unquote(match["name"]).lower().replace("-", "").replace("_", "")
        if not _SECRET_NAME.search(name):
            return match[0]
        return f"{match['lead']}{match['name']}=***"

    url = _PARAMETER.sub(hide, url)
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def markdown_table() -> str:
    """The README's settings table. Consecutive variables sharing meaning and default (the
    per-upstream URLs) share a row, so the table stays readable."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    rows = itertools.groupby(
        variables(), key=lambda v: (SECTIONS.get(v.field), v.meaning, _shown(v.default))
    )
    for (section, meaning, default), group in rows:
        if section:
            lines.append(f"| {section} | | |")
        names = ", ".join(f"`{v.name}`" for v in group)
        lines.append(f"| {names} | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


def _shown(default: object) -> str:
    """A default as the README shows it: what one would type into the variable."""
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if default == "":
        return "*(empty)*"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m edge.settings", description="Describe the service's settings."
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        required=True,
        help="print the README's settings table (paste it under README.md § Settings)",
    )
    parser.parse_args(argv)
    print(markdown_table(), end="")


if __name__ == "__main__":
    main()
