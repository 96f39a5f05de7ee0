"""One typed settings object, read from environment variables.

Every field maps to exactly one variable (``ENV_NAMES``); a bad value stops start-up with a
single line naming the variable, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Process configuration. Defaults suit the local demo stack."""

    port: Port = 8080
    host: str = "0.0.0.0"
    admin_port: Port = 8081
    mode: Literal["local", "production"] = "local"
    public_url: str = ""
    database_url: str = "postgresql://postgres@127.0.0.1:5432/bff_backoffice"
    db_pool_min: Annotated[int, msgspec.Meta(ge=0, le=100)] = 1
    db_pool_max: Annotated[int, msgspec.Meta(ge=1, le=200)] = 10
    redis_cache_url: str = "redis://127.0.0.1:6379/0"
    redis_session_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,40}$")] = "bff"
    sim_url: str = "http://127.0.0.1:8090"
    bus: Literal["auto", "pubsub", "embedded"] = "auto"
    pubsub_emulator_host: str = ""
    pubsub_project: str = "bff-local"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 256 * 1024
    keepalive_timeout_s: Seconds = 5.0
    shutdown_grace_s: Seconds = 10.0
    dependency_timeout_s: Seconds = 2.0
    instance_id: str = ""
    enable_test_routes: bool = False
    # actor runtime (actors/): mailbox, deadlines, passivation, supervision
    actor_mailbox_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 64
    actor_tell_timeout_s: Seconds = 1.0
    actor_ask_timeout_s: Seconds = 5.0
    actor_idle_s: Seconds = 300.0
    actor_restart_min_s: Seconds = 0.05
    actor_restart_max_s: Seconds = 5.0
    actor_restart_jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2
    actor_max_restarts: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 5
    actor_restart_window_s: Seconds = 30.0
    actor_failed_hold_s: Seconds = 60.0
    actor_max_active: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100_000
    # ledger, relay and bus subscriber (ledger/, edge/bus/)
    ledger_max_batch: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 500
    ledger_retention_days: Annotated[float, msgspec.Meta(gt=0, le=3650)] = 90.0
    ledger_retention_interval_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 3600.0
    ledger_retention_batch: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5000
    relay_enabled: bool = True
    relay_batch: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 500
    relay_poll_s: Seconds = 0.2
    relay_backoff_max_s: Seconds = 30.0
    bus_publish_timeout_s: Seconds = 10.0
    bus_stream_maxlen: Annotated[int, msgspec.Meta(ge=100, le=100_000_000)] = 100_000
    bus_subscription_ttl_s: Annotated[int, msgspec.Meta(ge=86_400, le=31 * 86_400)] = 86_400
    subscriber_enabled: bool = True
    subscriber_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    subscriber_handler_timeout_s: Seconds = 10.0
    # upstream clients (edge/upstream/): auth, breaker, per-upstream base-URL overrides
    upstream_auth: Literal["auto", "none", "google"] = "auto"
    metadata_url: str = "http://metadata.google.internal"
    breaker_failures: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    breaker_open_s: Seconds = 5.0
    upstream_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 64
    upstream_iam_url: str = ""
    upstream_tenant_url: str = ""
    upstream_property_url: str = ""
    upstream_reservation_url: str = ""
    upstream_inventory_url: str = ""
    upstream_pricing_url: str = ""
    upstream_housekeeping_url: str = ""
    upstream_maintenance_url: str = ""
    upstream_billing_url: str = ""
    upstream_lock_url: str = ""
    upstream_ai_url: str = ""
    upstream_notification_url: str = ""
    upstream_sync_url: str = ""
    upstream_analytics_url: str = ""
    # device auth and sessions (edge/auth/)
    dpop_max_age_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 60.0
    dpop_max_future_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 5.0
    rate_limit_per_minute: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 600
    heartbeat_sample_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.05
    tenant_status_ttl_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 300.0
    version_floor_refresh_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    jwks_min_refetch_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 5.0
    iam_issuer: str = "https://iam.melmastoon.internal"
    iam_audience: str = "bff-backoffice-service"
    # dashboard stream and workbench views (edge/dashboard/)
    dashboard_deadline_s: Annotated[float, msgspec.Meta(gt=0, le=30)] = 0.55
    dashboard_ttl_s: Seconds = 30.0
    dashboard_partial_ttl_s: Seconds = 5.0
    dashboard_cache_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.25
    workbench_deadline_s: Annotated[float, msgspec.Meta(gt=0, le=30)] = 0.9
    workbench_ttl_s: Seconds = 15.0
    workbench_stale_max_s: Seconds = 600.0

    @property
    def bus_kind(self) -> Literal["pubsub", "embedded"]:
        """The bus adapter to use: Pub/Sub when configured or reachable, else the embedded bus."""
        if self.bus == "auto":
            return (
                "pubsub" if self.pubsub_emulator_host or self.mode == "production" else "embedded"
            )
        return self.bus


