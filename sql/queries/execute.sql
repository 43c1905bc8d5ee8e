-- The hot path of a worker: claim, then record outcomes. Every write to a claimed job is
-- fenced on (id, claims, worker_id), claims being the job's claim count, which only ever
-- goes up: a worker that lost its lease (rescued, handed back, re-claimed, even by itself)
-- matches no row and changes nothing. A job has a worker_id exactly while it runs (the
-- table's lease_iff_running check), so the fence needs no test of state.
--
-- A fenced write takes a JSON object keyed by job id, {"<id>": [claims, ...]}, and finds its
-- rows through the primary key (`j.id = ANY (ids of the object)`); the claims and what is
-- written per job are looked up in the object, row by row. No join, and no test of state:
-- PostgreSQL's estimates of "this worker's running jobs" come from statistics taken at
-- any moment (often while nothing ran: "none") and led it to plans that walked every
-- running job, or every id against every other, for each batch; this form's cost does not
-- depend on the statistics (bench/RESULTS.md, "Why the code is shaped so").

-- name: use_generic_plans
-- For a worker's connections: prepared statements run their generic plan (see Database).
SET plan_cache_mode = force_generic_plan;

-- name: claim_jobs
-- Claim up to %(limit)s due jobs from one queue (%(queues)s has one name; several: see
-- claim_jobs_across_queues) in priority order, skipping a paused queue and rows other
-- workers hold; %(limits)s caps the queue's share. It locks only the rows it takes (the
-- levels are read lazily up to the claim's size): a row locked and not taken would be
-- skipped by every other worker asking the queue, which then comes back short and waits.
-- Each priority level is read from its cursor in the after_* arrays (queue, priority,
-- run_at, id: read only what lies past that key), or from the start of the level when it
-- has none. Levels are read in order and only as far as needed: a first level that fills
-- the claim locks nothing on the others.
-- Pauses (sql/migrations/0010_job_control.up.sql): nothing is claimed while a pauses row of
-- scope 'all' exists (an InitPlan: one read of the small pauses table per statement), and
-- jobs of a paused task are skipped (an anti-join on the pauses table, read once and kept:
-- written as NOT EXISTS so that the planner, seeing pauses empty, keeps the ordered read of
-- the claim index; `task <> ALL (array)` looked selective to it and it sorted whole levels).
-- A paused task's backlog at the head of a level is read past by full scans only: the
-- worker's cursors move past it (queue.cursors).
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), wanted AS (
    SELECT w.queue, w.max_jobs
    FROM unnest(%(queues)s::text[], %(limits)s::integer[]) AS w (queue, max_jobs)
    LEFT JOIN {schema}.queues q ON q.name = w.queue
    -- A limited queue is claimed by claim_limited (sql/queries/limits.sql), never here.
    WHERE q.paused IS NOT TRUE AND q.limited IS NOT TRUE
      AND NOT EXISTS (SELECT FROM {schema}.pauses p WHERE p.scope = 'all')
), after AS (
    SELECT * FROM unnest(%(after_queues)s::text[], %(after_priorities)s::smallint[],
                         %(after_run_ats)s::timestamptz[], %(after_ids)s::bigint[])
                  AS a (queue, priority, run_at, id)
), candidates AS (
    SELECT c.id, c.priority, c.run_at
    FROM wanted w
    CROSS JOIN LATERAL (
        SELECT l.id, l.priority, l.run_at
        FROM unnest(ARRAY[0, 1, 2, 3]::smallint[]) AS p (priority)
        CROSS JOIN LATERAL (
            SELECT coalesce(max(a.run_at), '-infinity') AS run_at, coalesce(max(a.id), 0) AS id
            FROM after a WHERE a.queue = w.queue AND a.priority = p.priority
        ) AS cursor
        CROSS JOIN LATERAL (
            SELECT j.id, j.priority, j.run_at
            FROM {schema}.jobs j
            WHERE j.state = 'available' AND j.queue = w.queue AND j.priority = p.priority
              AND (j.run_at, j.id) > (cursor.run_at, cursor.id)
              AND NOT EXISTS (SELECT FROM {schema}.pauses p WHERE p.scope = 'task' AND p.name = j.task)
            ORDER BY j.run_at, j.id
            LIMIT least(w.max_jobs, %(limit)s)
            FOR UPDATE SKIP LOCKED
        ) AS l
        LIMIT least(w.max_jobs, %(limit)s)
    ) AS c
), picked AS (
    SELECT id FROM candidates ORDER BY priority, run_at, id LIMIT %(limit)s
)
UPDATE {schema}.jobs j
SET state = 'running',
    attempt = j.attempt + 1,
    claims = j.claims + 1,
    worker_id = %(worker_id)s,
    started_at = clock.now,
    lease_expires_at = clock.now + %(lease)s::interval
