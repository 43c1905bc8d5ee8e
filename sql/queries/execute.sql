-- The hot path of a worker: claim, then record outcomes. Every write to a claimed job is
-- fenced on (id, claims, worker_id, state = 'running'), claims being the job's claim count,
-- which only ever goes up: a worker that lost its lease (rescued, handed back, re-claimed,
-- even by itself) matches no row and changes nothing.

-- name: use_generic_plans
-- For a worker's connections: prepared statements run their generic plan (see Database).
SET plan_cache_mode = force_generic_plan;

-- name: claim_jobs
-- Claim up to %(limit)s due jobs from the worker's queues in priority order, skipping
-- paused queues and rows other workers hold. %(limits)s caps each queue's share.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), wanted AS (
    SELECT w.queue, w.max_jobs
    FROM unnest(%(queues)s::text[], %(limits)s::integer[]) AS w (queue, max_jobs)
    LEFT JOIN {schema}.queues q ON q.name = w.queue
    WHERE q.paused IS NOT TRUE
), candidates AS (
    SELECT c.id, c.priority, c.run_at
    FROM wanted w
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at
        FROM {schema}.jobs j
        WHERE j.state = 'available' AND j.queue = w.queue
        ORDER BY j.priority, j.run_at, j.id
        LIMIT w.max_jobs
        FOR UPDATE SKIP LOCKED
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
RETURNING j.id, j.claims, j.queue, j.task, j.args, j.attempt, j.max_attempts, j.priority, j.enqueued_at;

-- name: complete_jobs
-- Move finished jobs to history with their results; returns the ids that were still ours.
WITH done AS (
    DELETE FROM {schema}.jobs j
    USING unnest(%(ids)s::bigint[], %(claims)s::integer[], %(results)s::text[]) AS d (id, claims, result)
    WHERE j.id = d.id AND j.claims = d.claims AND j.worker_id = %(worker_id)s AND j.state = 'running'
    RETURNING j.*, d.result AS outcome
)
INSERT INTO {schema}.job_history
    (id, run_at, enqueued_at, started_at, finished_at, worker_id, attempt, max_attempts, priority,
     state, queue, task, unique_key, args, result, errors)
SELECT id, run_at, enqueued_at, started_at, coalesce(%(now)s::timestamptz, now()), worker_id, attempt,
       max_attempts, priority, 'completed', queue, task, unique_key, args, outcome::jsonb, errors
FROM done
RETURNING id;

-- name: retry_jobs
-- Put failed jobs back to run again after their backoff; records each error.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), failed AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(claims)s::integer[], %(delays)s::double precision[],
                         %(errors)s::text[]) AS f (id, claims, delay, error)
)
UPDATE {schema}.jobs j
SET state = CASE WHEN failed.delay <= 0 THEN 'available' ELSE 'scheduled' END,
    run_at = clock.now + make_interval(secs => failed.delay),
    worker_id = NULL,
    lease_expires_at = NULL,
    progress = NULL,
    progress_message = NULL,
    errors = j.errors || jsonb_build_array(failed.error::jsonb)
FROM failed, clock
WHERE j.id = failed.id AND j.claims = failed.claims AND j.worker_id = %(worker_id)s AND j.state = 'running'
RETURNING j.id, (CASE WHEN j.state = 'available' THEN pg_notify(%(channel)s, j.queue) END) IS NOT NULL AS notified;

-- name: bury_jobs
-- Move jobs that may not run again to the dead-letter table with their last error.
WITH failed AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(claims)s::integer[], %(errors)s::text[]) AS f (id, claims, error)
), gone AS (
    DELETE FROM {schema}.jobs j
    USING failed
    WHERE j.id = failed.id AND j.claims = failed.claims AND j.worker_id = %(worker_id)s AND j.state = 'running'
    RETURNING j.*, failed.error AS last_error
)
INSERT INTO {schema}.dead_jobs
    (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts, claims, priority, queue, task,
     unique_key, args, errors)
SELECT id, run_at, enqueued_at, started_at, coalesce(%(now)s::timestamptz, now()), attempt, max_attempts,
       claims, priority, queue, task, unique_key, args, errors || jsonb_build_array(last_error::jsonb)
FROM gone
RETURNING id;

-- name: release_jobs
-- Hand unfinished jobs back at shutdown: available at once, the attempt not counted.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), held AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(claims)s::integer[]) AS h (id, claims)
)
UPDATE {schema}.jobs j
SET state = 'available',
    attempt = j.attempt - 1,
    run_at = clock.now,
    worker_id = NULL,
    lease_expires_at = NULL,
    progress = NULL,
    progress_message = NULL,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt, 'at', clock.now, 'worker', j.worker_id, 'counted', false,
        'error', 'interrupted: the worker shut down before the job finished; handed back to the queue'))
FROM held, clock
WHERE j.id = held.id AND j.claims = held.claims AND j.worker_id = %(worker_id)s AND j.state = 'running'
RETURNING j.id, pg_notify(%(channel)s, j.queue) IS NOT NULL AS notified;

-- name: extend_leases
-- Heartbeat: push back the lease of the jobs this worker still holds; returns those ids.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
)
UPDATE {schema}.jobs j
SET lease_expires_at = clock.now + %(lease)s::interval
FROM unnest(%(ids)s::bigint[], %(claims)s::integer[]) AS h (id, claims), clock
WHERE j.id = h.id AND j.claims = h.claims AND j.worker_id = %(worker_id)s AND j.state = 'running'
RETURNING j.id;

-- name: set_progress
-- Record running jobs' progress (0-100) and messages.
UPDATE {schema}.jobs j
SET progress = p.progress, progress_message = p.message
FROM unnest(%(ids)s::bigint[], %(claims)s::integer[], %(progress)s::smallint[], %(messages)s::text[])
     AS p (id, claims, progress, message)
WHERE j.id = p.id AND j.claims = p.claims AND j.worker_id = %(worker_id)s AND j.state = 'running';
