-- Idempotency keys (ledger.idempotency): one row per (tenant, device, Idempotency-Key), kept
-- BFF_IDEMPOTENCY_TTL_S (24 h). A row is either in flight (a request holds it until
-- lease_until; `token` names that claim, and only it may complete or release the row) or done
-- (the final response, replayed to every retry whose fingerprint matches).
CREATE TABLE idempotency_keys (
    tenant        text        NOT NULL,
    device_id     text        NOT NULL,
    key           text        NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 128),
    fingerprint   bytea       NOT NULL,  -- sha256 of method, route, path params, operator, body
    state         text        NOT NULL CHECK (state IN ('in_flight', 'done')),
    token         uuid        NOT NULL,
    lease_until   timestamptz NOT NULL,
    status        smallint,
    content_type  text,
    headers       jsonb,                 -- [[name, value], ...] replayed with the body
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant, device_id, key),
    CHECK (state = 'in_flight' OR (status IS NOT NULL AND content_type IS NOT NULL
                                   AND body IS NOT NULL))
);

-- The hourly cleanup deletes the oldest expired rows first, in bounded batches.
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- One round trip decides what a request with a key may do:
--   claimed     no live row (none, or one past expires_at): this request runs
--   taken_over  an in-flight row of the same request whose lease ran out (its holder crashed):
--               this request runs again; the key it forwards is absorbed upstream (F-32)
--   replay      the same request is done: answer its stored response
--   in_flight   the same request is running elsewhere and its lease holds (lease_left_s)
--   reused      the key belongs to a different request
-- Each SQL statement inside a plpgsql function takes a fresh snapshot (READ COMMITTED), so a
-- concurrent first claim that made the INSERT do nothing is visible to the SELECT after it.
CREATE FUNCTION idempotency_claim(
    p_tenant      text,
    p_device      text,
    p_key         text,
    p_fingerprint bytea,
    p_token       uuid,
    p_lease_s     double precision,
    p_ttl_s       double precision
) RETURNS TABLE (
    outcome             text,
    lease_left_s        double precision,
    stored_status       smallint,
    stored_content_type text,
    stored_headers      jsonb,
    stored_body         bytea
) LANGUAGE plpgsql AS $$
DECLARE
    held idempotency_keys%ROWTYPE;
    lease timestamptz := now() + make_interval(secs => p_lease_s);
BEGIN
    LOOP
        INSERT INTO idempotency_keys AS k
            (tenant, device_id, key, fingerprint, state, token, lease_until, expires_at)
        VALUES (p_tenant, p_device, p_key, p_fingerprint, 'in_flight', p_token, lease,
                now() + make_interval(secs => p_ttl_s))
        ON CONFLICT (tenant, device_id, key) DO NOTHING;
        IF FOUND THEN
            RETURN QUERY SELECT 'claimed', NULL::float8, NULL::smallint, NULL::text,
                                NULL::jsonb, NULL::bytea;
            RETURN;
        END IF;
        SELECT * INTO held FROM idempotency_keys AS k
         WHERE k.tenant = p_tenant AND k.device_id = p_device AND k.key = p_key
           FOR UPDATE;
        EXIT WHEN FOUND;  -- else it was released or pruned in between: insert again
    END LOOP;

    IF held.expires_at <= now() THEN  -- forgotten, whether or not the cleanup has run yet
        UPDATE idempotency_keys AS k
           SET fingerprint = p_fingerprint, state = 'in_flight', token = p_token,
               lease_until = lease, status = NULL, content_type = NULL, headers = NULL,
               body = NULL, created_at = now(), completed_at = NULL,
               expires_at = now() + make_interval(secs => p_ttl_s)
         WHERE k.tenant = p_tenant AND k.device_id = p_device AND k.key = p_key;
        RETURN QUERY SELECT 'claimed', NULL::float8, NULL::smallint, NULL::text,
                            NULL::jsonb, NULL::bytea;
    ELSIF held.fingerprint <> p_fingerprint THEN
        RETURN QUERY SELECT 'reused', NULL::float8, NULL::smallint, NULL::text,
                            NULL::jsonb, NULL::bytea;
    ELSIF held.state = 'done' THEN
        RETURN QUERY SELECT 'replay', NULL::float8, held.status, held.content_type,
                            held.headers, held.body;
    ELSIF held.lease_until > now() THEN
        RETURN QUERY SELECT 'in_flight', extract(epoch FROM held.lease_until - now())::float8,
                            NULL::smallint, NULL::text, NULL::jsonb, NULL::bytea;
    ELSE
        UPDATE idempotency_keys AS k SET token = p_token, lease_until = lease
         WHERE k.tenant = p_tenant AND k.device_id = p_device AND k.key = p_key;
        RETURN QUERY SELECT 'taken_over', NULL::float8, NULL::smallint, NULL::text,
                            NULL::jsonb, NULL::bytea;
    END IF;
END
$$;
