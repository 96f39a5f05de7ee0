-- The ledger: activity/audit log and transactional outbox in one append-only table.
-- Design notes (gap-free commit order, group commit, retention) are in ledger/appendlog.py.

CREATE TABLE ledger (
    position     bigint      PRIMARY KEY,          -- global, dense, in commit order
    event_id     uuid        NOT NULL UNIQUE,      -- dedupe key (retries, consumers)
    tenant       text        NOT NULL,
    stream       text        NOT NULL,             -- "<actor kind>:<id>"
    version      bigint      NOT NULL,             -- dense per (tenant, stream), from 1
    subject      text        NOT NULL,
    payload      jsonb       NOT NULL,
    operator_id  text,
    device_id    text,
    request_id   text,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,
    UNIQUE (tenant, stream, version)
);
CREATE INDEX ledger_tenant_position ON ledger (tenant, position);
CREATE INDEX ledger_recorded ON ledger (recorded_at);

-- The one row every append locks: positions are handed out under this row lock, so they are
-- assigned in commit order. It also survives retention (max(position) would not).
CREATE TABLE ledger_head (
    id        smallint PRIMARY KEY CHECK (id = 1),
    position  bigint   NOT NULL
);
INSERT INTO ledger_head (id, position) VALUES (1, 0);

-- Current version of every stream (optimistic concurrency without scanning the ledger; survives
-- retention, so a pruned stream never restarts at version 1).
CREATE TABLE ledger_streams (
    tenant   text   NOT NULL,
    stream   text   NOT NULL,
    version  bigint NOT NULL,
    PRIMARY KEY (tenant, stream)
);

-- Retention deletes a prefix of positions; everything <= pruned_through is gone on purpose.
CREATE TABLE ledger_retention (
    id              smallint    PRIMARY KEY CHECK (id = 1),
    pruned_through  bigint      NOT NULL,
    pruned_at       timestamptz
);
INSERT INTO ledger_retention (id, pruned_through) VALUES (1, 0);

