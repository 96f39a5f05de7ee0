-- Alert acknowledgements (ledger.alert_acks): the first acknowledgement of each alert, durable
-- before notification-service hears of it, and the outbox of that forward. A row is claimed by
-- one instance at a time: claiming moves next_attempt_at past now() (the lease), under
-- FOR UPDATE SKIP LOCKED.
CREATE TABLE alert_acks (
    tenant           text        NOT NULL,
    alert_id         text        NOT NULL,
    property_id      text        NOT NULL,
    operator_id      text        NOT NULL,
    device_id        text        NOT NULL,
    acknowledged_at  timestamptz NOT NULL,
    forwarded_at     timestamptz,            -- notification-service has it (or refused it for good)
    forward_outcome  text,                   -- 'acknowledged', or 'rejected:<status> <code>'
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    PRIMARY KEY (tenant, alert_id)
);

-- The forwarder's work queue: only rows still to forward, in the order they fall due.
CREATE INDEX alert_acks_unforwarded ON alert_acks (next_attempt_at) WHERE forwarded_at IS NULL;

-- The alert list's overlay: a property's acknowledgements.
CREATE INDEX alert_acks_by_property ON alert_acks (tenant, property_id, acknowledged_at DESC);
