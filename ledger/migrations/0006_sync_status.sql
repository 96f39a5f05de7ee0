-- DeviceSyncStatus grows the sync cursor cache, the heartbeat's sync fields and the
-- OfflineActionQueueHint (SERVICE_OVERVIEW §3; issue #13 item 5).
--
-- cursor_version becomes sync-service's integer cursor (it was text and never written): the
-- comparison "never moves backwards" is integer order. cursor_revision counts every change of
-- the cursor, so the Redis copy (edge/sync_cursors.py) keeps the newest revision whatever order
-- two instances' writes arrive in, and a handshake's reset can be a compare-and-set.
ALTER TABLE device_sync_status
    ALTER COLUMN cursor_version TYPE bigint
        USING (CASE WHEN cursor_version ~ '^[0-9]{1,18}$' THEN cursor_version::bigint END),
    ADD COLUMN cursor_revision   bigint      NOT NULL DEFAULT 0,
    ADD COLUMN cursor_previous   bigint,      -- the cursor before its last change
    ADD COLUMN cursor_source     text,        -- device | heartbeat | sync_service
    ADD COLUMN online_since      timestamptz, -- the heartbeat's onlineSince
    ADD COLUMN queued_actions    integer,     -- OfflineActionQueueHint: informational only
    ADD COLUMN oldest_queued_at  timestamptz,
    ADD COLUMN hint_at           timestamptz,
    ADD CONSTRAINT device_sync_status_cursor_nonnegative CHECK (cursor_version >= 0),
    ADD CONSTRAINT device_sync_status_queued_bounded
        CHECK (queued_actions BETWEEN 0 AND 1000000);