-- How far the outbox relay has published (only advanced after the broker acknowledged).
CREATE TABLE relay_cursor (
    name        text        PRIMARY KEY,
    position    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO relay_cursor (name, position) VALUES ('bus', 0);

-- Append one group-committed batch in one statement (one round trip, one transaction).
--
-- Events arrive grouped by request (p_req: the same number for a request's contiguous events).
-- A request is all-or-nothing: if any of its expected versions is stale (compared with the
-- stream version before the request) its events get status 2; if one of its event ids is
-- already recorded for another stream, status 3. Events already recorded (a retry after an
-- unknown outcome) get status 1 and their original position/version. Appended events get 0.
CREATE FUNCTION ledger_append(
    p_req       integer[],
    p_event_id  uuid[],
    p_tenant    text[],
    p_stream    text[],
    p_subject   text[],
    p_payload   jsonb[],
    p_expected  bigint[],
    p_operator  text[],
    p_device    text[],
    p_request   text[],
    p_occurred  timestamptz[]
) RETURNS TABLE (out_position bigint, out_version bigint, out_status smallint)
LANGUAGE plpgsql AS $fn$
DECLARE
    n         integer := coalesce(cardinality(p_event_id), 0);
    v_head    bigint;
    v_now     timestamptz;
    v_slot    integer[];
    v_keys    text[] := '{}';
    v_ten     text[] := '{}';
    v_str     text[] := '{}';
    v_heads   bigint[];
    v_orig    bigint[];
    v_pos     bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    v_ver     bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    v_status  smallint[] := array_fill(0::smallint, ARRAY[n]);
    v_fail    smallint;
    v_written integer := 0;
    i integer;
    j integer;
    k integer;
    r record;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    -- 1. Serialise appenders: the row lock is held until commit, and released only after the
    --    transaction is visible, so the next appender's positions are higher and become visible
    --    later. A statement run after the lock sees everything committed before it.
    SELECT h.position INTO v_head FROM ledger_head h WHERE h.id = 1 FOR UPDATE;
    v_now := clock_timestamp();

    -- 2. Distinct streams of the batch and their versions now.
    SELECT array_agg(u.slot ORDER BY u.ord) INTO v_slot
      FROM (SELECT e.ord, dense_rank() OVER (ORDER BY e.t, e.s) AS slot
              FROM unnest(p_tenant, p_stream) WITH ORDINALITY AS e(t, s, ord)) u;
    SELECT array_agg(d.t ORDER BY d.slot), array_agg(d.s ORDER BY d.slot),
           array_agg(coalesce(ls.version, 0) ORDER BY d.slot)
      INTO v_ten, v_str, v_heads
      FROM (SELECT DISTINCT e.t, e.s, v_slot[e.ord] AS slot
              FROM unnest(p_tenant, p_stream) WITH ORDINALITY AS e(t, s, ord)) d
      LEFT JOIN ledger_streams ls ON ls.tenant = d.t AND ls.stream = d.s;
    v_orig := v_heads;

    -- 3. Events already recorded: a writer retrying after an unknown outcome.
    FOR r IN SELECT e.ord, l.position, l.version, (l.tenant = e.t AND l.stream = e.s) AS same
               FROM unnest(p_event_id, p_tenant, p_stream) WITH ORDINALITY AS e(id, t, s, ord)
               JOIN ledger l ON l.event_id = e.id
    LOOP
        v_pos[r.ord] := r.position;
        v_ver[r.ord] := r.version;
        v_status[r.ord] := CASE WHEN r.same THEN 1 ELSE 3 END;
    END LOOP;

    -- 4. Requests in order: check, then assign positions and versions.
    i := 1;
    WHILE i <= n LOOP
        j := i;
        WHILE j < n AND p_req[j + 1] = p_req[i] LOOP
            j := j + 1;
        END LOOP;
        v_fail := 0;
        FOR k IN i..j LOOP
            IF v_status[k] = 3 THEN
                v_fail := 3;
            ELSIF v_status[k] = 0 AND p_expected[k] IS NOT NULL
                  AND p_expected[k] <> v_heads[v_slot[k]] AND v_fail = 0 THEN
                v_fail := 2;
            END IF;
        END LOOP;
        FOR k IN i..j LOOP
            IF v_status[k] <> 0 THEN
                CONTINUE;
            ELSIF v_fail <> 0 THEN
                v_status[k] := v_fail;
            ELSE
                v_head := v_head + 1;
                v_heads[v_slot[k]] := v_heads[v_slot[k]] + 1;
                v_pos[k] := v_head;
                v_ver[k] := v_heads[v_slot[k]];
                v_status[k] := -1;  -- to insert (reported as 0)
                v_written := v_written + 1;
            END IF;
        END LOOP;
        i := j + 1;
    END LOOP;

    -- 5. Write rows, stream heads and the global head.
    IF v_written > 0 THEN
        INSERT INTO ledger (position, event_id, tenant, stream, version, subject, payload,
                            operator_id, device_id, request_id, occurred_at, recorded_at)
        SELECT e.pos, e.id, e.t, e.s, e.ver, e.subj, e.body, e.op, e.dev, e.req,
               coalesce(e.occ, v_now), v_now
          FROM unnest(v_pos, p_event_id, p_tenant, p_stream, v_ver, p_subject, p_payload,
                      p_operator, p_device, p_request, p_occurred, v_status)
               AS e(pos, id, t, s, ver, subj, body, op, dev, req, occ, st)
         WHERE e.st = -1;
        INSERT INTO ledger_streams AS ls (tenant, stream, version)
        SELECT h.t, h.s, h.v FROM unnest(v_ten, v_str, v_heads, v_orig) AS h(t, s, v, o)
         WHERE h.v > h.o
        ON CONFLICT (tenant, stream) DO UPDATE SET version = EXCLUDED.version;
        UPDATE ledger_head SET position = v_head WHERE id = 1;
    END IF;

    RETURN QUERY
        SELECT e.pos, e.ver, greatest(e.st, 0)::smallint
          FROM unnest(v_pos, v_ver, v_status) WITH ORDINALITY AS e(pos, ver, st, ord)
         ORDER BY e.ord;
END
$fn$;