ENV_NAMES: dict[str, str] = {
    "port": "PORT",
    "host": "BFF_HOST",
    "admin_port": "BFF_ADMIN_PORT",
    "mode": "BFF_MODE",
    "public_url": "BFF_PUBLIC_URL",
    "database_url": "BFF_DATABASE_URL",
    "db_pool_min": "BFF_DB_POOL_MIN",
    "db_pool_max": "BFF_DB_POOL_MAX",
    "redis_cache_url": "BFF_REDIS_CACHE_URL",
    "redis_session_url": "BFF_REDIS_SESSION_URL",
    "redis_prefix": "BFF_REDIS_PREFIX",
    "sim_url": "SIM_URL",
    "bus": "BFF_BUS",
    "pubsub_emulator_host": "PUBSUB_EMULATOR_HOST",
    "pubsub_project": "BFF_PUBSUB_PROJECT",
    "log_level": "BFF_LOG_LEVEL",
    "max_body_bytes": "BFF_MAX_BODY_BYTES",
    "keepalive_timeout_s": "BFF_KEEPALIVE_TIMEOUT_S",
    "shutdown_grace_s": "BFF_SHUTDOWN_GRACE_S",
    "dependency_timeout_s": "BFF_DEPENDENCY_TIMEOUT_S",
    "instance_id": "BFF_INSTANCE_ID",
    "enable_test_routes": "BFF_ENABLE_TEST_ROUTES",
    "actor_mailbox_size": "BFF_ACTOR_MAILBOX_SIZE",
    "actor_tell_timeout_s": "BFF_ACTOR_TELL_TIMEOUT_S",
    "actor_ask_timeout_s": "BFF_ACTOR_ASK_TIMEOUT_S",
    "actor_idle_s": "BFF_ACTOR_IDLE_S",
    "actor_restart_min_s": "BFF_ACTOR_RESTART_MIN_S",
    "actor_restart_max_s": "BFF_ACTOR_RESTART_MAX_S",
    "actor_restart_jitter": "BFF_ACTOR_RESTART_JITTER",
    "actor_max_restarts": "BFF_ACTOR_MAX_RESTARTS",
    "actor_restart_window_s": "BFF_ACTOR_RESTART_WINDOW_S",
    "actor_failed_hold_s": "BFF_ACTOR_FAILED_HOLD_S",
    "actor_max_active": "BFF_ACTOR_MAX_ACTIVE",
    "ledger_max_batch": "BFF_LEDGER_MAX_BATCH",
    "ledger_retention_days": "BFF_LEDGER_RETENTION_DAYS",
    "ledger_retention_interval_s": "BFF_LEDGER_RETENTION_INTERVAL_S",
    "ledger_retention_batch": "BFF_LEDGER_RETENTION_BATCH",
    "relay_enabled": "BFF_RELAY_ENABLED",
    "relay_batch": "BFF_RELAY_BATCH",
    "relay_poll_s": "BFF_RELAY_POLL_S",
    "relay_backoff_max_s": "BFF_RELAY_BACKOFF_MAX_S",
    "bus_publish_timeout_s": "BFF_BUS_PUBLISH_TIMEOUT_S",
    "bus_stream_maxlen": "BFF_BUS_STREAM_MAXLEN",
    "bus_subscription_ttl_s": "BFF_BUS_SUBSCRIPTION_TTL_S",
    "subscriber_enabled": "BFF_SUBSCRIBER_ENABLED",
    "subscriber_max_attempts": "BFF_SUBSCRIBER_MAX_ATTEMPTS",
    "subscriber_handler_timeout_s": "BFF_SUBSCRIBER_HANDLER_TIMEOUT_S",
    "upstream_auth": "BFF_UPSTREAM_AUTH",
    "metadata_url": "BFF_METADATA_URL",
    "breaker_failures": "BFF_BREAKER_FAILURES",
    "breaker_open_s": "BFF_BREAKER_OPEN_S",
    "upstream_concurrency": "BFF_UPSTREAM_CONCURRENCY",
    "upstream_iam_url": "BFF_UPSTREAM_IAM_URL",
    "upstream_tenant_url": "BFF_UPSTREAM_TENANT_URL",
    "upstream_property_url": "BFF_UPSTREAM_PROPERTY_URL",
    "upstream_reservation_url": "BFF_UPSTREAM_RESERVATION_URL",
    "upstream_inventory_url": "BFF_UPSTREAM_INVENTORY_URL",
    "upstream_pricing_url": "BFF_UPSTREAM_PRICING_URL",
    "upstream_housekeeping_url": "BFF_UPSTREAM_HOUSEKEEPING_URL",
    "upstream_maintenance_url": "BFF_UPSTREAM_MAINTENANCE_URL",
    "upstream_billing_url": "BFF_UPSTREAM_BILLING_URL",
    "upstream_lock_url": "BFF_UPSTREAM_LOCK_URL",
    "upstream_ai_url": "BFF_UPSTREAM_AI_URL",
    "upstream_notification_url": "BFF_UPSTREAM_NOTIFICATION_URL",
    "upstream_sync_url": "BFF_UPSTREAM_SYNC_URL",
    "upstream_analytics_url": "BFF_UPSTREAM_ANALYTICS_URL",
    "dpop_max_age_s": "BFF_DPOP_MAX_AGE_S",
    "dpop_max_future_s": "BFF_DPOP_MAX_FUTURE_S",
    "rate_limit_per_minute": "BFF_RATE_LIMIT_PER_MINUTE",
    "heartbeat_sample_rate": "BFF_HEARTBEAT_SAMPLE_RATE",
    "tenant_status_ttl_s": "BFF_TENANT_STATUS_TTL_S",
    "version_floor_refresh_s": "BFF_VERSION_FLOOR_REFRESH_S",
    "jwks_min_refetch_s": "BFF_JWKS_MIN_REFETCH_S",
    "iam_issuer": "BFF_IAM_ISSUER",
    "iam_audience": "BFF_IAM_AUDIENCE",
    "dashboard_deadline_s": "BFF_DASHBOARD_DEADLINE_S",
    "dashboard_ttl_s": "BFF_DASHBOARD_TTL_S",
    "dashboard_partial_ttl_s": "BFF_DASHBOARD_PARTIAL_TTL_S",
    "dashboard_cache_timeout_s": "BFF_DASHBOARD_CACHE_TIMEOUT_S",
    "workbench_deadline_s": "BFF_WORKBENCH_DEADLINE_S",
    "workbench_ttl_s": "BFF_WORKBENCH_TTL_S",
    "workbench_stale_max_s": "BFF_WORKBENCH_STALE_MAX_S",
}

