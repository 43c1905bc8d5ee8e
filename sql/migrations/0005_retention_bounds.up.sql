-- Conveyor schema, version 5: retention in bounded batches, indexes for what it filters on,
-- queue_stats from a rollup instead of counts over whole tables, and the jobs table holds
-- args to the 1 MiB limit that enqueue() applies.
--
-- Building the two new indexes locks job_history and job_runs against writes while it runs
-- (acks wait); on a large history, build them per partition beforehand with CREATE INDEX
-- CONCURRENTLY (same columns) and this migration attaches them instead of building anew.

-- == args =================================================================================

-- The bytes a JSON value takes written compactly (no space after ':' or ','), as the Python
-- client measures args: jsonb's text puts a space after every ':' and every ',', one per
-- member and one per separator of every object and array.
CREATE FUNCTION compact_json_octets_v1(value jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT
SET search_path FROM CURRENT
AS $$
    SELECT octet_length(value::text) - coalesce(sum(CASE jsonb_typeof(item)
               WHEN 'object' THEN greatest(2 * (SELECT count(*) FROM jsonb_object_keys(item)) - 1, 0)
               WHEN 'array' THEN greatest(jsonb_array_length(item) - 1, 0)
           END), 0)
    FROM jsonb_path_query(value, 'strict $.**') AS item;
$$;

-- At most 1 MiB as compact JSON, as the Python client allows. The jsonb text is never
-- shorter, so the exact count runs only for args whose text passes 1 MiB. NOT VALID: rows
-- already in jobs are not rechecked (nor is the table scanned under the migration's lock);
-- every value written from now on is.
ALTER DOMAIN job_args ADD CONSTRAINT args_at_most_1_mib
    CHECK (octet_length(VALUE::text) <= 1048576 OR compact_json_octets_v1(VALUE) <= 1048576) NOT VALID;

-- == indexes =============================================================================

-- Per queue, oldest first: the row steps of retention, completed_max, the rollup and the
-- queue_stats view all read job_history (and the run log) by queue and finish time.
CREATE INDEX job_history_queue_finished ON job_history (queue, finished_at);
CREATE INDEX job_runs_queue_finished ON job_runs (queue, finished_at);

-- == the rollup behind queue_stats =======================================================

CREATE TABLE finished_counts (
    queue      text NOT NULL,
    bucket     timestamptz NOT NULL,
    completed  bigint NOT NULL,
    cancelled  bigint NOT NULL,
    PRIMARY KEY (queue, bucket)
);
COMMENT ON TABLE finished_counts IS
    'Finished jobs counted per queue and 5-minute bucket of finish time, by count_finished_v1 '
    '(retention runs it); queue_stats adds the rows finished since. Kept two days.';

CREATE TABLE finished_counts_mark (
    only_row    boolean PRIMARY KEY DEFAULT true CONSTRAINT one_row CHECK (only_row),
    counted_to  timestamptz
);
COMMENT ON TABLE finished_counts_mark IS
    'Finish times before counted_to are in finished_counts (NULL: nothing counted yet).';
INSERT INTO finished_counts_mark DEFAULT VALUES;

-- Counts the 5-minute buckets after the mark that ended a minute or more before at (a
-- completion written later than that into a bucket already counted is missed), at most
-- spans buckets per call; nothing older than 24 hours is counted. Returns the buckets
-- counted. A call that finds another one counting returns 0 at once. at is capped at the
-- database's now(): a mark moved past it would leave later completions out of
-- completed_24h until real time caught up.
CREATE FUNCTION count_finished_v1(at timestamptz, spans integer) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET lock_timeout = '500ms'
AS $$
DECLARE
    span constant interval := interval '5 minutes';
    origin constant timestamptz := timestamptz '2000-01-01 00:00:00+00';
    mark timestamptz;
    upto timestamptz;
BEGIN
    at := least(at, now());
    SELECT counted_to INTO mark FROM finished_counts_mark FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    mark := greatest(mark, date_bin(span, at - interval '24 hours', origin));
    upto := least(date_bin(span, at - interval '1 minute', origin), mark + spans * span);
    IF upto <= mark THEN
        RETURN 0;
    END IF;
    INSERT INTO finished_counts AS f (queue, bucket, completed, cancelled)
    SELECT q.name, c.bucket, c.completed, c.cancelled
    FROM queues q
    CROSS JOIN LATERAL (
        SELECT date_bin(span, h.finished_at, origin) AS bucket,
               count(*) FILTER (WHERE h.state = 'completed') AS completed,
               count(*) FILTER (WHERE h.state = 'cancelled') AS cancelled
        FROM job_history h
        WHERE h.queue = q.name AND h.finished_at >= mark AND h.finished_at < upto
        GROUP BY 1
    ) AS c
    ON CONFLICT (queue, bucket) DO UPDATE
    SET completed = f.completed + excluded.completed, cancelled = f.cancelled + excluded.cancelled;
    UPDATE finished_counts_mark SET counted_to = upto;
    DELETE FROM finished_counts WHERE bucket < at - interval '2 days';
    RETURN (extract(epoch FROM upto - mark) / extract(epoch FROM span))::integer;
END;
$$;

-- The live counts come from jobs (unfinished jobs only: small). completed_24h is the
-- rollup's buckets from the one holding now() - 24 h (so up to 5 minutes more than 24 hours)
-- plus the rows finished since the rollup's mark, read through job_history_queue_finished:
-- its cost follows the rows finished since the last count, not the size of the history.
-- With nothing counted in the last hour (before the first count, or with no scheduler
-- running retention) it counts the last 24 hours in one pass, as version 1 did. dead counts
-- dead_jobs through dead_jobs_queue (an index-only count: it grows with the dead jobs kept).
--
-- Planned without JIT: the planner cannot know how few rows lie past the mark, its estimate
-- for a large history passes jit_above_cost, and compiling the plan took a second where
-- running it takes milliseconds.
CREATE FUNCTION queue_stats_v1()
RETURNS TABLE (queue text, paused boolean, waiting bigint, scheduled bigint, running bigint,
               completed_24h bigint, dead bigint, oldest_waiting_age interval)
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    mark timestamptz := (SELECT m.counted_to FROM finished_counts_mark m);
    first_bucket timestamptz := date_bin(interval '5 minutes', now() - interval '24 hours',
                                         timestamptz '2000-01-01 00:00:00+00');
    completed jsonb;
BEGIN
    IF mark > now() - interval '1 hour' THEN
        SELECT jsonb_object_agg(names.name, c.counted + c.recent) INTO completed
        FROM (SELECT name FROM queues UNION SELECT DISTINCT queue FROM jobs) AS names (name)
        CROSS JOIN LATERAL (
            SELECT (SELECT coalesce(sum(f.completed), 0) FROM finished_counts f
                    WHERE f.queue = names.name AND f.bucket >= first_bucket AND f.bucket < mark) AS counted,
                   (SELECT count(*) FROM job_history h
                    WHERE h.queue = names.name AND h.finished_at >= mark AND h.state = 'completed') AS recent
        ) AS c;
    ELSE
        SELECT jsonb_object_agg(h.queue, h.n) INTO completed
        FROM (SELECT h.queue, count(*) AS n FROM job_history h
              WHERE h.finished_at > now() - interval '24 hours' AND h.state = 'completed'
              GROUP BY h.queue) AS h;
    END IF;
    RETURN QUERY
    SELECT names.queue,
           coalesce(q.paused, false),
           coalesce(live.waiting, 0),
           coalesce(live.scheduled, 0),
           coalesce(live.running, 0),
           coalesce((completed ->> names.queue)::bigint, 0),
           coalesce(dead.dead, 0),
           date_trunc('second', now() - live.oldest_waiting)
    FROM (SELECT name AS queue FROM queues UNION SELECT DISTINCT queue FROM jobs) AS names
    LEFT JOIN queues q ON q.name = names.queue
    LEFT JOIN (
        SELECT j.queue,
               count(*) FILTER (WHERE j.state = 'available') AS waiting,
               count(*) FILTER (WHERE j.state = 'scheduled') AS scheduled,
               count(*) FILTER (WHERE j.state = 'running')   AS running,
               min(j.run_at) FILTER (WHERE j.state = 'available') AS oldest_waiting
        FROM jobs j GROUP BY j.queue
    ) AS live ON live.queue = names.queue
    LEFT JOIN LATERAL (
        SELECT count(*) AS dead FROM dead_jobs d WHERE d.queue = names.queue
    ) AS dead ON true;
END;
$$;

CREATE OR REPLACE VIEW queue_stats AS
SELECT queue, paused, waiting, scheduled, running, completed_24h, dead, oldest_waiting_age FROM queue_stats_v1();
COMMENT ON VIEW queue_stats IS
    'Per queue: waiting (due now), scheduled (later), running, completed in the last 24 h (to '
    'the 5 minutes), dead, and how long the oldest waiting job has waited.';

-- == retention in batches ================================================================

-- How far the run log copy of each expiring job_history day has got (ids in id order).
CREATE TABLE partition_copies (
    partition  text PRIMARY KEY,
    copied_to  bigint NOT NULL
);
COMMENT ON TABLE partition_copies IS
    'Retention copies an expired job_history day to the run log in batches, in id order: ids up '
    'to copied_to are copied. The row goes with the day.';

-- Takes at most about batch of the oldest rows of one table of finished work (of one queue,
-- or of any) from before a time: job_history and dead_jobs rows move to the run log,
-- job_runs and schedule_fires rows are deleted. Both the search for the batch's newest row
-- and the DELETE are range reads of an index on (queue,) time; rows sharing the batch's
-- last time all go, so a batch can exceed batch by such ties. Returns the rows taken.
-- Statements are built here and planned for their values on each call, so no cached plan
-- made for other values can scan a whole table. From job_history it takes no row of a day
-- being copied to the run log (one with a partition_copies row): that day goes whole, and a
-- row taken from it here could be copied too, and be in the run log twice.
CREATE FUNCTION retention_take_v1(source text, queue text, before timestamptz, batch integer)
RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET lock_timeout = '500ms'
AS $$
DECLARE
    time_column text := CASE source WHEN 'dead_jobs' THEN 'died_at' WHEN 'schedule_fires' THEN 'fired_at'
                                    ELSE 'finished_at' END;
    within text;
    bound timestamptz;
    taken bigint;
    copying oid[];
BEGIN
    IF source NOT IN ('job_history', 'job_history_default', 'dead_jobs', 'job_runs', 'job_runs_default',
                      'schedule_fires') THEN
        RAISE EXCEPTION 'conveyor.retention_take_v1: % holds no finished work', source
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch < 1 OR before IS NULL THEN
        RETURN 0;
    END IF;
    within := format('t.%1$I < $1', time_column) || CASE WHEN queue IS NULL THEN '' ELSE ' AND t.queue = $2' END;
    IF source = 'job_history' THEN
        copying := ARRAY(SELECT c.oid FROM partition_copies p
                         JOIN pg_class c ON c.relname = p.partition AND c.relnamespace = current_schema()::regnamespace);
        IF cardinality(copying) > 0 THEN
            within := within || ' AND t.tableoid <> ALL ($4)';
        END IF;
    END IF;
    EXECUTE format('SELECT t.%1$I FROM %2$I.%3$I t WHERE %4$s ORDER BY t.%1$I OFFSET $3 LIMIT 1',
                   time_column, current_schema(), source, within)
        INTO bound USING before, queue, batch - 1, copying;
    IF bound IS NOT NULL THEN
        within := within || format(' AND t.%I <= $3', time_column);
    END IF;
    IF source IN ('job_history', 'job_history_default') THEN
        EXECUTE format(
            'WITH gone AS (DELETE FROM %1$I.%2$I t WHERE %3$s RETURNING t.*) '
            'INSERT INTO %1$I.job_runs (id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, '
            'task, error) SELECT id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task, '
            'errors -> -1 ->> ''error'' FROM gone', current_schema(), source, within)
            USING before, queue, bound, copying;
    ELSIF source = 'dead_jobs' THEN
        EXECUTE format(
            'WITH gone AS (DELETE FROM %1$I.dead_jobs t WHERE %2$s RETURNING t.*) '
            'INSERT INTO %1$I.job_runs (id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, '
            'task, error) SELECT id, enqueued_at, started_at, died_at, NULL, attempt, ''dead'', queue, task, '
            'errors -> -1 ->> ''error'' FROM gone', current_schema(), within)
            USING before, queue, bound;
    ELSE
        EXECUTE format('DELETE FROM %I.%I t WHERE %s', current_schema(), source, within)
            USING before, queue, bound;
    END IF;
    GET DIAGNOSTICS taken = ROW_COUNT;
    RETURN taken;
END;
$$;

-- One batch of each row step of retention: at most about batch rows per step, oldest first,
-- through indexes (see retention_take_v1). Call it until no step returns batch. It never
-- touches jobs, so claims and acks never wait on it; it waits at most 500 ms for a lock (a
-- row held by someone else, or a table by DDL), and a step that cannot have one returns 0
-- (with a notice) and goes next time.
--
-- A queue's keep applies to the queues that have a queues row; rows of any other queue
-- name go at the longest keep (with their whole day, or from the default partitions).
--
-- Concurrent retention runs take turns, one batch (one transaction) at a time: this and
-- drop_partition_v1 first take the schema's retention lock (an advisory transaction lock).
-- So a day's first copy batch and a row step never overlap: a row step either ends before
-- the copy starts (the copy then never sees the rows it took) or sees the day's
-- partition_copies row (and leaves the day alone).
CREATE FUNCTION retention_batch_v1(at timestamptz, batch integer)
RETURNS TABLE (step text, affected bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET lock_timeout = '500ms'
AS $$
DECLARE
    longest_completed interval;
    longest_runs interval;
    longest_dead interval;
    k record;
BEGIN
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.retention'));
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'conveyor: another retention run holds the retention lock; retention goes on next time';
        RETURN QUERY VALUES ('finished jobs moved to the run log', 0::bigint), ('dead jobs moved to the run log', 0::bigint),
                            ('run log rows deleted', 0::bigint), ('fire log rows deleted', 0::bigint);
        RETURN;
    END;
    SELECT max(r.completed_keep), max(r.runs_keep), max(r.dead_keep)
    INTO longest_completed, longest_runs, longest_dead
    FROM (SELECT completed_keep, runs_keep, dead_keep FROM retention_by_queue
          UNION ALL SELECT completed_keep, runs_keep, dead_keep FROM retention WHERE queue = '*') AS r;

    step := 'finished jobs moved to the run log'; affected := 0;
    BEGIN
        FOR k IN SELECT * FROM retention_by_queue ORDER BY queue LOOP
            EXIT WHEN affected >= batch;
            IF k.completed_keep < longest_completed THEN
                -- A queue keeping less than the longest keep: from every partition.
                affected := affected + retention_take_v1('job_history', k.queue, at - k.completed_keep,
                                                         batch - affected::integer);
            ELSE
                -- The others go with their whole day; the default partition has none to drop.
                affected := affected + retention_take_v1('job_history_default', k.queue, at - longest_completed,
                                                         batch - affected::integer);
            END IF;
            IF k.completed_max IS NOT NULL AND affected < batch THEN
                -- Beyond its completed_max newest: older than the oldest kept, found by
                -- reading completed_max entries of the index.
                affected := affected + retention_take_v1('job_history', k.queue,
                    CASE WHEN k.completed_max = 0 THEN timestamptz 'infinity' ELSE (
                        SELECT h.finished_at FROM job_history h WHERE h.queue = k.queue
                        ORDER BY h.finished_at DESC OFFSET k.completed_max - 1 LIMIT 1) END,
                    batch - affected::integer);
            END IF;
        END LOOP;
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'conveyor: finished jobs are busy; retention goes on next time';
        affected := 0;
    END;
    RETURN NEXT;

    step := 'dead jobs moved to the run log'; affected := 0;
    BEGIN
        -- Older than every queue's keep: any queue, by dead_jobs_died_at.
        affected := retention_take_v1('dead_jobs', NULL, at - longest_dead, batch);
        -- Queues keeping their dead for less, by dead_jobs_queue.
        FOR k IN SELECT * FROM retention_by_queue WHERE dead_keep < longest_dead ORDER BY queue LOOP
            EXIT WHEN affected >= batch;
            affected := affected + retention_take_v1('dead_jobs', k.queue, at - k.dead_keep, batch - affected::integer);
        END LOOP;
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'conveyor: dead jobs are busy; retention goes on next time';
        affected := 0;
    END;
    RETURN NEXT;

    step := 'run log rows deleted'; affected := 0;
    BEGIN
        FOR k IN SELECT * FROM retention_by_queue ORDER BY queue LOOP
            EXIT WHEN affected >= batch;
            IF k.runs_keep < longest_runs THEN
                affected := affected + retention_take_v1('job_runs', k.queue, at - k.runs_keep,
                                                         batch - affected::integer);
            ELSE
                affected := affected + retention_take_v1('job_runs_default', k.queue, at - longest_runs,
                                                         batch - affected::integer);
            END IF;
        END LOOP;
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'conveyor: the run log is busy; retention goes on next time';
        affected := 0;
    END;
    RETURN NEXT;

    step := 'fire log rows deleted'; affected := 0;
    BEGIN
        affected := retention_take_v1('schedule_fires', NULL, at - longest_runs, batch);
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'conveyor: the fire log is busy; retention goes on next time';
        affected := 0;
    END;
    RETURN NEXT;
END;
$$;

-- One step of dropping an expired day: a job_history day first has its rows copied to the
-- run log, at most batch per call in id order (partition_copies remembers how far); once a
-- call finds fewer than batch left, it drops the day. Returns the rows copied and whether
-- the day is gone. Dropping locks the parent table for an instant, waiting at most 500 ms
-- (lock_not_available otherwise: the day goes next time, its copy kept).
--
-- It takes the retention lock first (see retention_batch_v1). A day that is gone (another
-- retention run dropped it) returns (0, false). A day whose range reaches the database's
-- now() is refused: acks still write into it, and a row acked behind the copy mark would be
-- dropped with the day.
CREATE FUNCTION drop_partition_v1(partition text, batch integer, OUT copied bigint, OUT dropped boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET lock_timeout = '500ms'
AS $$
DECLARE
    mark bigint;
    last_id bigint;
BEGIN
    copied := 0;
    dropped := false;
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.retention'));
    -- Read from pg_class with this statement's snapshot, taken after the lock (to_regclass
    -- could answer from a cache not yet told of another run's DROP).
    IF NOT EXISTS (SELECT FROM pg_class c WHERE c.relname = drop_partition_v1.partition
                   AND c.relnamespace = current_schema()::regnamespace) THEN
        RETURN;
    END IF;
    IF NOT EXISTS (
        SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE c.relname = drop_partition_v1.partition AND c.relnamespace = current_schema()::regnamespace
          AND ((i.inhparent = 'job_history'::regclass AND c.relname ~ '^job_history_[0-9]{8}$')
               OR (i.inhparent = 'job_runs'::regclass AND c.relname ~ '^job_runs_[0-9]{8}$'))
    ) THEN
        RAISE EXCEPTION 'conveyor.drop_partition_v1: % is not a daily partition of job_history or job_runs',
            drop_partition_v1.partition USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_date(right(drop_partition_v1.partition, 8), 'YYYYMMDD') + 1 > now() AT TIME ZONE 'UTC' THEN
        RAISE EXCEPTION 'conveyor.drop_partition_v1: % holds today or a later day (UTC); only past days are dropped',
            drop_partition_v1.partition USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF drop_partition_v1.partition LIKE 'job_history_%' THEN
        -- One copier per day at a time: the row lock orders concurrent retention runs.
        INSERT INTO partition_copies (partition, copied_to) VALUES (drop_partition_v1.partition, -1)
        ON CONFLICT ON CONSTRAINT partition_copies_pkey DO NOTHING;
        SELECT p.copied_to INTO mark FROM partition_copies p WHERE p.partition = drop_partition_v1.partition
        FOR UPDATE;
        EXECUTE format(
            'WITH batch AS (SELECT * FROM %I.%I WHERE id > $1 ORDER BY id LIMIT $2), '
            'copied AS (INSERT INTO job_runs (id, enqueued_at, started_at, finished_at, worker_id, attempt, '
            'state, queue, task, error) SELECT id, enqueued_at, started_at, finished_at, worker_id, attempt, '
            'state, queue, task, errors -> -1 ->> ''error'' FROM batch) '
            'SELECT count(*), max(id) FROM batch',
            current_schema(), drop_partition_v1.partition)
        INTO copied, last_id USING mark, batch;
        IF copied >= batch THEN
            UPDATE partition_copies p SET copied_to = last_id WHERE p.partition = drop_partition_v1.partition;
            RETURN;
        END IF;
        DELETE FROM partition_copies p WHERE p.partition = drop_partition_v1.partition;
    END IF;
    EXECUTE format('DROP TABLE %I.%I', current_schema(), drop_partition_v1.partition);
    dropped := true;
END;
$$;

-- All of retention from psql, in the same bounded steps (CALL conveyor.apply_retention();
-- outside a transaction block: it commits after every batch). The schema is written into the
-- body: a procedure that commits cannot pin its search_path.
DO $create$
BEGIN
    EXECUTE format($body$
CREATE OR REPLACE PROCEDURE %1$I.apply_retention(at timestamptz DEFAULT now())
LANGUAGE plpgsql
AS $procedure$
DECLARE
    result record;
    part text;
    step record;
    busy boolean;
    more boolean;
BEGIN
    LOOP
        EXIT WHEN %1$I.count_finished_v1(at, 12) < 12;
        COMMIT;
    END LOOP;
    COMMIT;
    FOR part IN SELECT * FROM %1$I.expired_partitions(at) LOOP
        LOOP
            busy := false;
            BEGIN
                SELECT * INTO step FROM %1$I.drop_partition_v1(part, 5000);
            EXCEPTION WHEN lock_not_available THEN
                busy := true;
            END;
            COMMIT;
            IF busy THEN
                RAISE NOTICE 'conveyor retention: %% is busy; it goes next time', part;
                EXIT;
            END IF;
            IF step.dropped THEN
                RAISE NOTICE 'conveyor retention: dropped %%', part;
                EXIT;
            END IF;
            IF step.copied = 0 THEN
                RAISE NOTICE 'conveyor retention: %% is gone (another retention run dropped it)', part;
                EXIT;
            END IF;
        END LOOP;
    END LOOP;
    LOOP
        more := false;
        FOR result IN SELECT * FROM %1$I.retention_batch_v1(at, 5000) LOOP
            IF result.affected > 0 THEN
                RAISE NOTICE 'conveyor retention: %%: %%', result.step, result.affected;
            END IF;
            more := more OR result.affected >= 5000;
        END LOOP;
        COMMIT;
        EXIT WHEN NOT more;
    END LOOP;
END;
$procedure$
$body$, current_schema());
END;
$create$;