FROM clock
-- An array of ids is always probed through the primary key, whatever plan is cached.
WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
RETURNING j.id, j.claims, j.queue, j.task, j.args, j.attempt, j.max_attempts, j.priority, j.enqueued_at,
          j.run_at;

-- name: claim_jobs_across_queues
-- Claim up to %(limit)s due jobs from several queues in priority order across them
-- (priority, run_at, id), skipping paused queues (and tasks, and everything, as in
-- claim_jobs) and rows other workers hold, and locking
-- only the rows it takes: a row locked and not taken would be skipped by every other worker
-- asking that queue, which then comes back short and waits. %(limits)s caps each queue's
-- share. Cursors and levels are read as in claim_jobs.
--
-- `preview` first reads, without locking, which queues hold the first %(limit)s due jobs,
-- and each queue's share is its count there; then each queue locks its share, skipping rows
-- held by others (the preview counts them, as they may yet be given back) and reading on
-- past them. With nobody else claiming, the claim is exactly the first %(limit)s jobs across
-- queues; when others' claims left it short, `top_up` takes what is missing from the queues
-- that still have jobs.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), wanted AS (
    SELECT w.queue, w.max_jobs
    FROM unnest(%(queues)s::text[], %(limits)s::integer[]) AS w (queue, max_jobs)
    LEFT JOIN {schema}.queues q ON q.name = w.queue
    -- A limited queue is claimed by claim_limited (sql/queries/limits.sql), never here.
    WHERE q.paused IS NOT TRUE AND q.limited IS NOT TRUE
      AND NOT EXISTS (SELECT FROM {schema}.pauses p WHERE p.scope = 'all')
), after AS (
    SELECT * FROM unnest(%(after_queues)s::text[], %(after_priorities)s::smallint[],
                         %(after_run_ats)s::timestamptz[], %(after_ids)s::bigint[])
                  AS a (queue, priority, run_at, id)
), preview AS MATERIALIZED (
    SELECT w.queue
    FROM wanted w
    CROSS JOIN LATERAL (
        SELECT l.id, l.priority, l.run_at
        FROM unnest(ARRAY[0, 1, 2, 3]::smallint[]) AS p (priority)
        CROSS JOIN LATERAL (
            SELECT coalesce(max(a.run_at), '-infinity') AS run_at, coalesce(max(a.id), 0) AS id
            FROM after a WHERE a.queue = w.queue AND a.priority = p.priority
        ) AS cursor
        CROSS JOIN LATERAL (
            SELECT j.id, j.priority, j.run_at
            FROM {schema}.jobs j
            WHERE j.state = 'available' AND j.queue = w.queue AND j.priority = p.priority
              AND (j.run_at, j.id) > (cursor.run_at, cursor.id)
              AND NOT EXISTS (SELECT FROM {schema}.pauses p WHERE p.scope = 'task' AND p.name = j.task)
            ORDER BY j.run_at, j.id
            LIMIT least(w.max_jobs, %(limit)s)
        ) AS l
        LIMIT least(w.max_jobs, %(limit)s)
    ) AS c
    ORDER BY c.priority, c.run_at, c.id
    LIMIT %(limit)s
), shares AS MATERIALIZED (
    SELECT w.queue, (SELECT count(*) FROM preview v WHERE v.queue = w.queue) AS share
    FROM wanted w
), candidates AS MATERIALIZED (
    SELECT c.id, s.queue
    FROM shares s
    CROSS JOIN LATERAL (
        SELECT l.id
        FROM unnest(ARRAY[0, 1, 2, 3]::smallint[]) AS p (priority)
        CROSS JOIN LATERAL (
            SELECT coalesce(max(a.run_at), '-infinity') AS run_at, coalesce(max(a.id), 0) AS id
            FROM after a WHERE a.queue = s.queue AND a.priority = p.priority
        ) AS cursor
        CROSS JOIN LATERAL (
            SELECT j.id
            FROM {schema}.jobs j
            WHERE j.state = 'available' AND j.queue = s.queue AND j.priority = p.priority
              AND (j.run_at, j.id) > (cursor.run_at, cursor.id)
              AND NOT EXISTS (SELECT FROM {schema}.pauses p WHERE p.scope = 'task' AND p.name = j.task)
            ORDER BY j.run_at, j.id
            LIMIT s.share
            FOR UPDATE SKIP LOCKED
        ) AS l
        LIMIT s.share
    ) AS c
), missing AS (
    -- A full preview, a short claim: other workers took rows the preview counted. A queue
    -- that gave less than its share has no unlocked due job left; the others may have
    -- more, and are read again, in the worker's order of queues, for what is missing
    -- (lazily: each row locked here is taken).
    SELECT %(limit)s - (SELECT count(*) FROM candidates) AS jobs,
           (SELECT array_agg(id) FROM candidates) AS taken
    WHERE (SELECT count(*) FROM preview) = %(limit)s
), top_up AS (
    SELECT t.id
    FROM missing m
    CROSS JOIN LATERAL (
        SELECT l.id
        FROM shares s
        CROSS JOIN unnest(ARRAY[0, 1, 2, 3]::smallint[]) AS p (priority)
        CROSS JOIN LATERAL (
            SELECT coalesce(max(a.run_at), '-infinity') AS run_at, coalesce(max(a.id), 0) AS id
            FROM after a WHERE a.queue = s.queue AND a.priority = p.priority
        ) AS cursor
        CROSS JOIN LATERAL (
            SELECT j.id
            FROM {schema}.jobs j
            WHERE j.state = 'available' AND j.queue = s.queue AND j.priority = p.priority
              AND (j.run_at, j.id) > (cursor.run_at, cursor.id)
              AND NOT EXISTS (SELECT FROM {schema}.pauses p WHERE p.scope = 'task' AND p.name = j.task)
              AND j.id <> ALL (m.taken)
            ORDER BY j.run_at, j.id
            LIMIT m.jobs
            FOR UPDATE SKIP LOCKED
        ) AS l
        WHERE (SELECT count(*) FROM candidates c WHERE c.queue = s.queue) = s.share
        LIMIT m.jobs
    ) AS t
    WHERE m.jobs > 0
)
UPDATE {schema}.jobs j
SET state = 'running',
    attempt = j.attempt + 1,
    claims = j.claims + 1,
    worker_id = %(worker_id)s,
    started_at = clock.now,
    lease_expires_at = clock.now + %(lease)s::interval
