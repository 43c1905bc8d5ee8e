-- Reading and operating on jobs and queues: the CLI, and later the API and dashboard.

-- name: queue_stats
-- One row per queue from the queue_stats view.
SELECT queue, paused, waiting, scheduled, running, completed_24h, dead, oldest_waiting_age,
       all_paused, paused_tasks
FROM {schema}.queue_stats ORDER BY queue;

-- name: get_job
-- One job wherever it is (jobs, job_history or dead_jobs), read in one statement: one
-- snapshot, so a job moving between the tables is found in exactly one of them. Each table
-- is probed by id; the columns a table lacks are NULL (a dead job's state is 'dead').
SELECT id, queue, task, state::text AS state, priority::smallint AS priority, attempt,
       max_attempts::integer AS max_attempts, run_at, enqueued_at, started_at, NULL::timestamptz AS finished_at,
       NULL::timestamptz AS died_at, lease_expires_at, worker_id, unique_key, progress::smallint AS progress,
       progress_message, args::jsonb AS args, NULL::jsonb AS result, errors, key::text AS key, meta::jsonb AS meta,
       after_id, batch_id
FROM {schema}.jobs WHERE id = %(id)s
UNION ALL
SELECT id, queue, task, state, priority, attempt, max_attempts, run_at, enqueued_at, started_at, finished_at,
       NULL, NULL, worker_id, unique_key, CASE WHEN state = 'completed' THEN 100 END, NULL, args, result, errors,
       key, meta, after_id, batch_id
FROM {schema}.job_history WHERE id = %(id)s
UNION ALL
SELECT id, queue, task, 'dead', priority, attempt, max_attempts, run_at, enqueued_at, started_at, NULL,
       died_at, NULL, NULL, unique_key, NULL, NULL, args, NULL, errors, key, meta, after_id, batch_id
FROM {schema}.dead_jobs WHERE id = %(id)s;

-- name: list_dead_jobs
-- Dead jobs, newest first, filtered by queue and task when given.
SELECT id, queue, task, attempt, max_attempts, died_at, errors -> -1 ->> 'error' AS last_error
FROM {schema}.dead_jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
ORDER BY died_at DESC, id DESC
LIMIT %(limit)s;

-- name: get_dead_job
-- One dead job with every error.
SELECT id, queue, task, priority, attempt, max_attempts, enqueued_at, started_at, died_at, unique_key,
       args, errors
FROM {schema}.dead_jobs WHERE id = %(id)s;

-- name: retry_dead_job
-- Put one dead job back with a fresh attempt budget (its death and last start are added to
-- the metric totals if no count has reached them yet).
SELECT {schema}.retry_dead_v3(%(id)s);

-- name: find_dead_jobs
-- The ids of the dead jobs matching the filters, oldest first.
SELECT id FROM {schema}.dead_jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
ORDER BY id;

-- name: retry_dead_job_matching
-- Put one dead job back, as retry_dead_job, only if it still matches the filters it was chosen
-- by (queue, task, died in [died_after, died_before)): a bulk retry picks ids first, and
-- meanwhile a job may have been retried and have died again, after the range. The row is
-- locked before retry_dead_v3 takes it (counting its death for the metrics), so the check
-- holds for the row it moves. Returns the job's id, or no row when the job no longer matches
-- (or is no longer dead).
WITH mark AS MATERIALIZED (
    -- The metric mark's lock first, as retry_dead_v3 and purge_dead_v2 take it before any
    -- dead row: the same order everywhere, so a retry and a purge never deadlock.
    SELECT {schema}.metric_mark_lock_v1() AS counted_to
), still AS MATERIALIZED (
    SELECT d.id FROM mark, {schema}.dead_jobs d
    WHERE d.id = %(id)s
      AND (%(queue)s::text IS NULL OR d.queue = %(queue)s)
      AND (%(task)s::text IS NULL OR d.task = %(task)s)
      AND (%(died_after)s::timestamptz IS NULL OR d.died_at >= %(died_after)s)
      AND (%(died_before)s::timestamptz IS NULL OR d.died_at < %(died_before)s)
    FOR UPDATE OF d
)
SELECT {schema}.retry_dead_v3(still.id) FROM still;

-- name: purge_dead_jobs
-- Delete dead jobs matching every filter given (ids, queue, task, died in [died_after,
-- died_before), died more than older_than before the database's now()); returns how many.
-- Each row is checked again and locked as it is picked (a purge by filter picks ids first,
-- and a job retried meanwhile that died again outside the range stays), then purge_dead_v2
-- deletes them, adding their deaths and last starts to the metric totals if no count has
-- reached them yet.
-- The metric mark's lock is taken before any dead row (the order retry_dead_v3 takes them in).
WITH mark AS MATERIALIZED (
    SELECT {schema}.metric_mark_lock_v1() AS counted_to
)
SELECT {schema}.purge_dead_v2(
    ARRAY(
        SELECT d.id FROM mark, {schema}.dead_jobs d
        WHERE (%(ids)s::bigint[] IS NULL OR d.id = ANY (%(ids)s::bigint[]))
          AND (%(queue)s::text IS NULL OR d.queue = %(queue)s)
          AND (%(task)s::text IS NULL OR d.task = %(task)s)
          AND (%(died_after)s::timestamptz IS NULL OR d.died_at >= %(died_after)s)
          AND (%(died_before)s::timestamptz IS NULL OR d.died_at < %(died_before)s)
          AND (%(older_than)s::interval IS NULL OR d.died_at < now() - %(older_than)s::interval)
        ORDER BY d.id
        FOR UPDATE OF d
    ),
    %(queue)s::text, %(task)s::text, %(older_than)s::interval
);

-- name: pause_queue
-- Stop workers claiming from a queue (creates it paused if it does not exist).
SELECT {schema}.pause_queue_v1(%(queue)s);

-- name: resume_queue
-- Let workers claim from a queue again, and wake them.
SELECT {schema}.resume_queue_v1(%(queue)s);

-- name: registered_tasks
-- The defaults workers recorded for these tasks (sync_tasks), for a producer that enqueues
-- a task by name without importing it.
SELECT name, queue, priority, max_attempts, timeout_seconds
FROM {schema}.tasks WHERE name = ANY(%(names)s::text[]);

-- name: scheduler_status
-- Who leads the scheduler role, until when, and when it last ticked (a leader renews its
-- lease every tick), and how many schedules would fire: `conveyor status` and the worker's
-- start-up warning.
SELECT l.holder, l.hostname, l.pid, l.elected_at, l.expires_at, l.renewed_at,
       (SELECT count(*) FROM {schema}.schedules WHERE NOT paused) AS active_schedules,
       coalesce(%(now)s::timestamptz, now()) AS checked_at
FROM (SELECT 1) AS one
LEFT JOIN {schema}.leaders l ON l.role = 'scheduler';

-- name: list_jobs
-- Jobs wherever they are (live, finished, dead), newest first, filtered when asked; one page
-- of keyset paging: ids below %(before)s. Each table is read by its id index, and a state
-- filter skips the tables that cannot hold that state.
SELECT id, queue, task, state, priority, attempt, max_attempts, run_at, enqueued_at, finished_at, last_error
FROM (
    (SELECT id, queue, task, state::text AS state, priority::smallint AS priority, attempt,
            max_attempts::integer AS max_attempts, run_at, enqueued_at, NULL::timestamptz AS finished_at,
            errors -> -1 ->> 'error' AS last_error
     FROM {schema}.jobs
     WHERE (%(before)s::bigint IS NULL OR id < %(before)s)
       AND (%(queue)s::text IS NULL OR queue = %(queue)s)
       AND (%(task)s::text IS NULL OR task = %(task)s)
       AND (%(state)s::text IS NULL OR (%(state)s IN ('available', 'scheduled', 'running', 'blocked') AND state = %(state)s))
     ORDER BY id DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT id, queue, task, state, priority, attempt, max_attempts, run_at, enqueued_at, finished_at,
            errors -> -1 ->> 'error'
     FROM {schema}.job_history
     WHERE (%(before)s::bigint IS NULL OR id < %(before)s)
       AND (%(queue)s::text IS NULL OR queue = %(queue)s)
       AND (%(task)s::text IS NULL OR task = %(task)s)
       AND (%(state)s::text IS NULL OR (%(state)s IN ('completed', 'cancelled') AND state = %(state)s))
     ORDER BY id DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT id, queue, task, 'dead', priority, attempt, max_attempts, run_at, enqueued_at, died_at,
            errors -> -1 ->> 'error'
     FROM {schema}.dead_jobs
     WHERE (%(before)s::bigint IS NULL OR id < %(before)s)
       AND (%(queue)s::text IS NULL OR queue = %(queue)s)
       AND (%(task)s::text IS NULL OR task = %(task)s)
       AND (%(state)s::text IS NULL OR %(state)s = 'dead')
     ORDER BY id DESC LIMIT %(limit)s)
) AS found
ORDER BY id DESC
LIMIT %(limit)s;

-- name: testing_enqueued_jobs
-- Unfinished jobs (waiting, scheduled, blocked, running) in id order, filtered by task and queue;
-- conveyor.testing runs it on the caller's own connection, so its uncommitted jobs are seen.
SELECT id, queue, task, state::text AS state, priority::smallint AS priority, args::jsonb AS args,
       run_at, unique_key, max_attempts::integer AS max_attempts, key::text AS key, meta::jsonb AS meta
FROM {schema}.jobs
WHERE (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
ORDER BY id
LIMIT %(limit)s;