_URL_FIELDS = {
    "database_url": ("postgres://", "postgresql://"),
    "redis_cache_url": ("redis://", "rediss://", "unix://"),
    "redis_session_url": ("redis://", "rediss://", "unix://"),
    "sim_url": ("http://", "https://"),
    "metadata_url": ("http://", "https://"),
    "upstream_iam_url": ("http://", "https://"),
    "upstream_tenant_url": ("http://", "https://"),
    "upstream_property_url": ("http://", "https://"),
    "upstream_reservation_url": ("http://", "https://"),
    "upstream_inventory_url": ("http://", "https://"),
    "upstream_pricing_url": ("http://", "https://"),
    "upstream_housekeeping_url": ("http://", "https://"),
    "upstream_maintenance_url": ("http://", "https://"),
    "upstream_billing_url": ("http://", "https://"),
    "upstream_lock_url": ("http://", "https://"),
    "upstream_ai_url": ("http://", "https://"),
    "upstream_notification_url": ("http://", "https://"),
    "upstream_sync_url": ("http://", "https://"),
    "upstream_analytics_url": ("http://", "https://"),
}


class SettingsError(ValueError):
    """A variable has a value the service cannot run with; the message names the variable."""


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    raw: dict[str, str] = {f: env[v] for f, v in ENV_NAMES.items() if env.get(v, "") != ""}
    for field, prefixes in _URL_FIELDS.items():
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
    if settings.db_pool_min > settings.db_pool_max:
        raise SettingsError("BFF_DB_POOL_MIN must not exceed BFF_DB_POOL_MAX")
    return settings


def redact_url(url: str) -> str:
    """Hide a password in a URL so it never reaches a message or a log line."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