FROM clock
-- An array of ids is always probed through the primary key, whatever plan is cached.
WHERE j.id = ANY (ARRAY(SELECT id FROM candidates UNION ALL SELECT id FROM top_up))
RETURNING j.id, j.claims, j.queue, j.task, j.args, j.attempt, j.max_attempts, j.priority, j.enqueued_at,
          j.run_at;

-- name: complete_jobs
-- Move finished jobs to history with their results; returns the ids that were still ours.
-- %(jobs)s: {"<id>": [claims, result]}. Jobs with followers, in a batch or awaited are settled
-- (settle_v1); for the others `settled` aggregates nothing and calls nothing. (FILTER in the
-- aggregate, not WHERE: the ended rows are read once and none is counted as thrown away, which
-- tests/integration/test_fenced_write_plans.py bounds.)
WITH done AS (
    DELETE FROM {schema}.jobs j
    WHERE j.id = ANY (ARRAY(SELECT jsonb_object_keys(%(jobs)s::jsonb)::bigint))
      AND j.worker_id = %(worker_id)s
      AND j.claims = (%(jobs)s::jsonb -> j.id::text ->> 0)::integer
    RETURNING j.*
), moved AS (
    INSERT INTO {schema}.job_history
        (id, run_at, enqueued_at, started_at, finished_at, worker_id, attempt, max_attempts, priority,
         state, queue, task, unique_key, args, result, errors, key, meta, after_id, batch_id)
    SELECT id, run_at, enqueued_at, started_at, coalesce(%(now)s::timestamptz, now()), worker_id, attempt,
           max_attempts, priority, 'completed', queue, task, unique_key, args,
           nullif(%(jobs)s::jsonb -> id::text -> 1, 'null'), errors, key, meta, after_id, batch_id
    FROM done
    RETURNING id
), settled AS (
    SELECT {schema}.settle_v1('completed', f.followed, f.batch_ids, f.awaited, coalesce(%(now)s::timestamptz, now()))
    FROM (
        SELECT array_agg(id) FILTER (WHERE has_followers) AS followed,
               array_agg(batch_id) FILTER (WHERE batch_id IS NOT NULL) AS batch_ids,
               array_agg(id) FILTER (WHERE awaited) AS awaited
        FROM done
    ) AS f
    WHERE f.followed IS NOT NULL OR f.batch_ids IS NOT NULL OR f.awaited IS NOT NULL
)
-- Reading `settled` is what runs it (a SELECT in WITH runs only when read).
SELECT id FROM moved WHERE (SELECT count(*) FROM settled) >= 0;

