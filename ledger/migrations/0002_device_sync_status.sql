-- DeviceSyncStatus (SERVICE_OVERVIEW §3): one row per device, upserted on every heartbeat and
-- cursor advance. The ledger keeps the sampled heartbeat telemetry; this is the current state.
CREATE TABLE device_sync_status (
    tenant           text        NOT NULL,
    device_id        text        NOT NULL,
    last_seen_at     timestamptz NOT NULL,
    app_version      text,
    operator_id      text,
    heartbeat_count  bigint      NOT NULL DEFAULT 0,
    recent_commands  text[]      NOT NULL DEFAULT '{}',  -- heartbeat retries are counted once
    cursor_version   text,
    cursor_at        timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, device_id)
);
