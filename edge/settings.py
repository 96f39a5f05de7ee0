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
    actor_max_active: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100_000

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
    "actor_max_active": "BFF_ACTOR_MAX_ACTIVE",
}

_URL_FIELDS = {
    "database_url": ("postgres://", "postgresql://"),
    "redis_cache_url": ("redis://", "rediss://", "unix://"),
    "redis_session_url": ("redis://", "rediss://", "unix://"),
    "sim_url": ("http://", "https://"),
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