-- name: retry_jobs
-- Put failed jobs back to run again after their backoff; records each error. A job whose
-- abort was asked for is not retried (its row is left to record_aborted, which the caller
-- runs for the ids missing here: see Database.record_outcomes).
-- Each retried attempt leaves a row in attempt_ends (its start, failed) for the metrics'
-- counting step (count_metrics_v1): the 'failed' counter, and the start the job's row will
-- no longer show once it runs again. (The retry path only: claims and acks write nothing
-- for the metrics.)
-- %(jobs)s: {"<id>": [claims, delay in seconds, error]}.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), retried AS (
    UPDATE {schema}.jobs j
    SET state = CASE WHEN (%(jobs)s::jsonb -> j.id::text ->> 1)::double precision <= 0
                     THEN 'available' ELSE 'scheduled' END,
        run_at = clock.now + make_interval(secs => (%(jobs)s::jsonb -> j.id::text ->> 1)::double precision),
        worker_id = NULL,
        lease_expires_at = NULL,
        progress = NULL,
        progress_message = NULL,
        errors = {schema}.append_error_v1(j.errors, %(jobs)s::jsonb -> j.id::text -> 2)
    FROM clock
    WHERE j.id = ANY (ARRAY(SELECT jsonb_object_keys(%(jobs)s::jsonb)::bigint))
      AND j.worker_id = %(worker_id)s
      AND j.claims = (%(jobs)s::jsonb -> j.id::text ->> 0)::integer
      AND j.abort_requested_at IS NULL
    RETURNING j.id, j.queue, j.task, j.started_at,
              (CASE WHEN j.state = 'available' THEN pg_notify(%(channel)s, j.queue) END) IS NOT NULL AS notified
), ended AS (
    INSERT INTO {schema}.attempt_ends (queue, task, started_at, failed)
    SELECT queue, task, started_at, true FROM retried
)
SELECT id, notified FROM retried;

