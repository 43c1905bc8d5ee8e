-- Conveyor schema, version 12: the totals behind /metrics' counters and histograms, kept in
-- the database (docs/operations.md, "Counters and histograms").
--
-- Counters must never go down, and must read the same from every process that serves
-- /metrics. The rows that record jobs do not stay (retention moves finished and dead jobs to
-- the run log and deletes them; an operator retries or purges dead jobs), so running totals
-- are kept here, advanced by a counting step that is not on the job hot path: claims and
-- acks write nothing new.
--
-- The counting step (count_metrics_v1) counts what happened in [mark, watermark) and adds it
-- to the totals, then moves the mark, in one transaction, under the lock of the metric_mark
-- row: two counts never count an interval twice. The watermark is the time before which
-- every write to the job tables has committed (a second before now, or the start of the
-- oldest open transaction of another session, whichever is earlier): Conveyor stamps
-- started_at, finished_at and died_at with a time no earlier than the start of the
-- transaction that writes them, so a row the count cannot see yet carries a time at or after
-- the watermark, and is counted by a later step. Each interval is counted once, after every
-- write into it has committed.
--
-- Nothing that counts is removed uncounted:
--   * retention moves or drops only rows from before the mark (retention_take_v2,
--     expired_partitions_v2, drop_partition_v2), so the run log never holds a row that was
--     not counted, and the count never reads the run log;
--   * retry_dead_v3 and purge_dead_v2 take the counting lock and add to the totals what a
--     later count would have counted from the rows they remove (their death, their start);
--   * an attempt that ends without its job ending (failed and retried, rescued after its lease
--     ran out, handed back at shutdown) leaves a row in attempt_ends (its start, and whether
--     it failed), which the next count consumes: the 'failed' counter, and the start of an
--     attempt the job's row no longer shows. Those paths are retry_jobs, release_jobs and
--     rescue_expired_jobs (sql/queries), none of them a claim or an ack.
--
-- The retention functions and purge/retry functions of earlier versions stay for workers of
-- the previous release during a rolling deploy (docs/sql.md, "Versions"); they remove rows
-- without counting them. So do retention_rows and drop_partition of version 2.

-- == Tables ==============================================================================

