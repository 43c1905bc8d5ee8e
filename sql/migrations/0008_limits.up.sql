-- Conveyor schema, version 8: queue limits enforced in the database (rate limits, concurrency
-- caps, and both per key inside a queue). The design and its invariants are written at the top
-- of sql/queries/limits.sql; this file holds the functions.
--
-- claim_limited_v1   claims from one limited queue under its row's lock.
-- window_used_v1, window_push_v1, window_reopens_v1  sliding windows of start times.
-- set_queue_limits_v1 (and set_queue_limits)  sets or clears a queue's limits.

-- A window is kept run-length encoded: counts[i] jobs started at starts[i] (one entry per
-- claim, not per job), oldest first, so a limit of 100,000 a second costs a claim a few
-- dozen entries, not 100,000.
ALTER TABLE rate_windows ADD COLUMN counts integer[] NOT NULL DEFAULT '{}';
UPDATE rate_windows SET counts = array_fill(1, ARRAY[cardinality(starts)]) WHERE cardinality(starts) > 0;
COMMENT ON COLUMN rate_windows.counts IS
    'How many jobs started at each of starts (counts[i] at starts[i]): one entry per claim.';

-- How many starts of a window lie in (at - period, at].
CREATE FUNCTION window_used_v1(starts timestamptz[], counts integer[], at timestamptz, period interval)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(sum(u.c), 0)::integer
    FROM unnest(starts, counts) AS u (s, c)
    WHERE u.s > at - period AND u.s <= at;
$$;
COMMENT ON FUNCTION window_used_v1(timestamptz[], integer[], timestamptz, interval) IS
    'The starts of a rate window within the period ending at `at`.';

-- A window after n starts at `at`: the entries still within the period, then (at, n), the
-- newest `size` starts of them (the oldest entry kept in part if need be). A window never
-- holds more than its limit's count, and never a start that left the period.
CREATE FUNCTION window_push_v1(starts timestamptz[], counts integer[], at timestamptz, n integer,
                               period interval, size integer,
                               OUT new_starts timestamptz[], OUT new_counts integer[])
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(e.s ORDER BY e.i), '{}'), coalesce(array_agg(e.kept ORDER BY e.i), '{}')
    FROM (
        SELECT u.s, u.i, least(u.c, size - (sum(u.c) OVER (ORDER BY u.i DESC) - u.c))::integer AS kept
        FROM unnest(starts || at, counts || n) WITH ORDINALITY AS u (s, c, i)
        WHERE u.s > at - period AND u.s <= at AND u.c > 0
    ) AS e
    WHERE e.kept > 0;
$$;
COMMENT ON FUNCTION window_push_v1(timestamptz[], integer[], timestamptz, integer, interval, integer) IS
    'A rate window after n starts at `at`: the entries still within period, then the new one, '
    'the newest `size` starts of them, oldest first.';

-- When a full window (`size` starts within the period ending at `at`) lets one more start:
-- the entry that brings the count of its newer entries up to `size` leaves the period.
-- NULL when the window is not full.
CREATE FUNCTION window_reopens_v1(starts timestamptz[], counts integer[], at timestamptz, period interval,
                                  size integer) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT max(e.s) + period
    FROM (
        SELECT u.s, sum(u.c) OVER (ORDER BY u.i DESC) AS newer
        FROM unnest(starts, counts) WITH ORDINALITY AS u (s, c, i)
        WHERE u.s > at - period AND u.s <= at
    ) AS e
    WHERE e.newer >= size;
$$;
COMMENT ON FUNCTION window_reopens_v1(timestamptz[], integer[], timestamptz, interval, integer) IS
    'When a full rate window lets one more start (NULL: it is not full).';