-- name: bury_jobs
-- Move jobs that may not run again to the dead-letter table with their last error; settles
-- those with followers, in a batch or awaited (as complete_jobs does).
-- %(jobs)s: {"<id>": [claims, error]}.
WITH gone AS (
    DELETE FROM {schema}.jobs j
    WHERE j.id = ANY (ARRAY(SELECT jsonb_object_keys(%(jobs)s::jsonb)::bigint))
      AND j.worker_id = %(worker_id)s
      AND j.claims = (%(jobs)s::jsonb -> j.id::text ->> 0)::integer
    RETURNING j.*
), buried AS (
    INSERT INTO {schema}.dead_jobs
        (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts, claims, priority, queue, task,
         unique_key, args, errors, key, meta, after_id, batch_id)
    SELECT id, run_at, enqueued_at, started_at, coalesce(%(now)s::timestamptz, now()), attempt, max_attempts,
           claims, priority, queue, task, unique_key, args,
           {schema}.append_error_v1(errors, %(jobs)s::jsonb -> id::text -> 1), key, meta, after_id, batch_id
    FROM gone
    RETURNING id
), settled AS (
    SELECT {schema}.settle_v1('dead', f.followed, f.batch_ids, f.awaited, coalesce(%(now)s::timestamptz, now()))
    FROM (
        SELECT array_agg(id) FILTER (WHERE has_followers) AS followed,
               array_agg(batch_id) FILTER (WHERE batch_id IS NOT NULL) AS batch_ids,
               array_agg(id) FILTER (WHERE awaited) AS awaited
        FROM gone
    ) AS f
    WHERE f.followed IS NOT NULL OR f.batch_ids IS NOT NULL OR f.awaited IS NOT NULL
)
SELECT id FROM buried WHERE (SELECT count(*) FROM settled) >= 0;

-- name: release_jobs
-- Hand unfinished jobs back at shutdown: available at once. A job's first 5 hand-backs do
-- not count as attempts (attempt goes down by one); later ones do, so a job that outlasts
-- every grace period is not handed back forever: on its last attempt such a hand-back moves
-- it to the dead-letter table. Returns (outcome, id): 'released' or 'dead'. A job whose abort
-- was asked for is neither (the worker records it as aborted: see Worker._shutdown).
-- %(jobs)s: {"<id>": claims}.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), released AS (
    UPDATE {schema}.jobs j
    SET state = 'available',
        attempt = j.attempt - (j.handbacks < 5)::integer,
        handbacks = j.handbacks + 1,
        run_at = clock.now,
        worker_id = NULL,
        lease_expires_at = NULL,
        progress = NULL,
        progress_message = NULL,
        errors = {schema}.append_error_v1(j.errors, jsonb_build_object(
            'attempt', j.attempt, 'at', clock.now, 'worker', j.worker_id, 'counted', j.handbacks >= 5,
            'error', CASE WHEN j.handbacks < 5
                THEN 'interrupted: the worker shut down before the job finished; handed back to the queue'
                ELSE 'interrupted: the worker shut down before the job finished; handed back to the queue, '
                     'counted as an attempt after 5 hand-backs' END))
    FROM clock
    WHERE j.id = ANY (ARRAY(SELECT jsonb_object_keys(%(jobs)s::jsonb)::bigint))
      AND j.worker_id = %(worker_id)s
      AND j.claims = (%(jobs)s::jsonb ->> j.id::text)::integer
      AND (j.handbacks < 5 OR j.attempt < j.max_attempts)
      AND j.abort_requested_at IS NULL
    RETURNING j.id, j.queue, j.task, j.started_at
), handed_back AS (
    -- For the metrics' count of starts (see retry_jobs): an attempt handed back is no failure.
    INSERT INTO {schema}.attempt_ends (queue, task, started_at, failed)
    SELECT queue, task, started_at, false FROM released
), gone AS (
    DELETE FROM {schema}.jobs j
    WHERE j.id = ANY (ARRAY(SELECT jsonb_object_keys(%(jobs)s::jsonb)::bigint))
      AND j.worker_id = %(worker_id)s
      AND j.claims = (%(jobs)s::jsonb ->> j.id::text)::integer
      AND j.handbacks >= 5 AND j.attempt >= j.max_attempts
      AND j.abort_requested_at IS NULL
    RETURNING j.*
), buried AS (
    INSERT INTO {schema}.dead_jobs
        (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts, claims, priority, queue, task,
         unique_key, args, errors, key, meta, after_id, batch_id)
    SELECT gone.id, gone.run_at, gone.enqueued_at, gone.started_at, clock.now, gone.attempt, gone.max_attempts,
           gone.claims, gone.priority, gone.queue, gone.task, gone.unique_key, gone.args,
           {schema}.append_error_v1(gone.errors, jsonb_build_object(
               'attempt', gone.attempt, 'at', clock.now, 'worker', gone.worker_id, 'counted', true,
               'error', 'interrupted: the worker shut down before the job finished, on its last attempt, '
                        'after 5 hand-backs')),
           gone.key, gone.meta, gone.after_id, gone.batch_id
    FROM gone, clock
    RETURNING id
), settled AS (
    -- The buried jobs with followers, in a batch or awaited (see complete_jobs).
    SELECT {schema}.settle_v1('dead', f.followed, f.batch_ids, f.awaited, clock.now)
    FROM (
        SELECT array_agg(id) FILTER (WHERE has_followers) AS followed,
               array_agg(batch_id) FILTER (WHERE batch_id IS NOT NULL) AS batch_ids,
               array_agg(id) FILTER (WHERE awaited) AS awaited
        FROM gone
    ) AS f, clock
    WHERE f.followed IS NOT NULL OR f.batch_ids IS NOT NULL OR f.awaited IS NOT NULL
)
SELECT 'released' AS outcome, id, pg_notify(%(channel)s, queue) IS NOT NULL AS notified FROM released
UNION ALL
SELECT 'dead', id, true FROM buried WHERE (SELECT count(*) FROM settled) >= 0;

