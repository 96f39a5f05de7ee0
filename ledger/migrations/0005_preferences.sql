-- OperatorPreferences mirror (SERVICE_OVERVIEW §3; ledger.preferences): tenant-service's copy of
-- each operator's preferences, written only after tenant-service accepted a change or answered a
-- read (FAILURE_MODES F-36), and served while it is down. ``shortcuts`` holds the operator's
-- keyboard-shortcut overrides (chord -> action; the defaults live in edge/shortcuts.py).
-- A row never moves back to an older ``version``.
CREATE TABLE operator_preferences (
    tenant       text        NOT NULL,
    operator_id  text        NOT NULL,
    layout       text        NOT NULL,
    density      text        NOT NULL,
    columns      jsonb       NOT NULL DEFAULT '{}',
    shortcuts    jsonb       NOT NULL DEFAULT '{}',
    version      bigint      NOT NULL,
    updated_at   timestamptz NOT NULL,  -- tenant-service's, for this version
    synced_at    timestamptz NOT NULL,  -- when tenant-service last confirmed this copy
    PRIMARY KEY (tenant, operator_id)
);