CREATE TABLE metric_mark (
    only_row        boolean PRIMARY KEY DEFAULT true CONSTRAINT one_row CHECK (only_row),
    counted_to      timestamptz NOT NULL DEFAULT now(),
    counting_since  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE metric_mark IS
    'The counting step''s mark: every event before counted_to is in metric_totals and metric_buckets; '
    'the totals count from counting_since (this migration). Its row lock serialises the counting step '
    '(count_metrics_v1) and the removals that count for themselves (retry_dead_v3, purge_dead_v2).';
INSERT INTO metric_mark DEFAULT VALUES;

CREATE TABLE metric_totals (
    queue  text NOT NULL,
    task   text NOT NULL,
    event  text NOT NULL CONSTRAINT event_known
                CHECK (event IN ('started', 'completed', 'cancelled', 'dead', 'failed')),
    total  bigint NOT NULL CONSTRAINT total_not_negative CHECK (total >= 0),
    PRIMARY KEY (queue, task, event)
);
COMMENT ON TABLE metric_totals IS
    'Running totals per queue, task and event since metric_mark.counting_since: attempts started, '
    'jobs completed, cancelled, dead, and attempts failed and retried. Only ever added to.';

CREATE TABLE metric_buckets (
    queue    text NOT NULL,
    kind     text NOT NULL CONSTRAINT kind_known CHECK (kind IN ('wait', 'run')),
    le       double precision NOT NULL,
    jobs     bigint NOT NULL CONSTRAINT jobs_not_negative CHECK (jobs >= 0),
    seconds  double precision NOT NULL CONSTRAINT seconds_not_negative CHECK (seconds >= 0),
    PRIMARY KEY (queue, kind, le)
);
COMMENT ON TABLE metric_buckets IS
    'Histograms of completed jobs per queue: kind wait (from due to the start of the last attempt) '
    'or run (from that start to the outcome written); per bucket (le: its upper bound, Infinity for '
    'the last; a value equal to a bound is in that bound''s bucket) the jobs and the sum of their seconds.';

CREATE TABLE attempt_ends (
    queue       text NOT NULL,
    task        text NOT NULL,
    started_at  timestamptz,
    failed      boolean NOT NULL
);
COMMENT ON TABLE attempt_ends IS
    'Attempts that ended without their job ending (failed and retried, rescued after the lease ran '
    'out: failed; handed back at shutdown: not failed), each with its start, until the next count '
    'consumes them (count_metrics_v1).';

-- == Histogram bounds ====================================================================

-- In seconds, increasing. Changing them changes the meaning of the metric_buckets rows:
-- that would be a new version of this function and of the count.
CREATE FUNCTION metric_bounds_v1() RETURNS TABLE (kind text, bounds double precision[])
LANGUAGE sql IMMUTABLE
AS $$
    VALUES ('wait', ARRAY[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
                          1800, 3600]::double precision[]),
           ('run', ARRAY[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                         600, 1800, 3600]::double precision[]);
$$;

-- == The counting step ===================================================================

-- Counts [mark, upto) into the totals and moves the mark to upto, where upto is the
-- watermark (least(now() - settle, the start of the oldest open transaction of another
-- client session of this database)) or mark + span, whichever is earlier. Returns the mark
-- (counted_to), whether this call counted (false: another count held the lock; it returns
-- at once, having done nothing) and whether it reached the watermark (false: call again
-- to catch up). Call it in READ COMMITTED (the default), on its own: its reads must see
-- everything that committed before its watermark, which an older snapshot would not.
--
-- What it counts, per queue (of queues) and task:
--   completed, cancelled  job_history rows finished in [mark, upto);
--   dead                  dead_jobs rows that died in [mark, upto);
--   started               every attempt whose start lies in [mark, upto), wherever its job
--                         is: running (jobs), ended with the job (job_history rows of
--                         completed jobs, or cancelled while running: worker_id set;
--                         dead_jobs), or ended without it (attempt_ends rows, consumed
--                         here: counted if their start is at or after the mark);
--   failed                attempt_ends rows that failed (consumed here, whatever their time);
--   histograms            job_history rows completed in [mark, upto) with a start.
-- A job's rows are read in one statement (one snapshot): a job acked meanwhile is seen
-- either running or finished, never both.
--
-- Cost: job_history and dead_jobs are read per queue through their (queue, time) indexes
-- from the mark on (what finished since the previous count), running jobs through
-- jobs_leases; never a whole table.
CREATE FUNCTION count_metrics_v1(settle interval DEFAULT interval '1 second',
                                 span interval DEFAULT interval '1 minute',
                                 OUT counted_to timestamptz, OUT counted boolean, OUT caught_up boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET jit = off
SET max_parallel_workers_per_gather = 0
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    mark timestamptz;
    watermark timestamptz;
    upto timestamptz;
    wait_le double precision[];
    run_le double precision[];
    wait_neg double precision[];
    run_neg double precision[];
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'conveyor.count_metrics_v1 counts in READ COMMITTED only (this transaction is %)',
            current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Its reads must see everything committed before its watermark; an older snapshot would miss some.';
    END IF;
    IF settle IS NULL OR settle < interval '0' OR span IS NULL OR span <= interval '0' THEN
        RAISE EXCEPTION 'conveyor.count_metrics_v1: settle must be 0 or more and span more than 0 (got %, %)',
            settle, span USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT m.counted_to INTO mark FROM metric_mark m FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        SELECT m.counted_to INTO counted_to FROM metric_mark m;
        counted := false;
        caught_up := false;
        RETURN;
    END IF;
    -- Read after the lock, in this transaction (whose now() is no later than this read: a
    -- session whose transaction began after it stamps later times still).
    watermark := least(now() - settle,
                       (SELECT min(a.xact_start) FROM pg_stat_activity a
                        WHERE a.datname = current_database() AND a.backend_type = 'client backend'
                          AND a.pid <> pg_backend_pid()));
    upto := greatest(mark, least(watermark, mark + span));
    caught_up := upto >= watermark;

    SELECT b.bounds, ARRAY(SELECT -x FROM unnest(b.bounds) WITH ORDINALITY AS u (x, i) ORDER BY i DESC)
    INTO wait_le, wait_neg FROM metric_bounds_v1() b WHERE b.kind = 'wait';
    SELECT b.bounds, ARRAY(SELECT -x FROM unnest(b.bounds) WITH ORDINALITY AS u (x, i) ORDER BY i DESC)
    INTO run_le, run_neg FROM metric_bounds_v1() b WHERE b.kind = 'run';

    WITH ended AS (
        DELETE FROM attempt_ends e RETURNING e.queue, e.task, e.started_at, e.failed
    ), history AS (
        SELECT h.queue, h.task,
               count(*) FILTER (WHERE h.finished_at < upto AND h.state = 'completed') AS completed,
               count(*) FILTER (WHERE h.finished_at < upto AND h.state = 'cancelled') AS cancelled,
               count(*) FILTER (WHERE (h.state = 'completed' OR h.worker_id IS NOT NULL)
                                  AND h.started_at >= mark AND h.started_at < upto) AS started
        FROM queues q
        CROSS JOIN LATERAL (
            SELECT h.queue, h.task, h.state, h.finished_at, h.started_at, h.worker_id
            FROM job_history h WHERE h.queue = q.name AND h.finished_at >= mark
            OFFSET 0
        ) AS h
        GROUP BY h.queue, h.task
    ), dead AS (
        SELECT d.queue, d.task,
               count(*) FILTER (WHERE d.died_at < upto) AS dead,
               count(*) FILTER (WHERE d.started_at >= mark AND d.started_at < upto) AS started
        FROM queues q
        CROSS JOIN LATERAL (
            SELECT d.queue, d.task, d.died_at, d.started_at
            FROM dead_jobs d WHERE d.queue = q.name AND d.died_at >= mark
            OFFSET 0
        ) AS d
        GROUP BY d.queue, d.task
    ), events (queue, task, event, n) AS (
        SELECT e.queue, e.task, 'failed', count(*) FROM ended e WHERE e.failed GROUP BY e.queue, e.task
        UNION ALL
        SELECT e.queue, e.task, 'started', count(*) FROM ended e WHERE e.started_at >= mark
        GROUP BY e.queue, e.task
        UNION ALL
        SELECT j.queue, j.task, 'started', count(*) FROM jobs j
        WHERE j.state = 'running' AND j.started_at >= mark AND j.started_at < upto
        GROUP BY j.queue, j.task
        UNION ALL
        SELECT h.queue, h.task, v.event, v.n
        FROM history h, LATERAL (VALUES ('completed', h.completed), ('cancelled', h.cancelled),
                                        ('started', h.started)) AS v (event, n)
        UNION ALL
        SELECT d.queue, d.task, v.event, v.n
        FROM dead d, LATERAL (VALUES ('dead', d.dead), ('started', d.started)) AS v (event, n)
    ), totals AS (
        INSERT INTO metric_totals AS t (queue, task, event, total)
        SELECT e.queue, e.task, e.event, sum(e.n) FROM events e
        GROUP BY e.queue, e.task, e.event HAVING sum(e.n) > 0
        ON CONFLICT ON CONSTRAINT metric_totals_pkey DO UPDATE SET total = t.total + excluded.total
    ), durations AS (
        -- One row per bucket pair, not per job and kind (two rows per job cost four times as
        -- much to group).
        SELECT q.name AS queue,
               cardinality(wait_neg) - width_bucket(-h.wait, wait_neg) AS wait_bucket,
               cardinality(run_neg) - width_bucket(-h.run, run_neg) AS run_bucket,
               count(*) AS jobs, sum(h.wait) AS wait, sum(h.run) AS run
        FROM queues q
        CROSS JOIN LATERAL (
            SELECT greatest(date_part('epoch', h.started_at - h.run_at), 0) AS wait,
                   greatest(date_part('epoch', h.finished_at - h.started_at), 0) AS run
            FROM job_history h
            WHERE h.queue = q.name AND h.finished_at >= mark AND h.finished_at < upto
              AND h.state = 'completed' AND h.started_at IS NOT NULL
            OFFSET 0
        ) AS h
        GROUP BY 1, 2, 3
    ), buckets AS (
        -- Bucket k (0-based) holds the values in (bound k, bound k + 1], Prometheus' "le"; the
        -- last, the values above every bound: width_bucket over the bounds negated and reversed
        -- counts the bounds at or above a value.
        INSERT INTO metric_buckets AS b (queue, kind, le, jobs, seconds)
        SELECT d.queue, 'wait', coalesce(wait_le[d.wait_bucket + 1], 'Infinity'), sum(d.jobs), sum(d.wait)
        FROM durations d GROUP BY 1, 2, 3
        UNION ALL
        SELECT d.queue, 'run', coalesce(run_le[d.run_bucket + 1], 'Infinity'), sum(d.jobs), sum(d.run)
        FROM durations d GROUP BY 1, 2, 3
        ON CONFLICT ON CONSTRAINT metric_buckets_pkey DO UPDATE SET jobs = b.jobs + excluded.jobs, seconds = b.seconds + excluded.seconds
    )
    UPDATE metric_mark SET counted_to = upto;

    counted_to := upto;
    counted := true;
END;
$$;
COMMENT ON FUNCTION count_metrics_v1(interval, interval) IS
    'The counting step behind /metrics: counts [mark, watermark) (at most span of it) into metric_totals '
    'and metric_buckets and moves the mark, under the mark''s row lock (a call that finds it held returns at once).';

-- The counting lock for a removal that counts for itself (retry_dead_v3, purge_dead_v2): waits
-- for a count under way, and returns the mark. It writes the row (to the same values), so a
-- count in a REPEATABLE READ transaction begun before this commits fails instead of reading
-- rows this removes (count_metrics_v1 refuses that isolation anyway).
CREATE FUNCTION metric_mark_lock_v1() RETURNS timestamptz
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    UPDATE metric_mark SET counted_to = counted_to RETURNING counted_to;
$$;

-- == Dead jobs: retry and purge count what they remove ====================================

-- retry_dead_v2, and: the job's death and its last start, when a count has not reached them
-- yet, are added to the totals now (the dead_jobs row goes; the revived job starts afresh).
CREATE FUNCTION retry_dead_v3(job_id bigint) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    mark timestamptz := metric_mark_lock_v1();
    dead dead_jobs%ROWTYPE;
    revived bigint;
BEGIN
    DELETE FROM dead_jobs d WHERE d.id = retry_dead_v3.job_id RETURNING d.* INTO dead;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conveyor.retry_dead: no dead job with id %', retry_dead_v3.job_id
            USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO metric_totals AS t (queue, task, event, total)
    SELECT dead.queue, dead.task, v.event, 1
    FROM (VALUES ('dead', dead.died_at >= mark), ('started', dead.started_at >= mark)) AS v (event, uncounted)
    WHERE v.uncounted
    ON CONFLICT ON CONSTRAINT metric_totals_pkey DO UPDATE SET total = t.total + excluded.total;
    -- A fresh attempt budget, due now; its id, claims, unique key, enqueue time, errors, key and meta kept.
    revived := insert_job_v2(dead.task, dead.args, dead.queue, dead.priority, dead.max_attempts, NULL,
                             dead.unique_key, now(), true, dead.id, dead.claims, dead.enqueued_at, dead.errors,
                             dead.key, dead.meta);
    IF revived IS NULL THEN
        RAISE EXCEPTION 'conveyor.retry_dead: job % cannot go back: a live job already holds its unique key',
            retry_dead_v3.job_id USING ERRCODE = 'unique_violation';
    END IF;
    RETURN revived;
END;
$$;
COMMENT ON FUNCTION retry_dead_v3(bigint) IS
    'Version 3 of retry_dead (counts what it removes into the metric totals) (see conveyor.retry_dead).';

-- purge_dead_v1, and: the deaths and last starts of the purged jobs that a count has not
-- reached yet are added to the totals now.
CREATE FUNCTION purge_dead_v2(
    job_ids     bigint[] DEFAULT NULL,
    queue       text DEFAULT NULL,
    task        text DEFAULT NULL,
    older_than  interval DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    mark timestamptz := metric_mark_lock_v1();
    gone bigint;
BEGIN
    WITH purged AS (
        DELETE FROM dead_jobs d
        WHERE (purge_dead_v2.job_ids IS NULL OR d.id = ANY (purge_dead_v2.job_ids))
          AND (purge_dead_v2.queue IS NULL OR d.queue = purge_dead_v2.queue)
          AND (purge_dead_v2.task IS NULL OR d.task = purge_dead_v2.task)
          AND (purge_dead_v2.older_than IS NULL OR d.died_at < now() - purge_dead_v2.older_than)
        RETURNING d.queue, d.task, d.died_at, d.started_at
    ), counted AS (
        INSERT INTO metric_totals AS t (queue, task, event, total)
        SELECT p.queue, p.task, v.event, count(*)
        FROM purged p, LATERAL (VALUES ('dead', p.died_at >= mark), ('started', p.started_at >= mark))
                       AS v (event, uncounted)
        WHERE v.uncounted
        GROUP BY 1, 2, 3
        ON CONFLICT ON CONSTRAINT metric_totals_pkey DO UPDATE SET total = t.total + excluded.total
    )
    SELECT count(*) INTO gone FROM purged;
    RETURN gone;
END;
$$;
COMMENT ON FUNCTION purge_dead_v2(bigint[], text, text, interval) IS
    'Version 2 of purge_dead (counts what it removes into the metric totals) (see conveyor.purge_dead).';

-- == Retention: only what has been counted ================================================

-- retention_take_v1, taking from job_history and dead_jobs only rows from before the
-- counting mark (a row after it goes once a count has passed it). The run log and the fire
-- log are taken as before: rows reach the run log only once counted.
CREATE FUNCTION retention_take_v2(source text, queue text, before timestamptz, batch integer)
RETURNS bigint
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT retention_take_v1(retention_take_v2.source, retention_take_v2.queue,
        CASE WHEN retention_take_v2.before IS NULL
                  OR retention_take_v2.source IN ('job_runs', 'job_runs_default', 'schedule_fires')
             THEN retention_take_v2.before
             ELSE least(retention_take_v2.before, (SELECT m.counted_to FROM metric_mark m)) END,
        retention_take_v2.batch);
$$;

-- retention_batch_v1 through retention_take_v2.
CREATE FUNCTION retention_batch_v2(at timestamptz, batch integer)
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
                affected := affected + retention_take_v2('job_history', k.queue, at - k.completed_keep,
                                                         batch - affected::integer);
            ELSE
                affected := affected + retention_take_v2('job_history_default', k.queue, at - longest_completed,
                                                         batch - affected::integer);
            END IF;
            IF k.completed_max IS NOT NULL AND affected < batch THEN
                affected := affected + retention_take_v2('job_history', k.queue,
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
        affected := retention_take_v2('dead_jobs', NULL, at - longest_dead, batch);
        FOR k IN SELECT * FROM retention_by_queue WHERE dead_keep < longest_dead ORDER BY queue LOOP
            EXIT WHEN affected >= batch;
            affected := affected + retention_take_v2('dead_jobs', k.queue, at - k.dead_keep, batch - affected::integer);
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
                affected := affected + retention_take_v2('job_runs', k.queue, at - k.runs_keep,
                                                         batch - affected::integer);
            ELSE
                affected := affected + retention_take_v2('job_runs_default', k.queue, at - longest_runs,
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
        affected := retention_take_v2('schedule_fires', NULL, at - longest_runs, batch);
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'conveyor: the fire log is busy; retention goes on next time';
        affected := 0;
    END;
    RETURN NEXT;
END;
$$;

-- expired_partitions_v1, without the job_history days that reach past the counting mark.
CREATE FUNCTION expired_partitions_v2(at timestamptz DEFAULT now()) RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    SELECT p FROM expired_partitions_v1(expired_partitions_v2.at) AS p
    WHERE p !~ '^job_history_'
       OR to_date(right(p, 8), 'YYYYMMDD') + 1 <= (SELECT m.counted_to FROM metric_mark m) AT TIME ZONE 'UTC';
$$;

-- drop_partition_v1, refusing a job_history day that reaches past the counting mark (its
-- rows would reach the run log uncounted).
CREATE FUNCTION drop_partition_v2(partition text, batch integer, OUT copied bigint, OUT dropped boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF drop_partition_v2.partition ~ '^job_history_[0-9]{8}$'
       AND to_date(right(drop_partition_v2.partition, 8), 'YYYYMMDD') + 1
           > (SELECT m.counted_to FROM metric_mark m) AT TIME ZONE 'UTC' THEN
        RAISE EXCEPTION 'conveyor.drop_partition_v2: % holds jobs the metrics have not counted yet (the counting mark is %)',
            drop_partition_v2.partition, (SELECT m.counted_to FROM metric_mark m)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run conveyor.count_metrics_v1() until it catches up, then drop the day.';
    END IF;
    SELECT d.copied, d.dropped INTO copied, dropped
    FROM drop_partition_v1(drop_partition_v2.partition, drop_partition_v2.batch) AS d;
END;
$$;

-- == The names without a version, and the retention procedure ============================

DO $wrappers$
BEGIN
    EXECUTE format($sql$
CREATE OR REPLACE FUNCTION %1$I.retry_dead(job_id bigint) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.retry_dead_v3(retry_dead.job_id);
$body$;

CREATE OR REPLACE FUNCTION %1$I.purge_dead(
    job_ids     bigint[] DEFAULT NULL,
    queue       text DEFAULT NULL,
    task        text DEFAULT NULL,
    older_than  interval DEFAULT NULL
) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.purge_dead_v2(purge_dead.job_ids, purge_dead.queue, purge_dead.task, purge_dead.older_than);
$body$;

CREATE OR REPLACE FUNCTION %1$I.expired_partitions(at timestamptz DEFAULT now()) RETURNS SETOF text
LANGUAGE sql STABLE
AS $body$
    SELECT * FROM %1$I.expired_partitions_v2(expired_partitions.at);
$body$;

CREATE OR REPLACE PROCEDURE %1$I.apply_retention(at timestamptz DEFAULT now())
LANGUAGE plpgsql
AS $procedure$
DECLARE
    result record;
    part text;
    step record;
    busy boolean;
    more boolean;
    tally record;
BEGIN
    -- The metrics first: retention takes only what they have counted.
    LOOP
        SELECT * INTO tally FROM %1$I.count_metrics_v1();
        COMMIT;
        EXIT WHEN NOT tally.counted OR tally.caught_up;
    END LOOP;
    LOOP
        EXIT WHEN %1$I.count_finished_v1(at, 12) < 12;
        COMMIT;
    END LOOP;
    COMMIT;
    FOR part IN SELECT * FROM %1$I.expired_partitions_v2(at) LOOP
        LOOP
            busy := false;
            BEGIN
                SELECT * INTO step FROM %1$I.drop_partition_v2(part, 5000);
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
        FOR result IN SELECT * FROM %1$I.retention_batch_v2(at, 5000) LOOP
            IF result.affected > 0 THEN
                RAISE NOTICE 'conveyor retention: %%: %%', result.step, result.affected;
            END IF;
            more := more OR result.affected >= 5000;
        END LOOP;
        COMMIT;
        EXIT WHEN NOT more;
    END LOOP;
END;
$procedure$;
$sql$, current_schema());
END;
$wrappers$;