-- name: allow_follow_ups_time
-- Inside an ack's transaction that writes follow-up jobs: the rest of the transaction may run
-- for %(milliseconds)s ms (a text) instead of the connection's statement_timeout (see
-- Database.record_outcomes).
SELECT set_config('statement_timeout', %(milliseconds)s, true);

-- name: extend_leases
-- Heartbeat: push back the lease of the jobs this worker still holds; returns those ids,
-- each with whether its abort was asked for (so an abort whose notification was lost still
-- arrives). %(jobs)s: {"<id>": claims}.
UPDATE {schema}.jobs j
SET lease_expires_at = coalesce(%(now)s::timestamptz, now()) + %(lease)s::interval
WHERE j.id = ANY (ARRAY(SELECT jsonb_object_keys(%(jobs)s::jsonb)::bigint))
  AND j.worker_id = %(worker_id)s
  AND j.claims = (%(jobs)s::jsonb ->> j.id::text)::integer
RETURNING j.id, j.abort_requested_at IS NOT NULL AS abort_requested;

-- name: extend_leases_unless_locked
-- The same, for jobs whose outcome this worker is writing: a row that write has locked is
-- skipped (the completer extends it after the write, if the write fails), one whose write
-- still waits for something else (a lock on job_history) is extended. Rows it does not return
-- are not lost: the write says what became of them.
WITH free AS (
    SELECT j.id
    FROM {schema}.jobs j
    WHERE j.id = ANY (ARRAY(SELECT jsonb_object_keys(%(jobs)s::jsonb)::bigint))
      AND j.worker_id = %(worker_id)s
      AND j.claims = (%(jobs)s::jsonb ->> j.id::text)::integer
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.jobs j
SET lease_expires_at = coalesce(%(now)s::timestamptz, now()) + %(lease)s::interval
FROM free
WHERE j.id = free.id
RETURNING j.id, j.abort_requested_at IS NOT NULL AS abort_requested;

-- name: set_progress
-- Record running jobs' progress (0-100) and messages.
-- %(jobs)s: {"<id>": [claims, progress, message]}.
UPDATE {schema}.jobs j
SET progress = (%(jobs)s::jsonb -> j.id::text ->> 1)::smallint,
    progress_message = %(jobs)s::jsonb -> j.id::text ->> 2
WHERE j.id = ANY (ARRAY(SELECT jsonb_object_keys(%(jobs)s::jsonb)::bigint))
  AND j.worker_id = %(worker_id)s
  AND j.claims = (%(jobs)s::jsonb -> j.id::text ->> 0)::integer;
