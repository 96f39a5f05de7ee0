-- The ledger: activity/audit log and transactional outbox in one append-only table.
CREATE TABLE ledger (
    position     bigint      PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    tenant       text        NOT NULL,
    stream       text        NOT NULL,
    version      bigint      NOT NULL,
    subject      text        NOT NULL,
    payload      jsonb       NOT NULL,
    operator_id  text,
    device_id    text,
    request_id   text,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, stream, version)
);
CREATE INDEX ledger_tenant_recorded ON ledger (tenant, recorded_at);
CREATE INDEX ledger_recorded ON ledger (recorded_at);