-- Claim up to max_jobs jobs from one queue within its limits. Returns the claimed jobs (the
-- columns of the plain claim, next_at, checked_at and held_by NULL) and, when a limit (not a
-- lack of jobs) held jobs back, one more row whose id is NULL: next_at is the earliest time
-- a held job may start (the queue's window reopens, or the first held key's), NULL when it
-- waits for a running job to end; checked_at is the clock the claim used; held_by says
-- which limits held: 'queue' (the queue's own: no job of it, new or not, starts before
-- next_at or a running job's end) or 'keys' (only per-key limits: a new job of another key
-- may start at once). after_*: the worker's cursors for this queue's priority levels (as
-- claim_jobs takes them), used where the queue has no per-key limits. See
-- sql/queries/limits.sql for the design.
CREATE FUNCTION claim_limited_v1(
    queue_name  text,
    max_jobs    integer,
    worker      uuid,
    lease       interval,
    at          timestamptz DEFAULT NULL,
    after_priorities  smallint[] DEFAULT NULL,
    after_run_ats     timestamptz[] DEFAULT NULL,
    after_ids         bigint[] DEFAULT NULL
) RETURNS TABLE (
    id bigint, claims integer, queue text, task text, args jsonb, attempt integer,
    max_attempts integer, priority smallint, enqueued_at timestamptz, run_at timestamptz,
    next_at timestamptz, checked_at timestamptz, held_by text
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    q            record;
    seen_at      timestamptz;
    clock        timestamptz;
    allowance    integer;
    running      integer := 0;
    queue_starts timestamptz[] := '{}';
    queue_counts integer[] := '{}';
    keyed        boolean;
    picked       bigint[];
    taken        bigint[];
    taken_count  integer;
    held_keys    text[] := '{}';
    queue_held   boolean := false;
    wake         timestamptz;
    slot_wait    boolean := false;
BEGIN
    IF max_jobs IS NULL OR max_jobs < 1 THEN
        RAISE EXCEPTION 'claim_limited_v1: max_jobs must be at least 1 (got %)', max_jobs
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The queue's row lock serializes the claims of this queue, and only of this queue: every
    -- count below stays true until this transaction ends.
    SELECT * INTO q FROM queues WHERE queues.name = queue_name FOR UPDATE;
    IF NOT FOUND OR q.paused OR EXISTS (SELECT 1 FROM pauses p WHERE p.scope = 'all') THEN
        RETURN;
    END IF;
    -- Two readings of the clock, both after the lock, so the claims of a queue see ever later
    -- clocks and windows stay ordered. Windows are judged at seen_at; the jobs are stamped
    -- (and windows charged) at clock, read after every count below: a job counted as ended
    -- had ended before that count's snapshot, so no start is stamped before the end of a job
    -- it replaced. Judging a window at the earlier time is conservative: starts only leave
    -- it between the two readings, none enter (the lock is held).
    seen_at := coalesce(at, clock_timestamp());
    keyed := q.key_rate_limit IS NOT NULL OR q.key_concurrency IS NOT NULL;

    allowance := max_jobs;
    IF q.concurrency IS NOT NULL THEN
        -- Running jobs are few (bounded by the workers' slots) and indexed by jobs_leases.
        SELECT count(*) INTO running FROM jobs j WHERE j.state = 'running' AND j.queue = queue_name;
        allowance := least(allowance, q.concurrency - running);
    END IF;
    IF q.rate_limit IS NOT NULL THEN
        SELECT w.starts, w.counts INTO queue_starts, queue_counts
        FROM rate_windows w WHERE w.queue = queue_name AND w.key = '';
        queue_starts := coalesce(queue_starts, '{}');
        queue_counts := coalesce(queue_counts, '{}');
        allowance := least(allowance,
                           q.rate_limit - window_used_v1(queue_starts, queue_counts, seen_at, q.rate_period));
    END IF;
    allowance := greatest(allowance, 0);

    IF allowance = 0 THEN
        taken := '{}';
    ELSIF NOT keyed THEN
        -- As claim_jobs reads a queue: each priority level from the worker's cursor (its last
        -- claim's key there, a hint: see conveyor.queue.cursors), levels in order and only as
        -- far as needed, locking only the rows taken.
        SELECT coalesce(array_agg(c.id), '{}') INTO taken FROM (
            SELECT l.id
            FROM unnest(ARRAY[0, 1, 2, 3]::smallint[]) AS p (priority)
            CROSS JOIN LATERAL (
                SELECT coalesce(max(a.run_at), '-infinity') AS run_at, coalesce(max(a.id), 0) AS id
                FROM unnest(after_priorities, after_run_ats, after_ids) AS a (priority, run_at, id)
                WHERE a.priority = p.priority
            ) AS cursor
            CROSS JOIN LATERAL (
                SELECT j.id FROM jobs j
                WHERE j.state = 'available' AND j.queue = queue_name AND j.priority = p.priority
                  AND (j.run_at, j.id) > (cursor.run_at, cursor.id)
                  AND NOT EXISTS (SELECT 1 FROM pauses ps WHERE ps.scope = 'task' AND ps.name = j.task)
                ORDER BY j.run_at, j.id
                LIMIT allowance
                FOR UPDATE OF j SKIP LOCKED
            ) AS l
            LIMIT allowance
        ) AS c;
    ELSE
        -- Each key with waiting jobs (a loose index scan of jobs_key_claim: one probe per key,
        -- however long its backlog) gets its share, read from the head of its own range, plus
        -- one row more to learn whether the key holds jobs back.
        WITH RECURSIVE keys AS (
            (SELECT j.key FROM jobs j
             WHERE j.state = 'available' AND j.queue = queue_name AND j.key IS NOT NULL
             ORDER BY j.key LIMIT 1)
            UNION ALL
            SELECT (SELECT j.key FROM jobs j
                    WHERE j.state = 'available' AND j.queue = queue_name AND j.key IS NOT NULL
                      AND j.key > k.key
                    ORDER BY j.key LIMIT 1)
            FROM keys k WHERE k.key IS NOT NULL
        ), key_running AS (
            SELECT j.key, count(*)::integer AS n FROM jobs j
            WHERE j.state = 'running' AND j.queue = queue_name AND j.key IS NOT NULL
              AND q.key_concurrency IS NOT NULL
            GROUP BY j.key
        ), shares AS (
            SELECT k.key,
                   greatest(0, least(
                       allowance,
                       q.key_concurrency - coalesce(r.n, 0),
                       q.key_rate_limit - coalesce(
                           (SELECT window_used_v1(w.starts, w.counts, seen_at, q.key_rate_period)
                            FROM rate_windows w WHERE w.queue = queue_name AND w.key = k.key), 0)
                   )) AS n
            FROM keys k
            LEFT JOIN key_running r ON r.key = k.key
            WHERE k.key IS NOT NULL
        ), candidates AS MATERIALIZED (
        -- A key with no share holds jobs back (the walk found one waiting): it is not read.
        SELECT c.id, c.priority, c.run_at, s.key, c.rank > s.n AS held
        FROM shares s
        CROSS JOIN LATERAL (
            SELECT j.id, j.priority, j.run_at, row_number() OVER (ORDER BY j.priority, j.run_at, j.id) AS rank
            FROM (
                SELECT j.id, j.priority, j.run_at FROM jobs j
                WHERE j.state = 'available' AND j.queue = queue_name AND j.key = s.key
                  AND NOT EXISTS (SELECT 1 FROM pauses p WHERE p.scope = 'task' AND p.name = j.task)
                ORDER BY j.priority, j.run_at, j.id
                LIMIT s.n + 1
            ) AS j
        ) AS c
        WHERE s.n > 0
        UNION ALL
        -- Jobs without a key count against the queue's limits only. They are looked for among
        -- the first 256 waiting jobs of the queue (the claim index has no key to skip by).
        SELECT h.id, h.priority, h.run_at, NULL, false
        FROM (
            SELECT j.id, j.priority, j.run_at, j.key, j.task FROM jobs j
            WHERE j.state = 'available' AND j.queue = queue_name
            ORDER BY j.priority, j.run_at, j.id
            LIMIT 256
        ) AS h
        WHERE h.key IS NULL
          AND NOT EXISTS (SELECT 1 FROM pauses p WHERE p.scope = 'task' AND p.name = h.task)
        )
        SELECT ARRAY(SELECT c.key FROM candidates c WHERE c.held UNION SELECT s.key FROM shares s WHERE s.n = 0),
               ARRAY(SELECT c.id FROM candidates c WHERE NOT c.held
                     ORDER BY c.priority, c.run_at, c.id LIMIT allowance)
        INTO held_keys, picked;
        -- Merged across keys in (priority, run_at, id) order; only the rows taken are locked.
        SELECT coalesce(array_agg(l.id), '{}') INTO taken FROM (
            SELECT j.id FROM jobs j
            WHERE j.id = ANY (picked) AND j.state = 'available'
            FOR UPDATE SKIP LOCKED
        ) AS l;
    END IF;

    clock := coalesce(at, clock_timestamp());
    RETURN QUERY
    UPDATE jobs j
    SET state = 'running',
        attempt = j.attempt + 1,
        claims = j.claims + 1,
        worker_id = claim_limited_v1.worker,
        started_at = clock,
        lease_expires_at = clock + claim_limited_v1.lease
    WHERE j.id = ANY (taken)
    RETURNING j.id::bigint, j.claims::integer, j.queue::text, j.task::text, j.args::jsonb, j.attempt::integer,
              j.max_attempts::integer, j.priority::smallint, j.enqueued_at::timestamptz,
              j.run_at::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::text;
    taken_count := cardinality(taken);

    -- Tokens are charged for the jobs taken, and only for them.
    IF q.rate_limit IS NOT NULL AND taken_count > 0 THEN
        SELECT p.new_starts, p.new_counts INTO queue_starts, queue_counts
        FROM window_push_v1(queue_starts, queue_counts, clock, taken_count, q.rate_period, q.rate_limit) AS p;
        INSERT INTO rate_windows AS w (queue, key, starts, counts)
        VALUES (queue_name, '', queue_starts, queue_counts)
        ON CONFLICT (queue, key) DO UPDATE SET starts = EXCLUDED.starts, counts = EXCLUDED.counts;
    END IF;
    IF q.key_rate_limit IS NOT NULL AND taken_count > 0 THEN
        INSERT INTO rate_windows AS w (queue, key, starts, counts)
        SELECT queue_name, t.key, ARRAY[clock], ARRAY[t.n]
        FROM (SELECT j.key, count(*)::integer AS n FROM jobs j
              WHERE j.id = ANY (taken) AND j.key IS NOT NULL GROUP BY j.key) AS t
        ON CONFLICT (queue, key) DO UPDATE
        SET (starts, counts) = (
            SELECT p.new_starts, p.new_counts
            FROM window_push_v1(w.starts, w.counts, clock, EXCLUDED.counts[1], q.key_rate_period,
                                q.key_rate_limit) AS p);
    END IF;

    -- Did a limit hold jobs back? The queue's, when it allowed less than asked and every job
    -- it allowed was taken with more waiting; a key's, when it had more than its share.
    IF allowance < max_jobs AND taken_count >= allowance THEN
        queue_held := EXISTS (SELECT 1 FROM jobs j WHERE j.state = 'available' AND j.queue = queue_name);
    END IF;
    IF queue_held THEN
        IF q.concurrency IS NOT NULL AND q.concurrency - running - taken_count <= 0 THEN
            slot_wait := true;  -- a running job's end frees the next start
        ELSIF q.rate_limit IS NOT NULL THEN
            wake := window_reopens_v1(queue_starts, queue_counts, clock, q.rate_period, q.rate_limit);
        END IF;
    ELSIF cardinality(held_keys) > 0 THEN
        IF q.key_rate_limit IS NOT NULL THEN
            SELECT min(window_reopens_v1(w.starts, w.counts, clock, q.key_rate_period, q.key_rate_limit))
            INTO wake
            FROM rate_windows w
            WHERE w.queue = queue_name AND w.key = ANY (held_keys);
        END IF;
        slot_wait := wake IS NULL;
    END IF;
    IF taken_count < max_jobs AND (queue_held OR cardinality(held_keys) > 0) THEN
        RETURN QUERY SELECT NULL::bigint, NULL::integer, queue_name, NULL::text, NULL::jsonb,
                            NULL::integer, NULL::integer, NULL::smallint, NULL::timestamptz,
                            NULL::timestamptz, CASE WHEN slot_wait THEN NULL ELSE wake END, clock,
                            CASE WHEN queue_held THEN 'queue' ELSE 'keys' END;
    END IF;
END;
$$;
COMMENT ON FUNCTION claim_limited_v1(text, integer, uuid, interval, timestamptz, smallint[], timestamptz[], bigint[]) IS
    'Claim from one limited queue under its row''s lock, within its rate and concurrency limits '
    'and those of each key; a last row with a NULL id says a limit held jobs back, and until when.';

CREATE FUNCTION set_queue_limits_v1(
    queue            text,
    rate_limit       integer DEFAULT NULL,
    rate_period      interval DEFAULT NULL,
    concurrency      integer DEFAULT NULL,
    key_rate_limit   integer DEFAULT NULL,
    key_rate_period  interval DEFAULT NULL,
    key_concurrency  integer DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_variable
BEGIN
    IF queue IS NULL OR queue !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,126}$' THEN
        RAISE EXCEPTION 'set_queue_limits_v1: queue name % is not allowed', quote_nullable(queue)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (rate_limit IS NULL) <> (rate_period IS NULL) THEN
        RAISE EXCEPTION 'set_queue_limits_v1: rate_limit and rate_period go together (give both or neither)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (key_rate_limit IS NULL) <> (key_rate_period IS NULL) THEN
        RAISE EXCEPTION 'set_queue_limits_v1: key_rate_limit and key_rate_period go together (give both or neither)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rate_limit NOT BETWEEN 1 AND 100000 OR key_rate_limit NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'set_queue_limits_v1: a rate limit must be between 1 and 100000 starts per period'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rate_period <= interval '0' OR key_rate_period <= interval '0' THEN
        RAISE EXCEPTION 'set_queue_limits_v1: a rate period must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The claim computes with the period (a window's start minus it, a reopen plus it): a
    -- period past a year is refused rather than left to fail every claim of the queue. Months
    -- compare as 30 days.
    IF rate_period NOT BETWEEN interval '1 millisecond' AND interval '365 days'
       OR key_rate_period NOT BETWEEN interval '1 millisecond' AND interval '365 days' THEN
        RAISE EXCEPTION 'set_queue_limits_v1: a rate period must be between 1 millisecond and 365 days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF concurrency < 1 OR key_concurrency < 1 THEN
        RAISE EXCEPTION 'set_queue_limits_v1: a concurrency cap must be at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF concurrency > 1000000 OR key_concurrency > 1000000 THEN
        RAISE EXCEPTION 'set_queue_limits_v1: a concurrency cap must be at most 1000000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO queues AS q (name, rate_limit, rate_period, concurrency, key_rate_limit, key_rate_period,
                             key_concurrency)
    VALUES (queue, rate_limit, rate_period, concurrency, key_rate_limit, key_rate_period, key_concurrency)
    ON CONFLICT ON CONSTRAINT queues_pkey DO UPDATE
    SET rate_limit = EXCLUDED.rate_limit, rate_period = EXCLUDED.rate_period,
        concurrency = EXCLUDED.concurrency, key_rate_limit = EXCLUDED.key_rate_limit,
        key_rate_period = EXCLUDED.key_rate_period, key_concurrency = EXCLUDED.key_concurrency,
        updated_at = now();
    -- A cleared limit's windows would only mislead a later one.
    DELETE FROM rate_windows w
    WHERE w.queue = set_queue_limits_v1.queue
      AND ((w.key = '' AND rate_limit IS NULL) OR (w.key <> '' AND key_rate_limit IS NULL));
    -- Workers read which of their queues are limited again, and claim.
    PERFORM pg_notify(current_schema(), '#limits');
END;
$$;
COMMENT ON FUNCTION set_queue_limits_v1(text, integer, interval, integer, integer, interval, integer) IS
    'Set a queue''s limits (NULL: none); creates the queue if missing and wakes the workers.';

-- == The names without a version: wrappers over the current version =====================

DO $wrappers$
BEGIN
    EXECUTE format($sql$
CREATE OR REPLACE FUNCTION %1$I.set_queue_limits(
    queue            text,
    rate_limit       integer DEFAULT NULL,
    rate_period      interval DEFAULT NULL,
    concurrency      integer DEFAULT NULL,
    key_rate_limit   integer DEFAULT NULL,
    key_rate_period  interval DEFAULT NULL,
    key_concurrency  integer DEFAULT NULL
) RETURNS void
LANGUAGE sql
AS $body$
    SELECT %1$I.set_queue_limits_v1(set_queue_limits.queue, set_queue_limits.rate_limit,
                                    set_queue_limits.rate_period, set_queue_limits.concurrency,
                                    set_queue_limits.key_rate_limit, set_queue_limits.key_rate_period,
                                    set_queue_limits.key_concurrency);
$body$;
$sql$, current_schema());
END;
$wrappers$;
