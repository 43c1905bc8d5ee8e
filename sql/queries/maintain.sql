-- Housekeeping. Every statement here is safe to run from many processes at once: rows are
-- taken with SKIP LOCKED and every change is conditional on the row's current state.

-- name: promote_due_jobs
-- Make scheduled jobs whose time has come available, and wake their queues' workers.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), due AS (
    SELECT j.id FROM {schema}.jobs j
    WHERE j.state = 'scheduled' AND j.run_at <= (SELECT now FROM clock)
    ORDER BY j.run_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), promoted AS (
    UPDATE {schema}.jobs j SET state = 'available'
    FROM due WHERE j.id = due.id
    RETURNING j.queue
)
SELECT queue, count(*) AS jobs, pg_notify(%(channel)s, queue) IS NOT NULL AS notified
FROM promoted GROUP BY queue;

-- name: seconds_to_next_scheduled
-- Seconds until the earliest scheduled job falls due, by the database's clock (NULL if none).
SELECT extract(epoch FROM min(run_at) - coalesce(%(now)s::timestamptz, now()))
FROM {schema}.jobs WHERE state = 'scheduled';

-- name: rescue_expired_jobs
-- Jobs whose lease ran out (their worker died or hung): back to the queue while attempts
-- remain, to the dead-letter table otherwise. Returns per job the outcome ('retried' or
-- 'dead') and the job as a claim returns it (for the rescuing worker's log and hooks).
-- Jobs whose abort was asked for are left to cancel_aborted_expired (sql/queries/control.sql).
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), expired AS (
    SELECT j.id FROM {schema}.jobs j
    WHERE j.state = 'running' AND j.lease_expires_at < (SELECT now FROM clock)
      AND j.abort_requested_at IS NULL  -- aborted: cancel_aborted_expired ends it as cancelled
    ORDER BY j.lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), retried AS (
    UPDATE {schema}.jobs j
    SET state = 'available',
        run_at = clock.now,
        worker_id = NULL,
        lease_expires_at = NULL,
        progress = NULL,
        progress_message = NULL,
        errors = {schema}.append_error_v1(j.errors, jsonb_build_object(
            'attempt', j.attempt, 'at', clock.now, 'worker', j.worker_id,
            'error', 'lease expired: the worker stopped sending heartbeats (killed, crashed or hung)'))
    FROM expired, clock
    WHERE j.id = expired.id AND j.attempt < j.max_attempts
    RETURNING j.id, j.claims, j.queue, j.task, j.args, j.attempt, j.max_attempts, j.priority, j.enqueued_at,
              j.run_at, j.started_at
), ended AS (
    -- A lost lease is a failed attempt: for the metrics' counting step (see retry_jobs).
    INSERT INTO {schema}.attempt_ends (queue, task, started_at, failed)
    SELECT queue, task, started_at, true FROM retried
), gone AS (
    DELETE FROM {schema}.jobs j
    USING expired
    WHERE j.id = expired.id AND j.attempt >= j.max_attempts
    RETURNING j.*
), buried AS (
    INSERT INTO {schema}.dead_jobs
        (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts, claims, priority, queue, task,
         unique_key, args, errors, key, meta, after_id, batch_id)
    SELECT gone.id, gone.run_at, gone.enqueued_at, gone.started_at, clock.now, gone.attempt, gone.max_attempts,
           gone.claims, gone.priority, gone.queue, gone.task, gone.unique_key, gone.args,
           {schema}.append_error_v1(gone.errors, jsonb_build_object(
               'attempt', gone.attempt, 'at', clock.now, 'worker', gone.worker_id,
               'error', 'lease expired: the worker stopped sending heartbeats (killed, crashed or hung)')),
           gone.key, gone.meta, gone.after_id, gone.batch_id
    FROM gone, clock
    RETURNING id, claims, queue, task, args, attempt, max_attempts, priority, enqueued_at, run_at
), settled AS (
    -- The dead jobs with followers, in a batch or awaited (see complete_jobs in execute.sql).
    SELECT {schema}.settle_v1('dead', f.followed, f.batch_ids, f.awaited, clock.now)
    FROM (
        SELECT array_agg(id) FILTER (WHERE has_followers) AS followed,
               array_agg(batch_id) FILTER (WHERE batch_id IS NOT NULL) AS batch_ids,
               array_agg(id) FILTER (WHERE awaited) AS awaited
        FROM gone
    ) AS f, clock
    WHERE f.followed IS NOT NULL OR f.batch_ids IS NOT NULL OR f.awaited IS NOT NULL
)
SELECT 'retried' AS outcome, r.id, r.claims, r.queue, r.task, r.args, r.attempt, r.max_attempts, r.priority,
       r.enqueued_at, r.run_at, pg_notify(%(channel)s, r.queue) IS NOT NULL AS notified
FROM retried r
UNION ALL
SELECT 'dead', b.*, true FROM buried b WHERE (SELECT count(*) FROM settled) >= 0;

-- name: register_worker
-- Record a worker process starting; returns its start time (the worker writes it again if
-- its row goes: restore_worker).
INSERT INTO {schema}.workers (id, hostname, pid, queues, concurrency, started_at, heartbeat_at)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s,
        coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()))
RETURNING started_at;

-- name: heartbeat_worker
-- Record that a worker is alive; returns a row if it had a row to touch (see restore_worker).
UPDATE {schema}.workers SET heartbeat_at = coalesce(%(now)s::timestamptz, now()) WHERE id = %(id)s
RETURNING 1;

-- name: restore_worker
-- Write a live worker's row again, as it registered (its own start time), after a heartbeat
-- found none: the upkeep forgets workers silent for an hour (prune_workers), and a worker cut
-- off from the database that long may come back and work on.
INSERT INTO {schema}.workers (id, hostname, pid, queues, concurrency, started_at, heartbeat_at)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, %(started_at)s,
        coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at;

-- name: unregister_worker
-- Forget a worker that stopped cleanly.
DELETE FROM {schema}.workers WHERE id = %(id)s;

-- name: prune_workers
-- Forget workers silent for longer than %(silent_for)s.
DELETE FROM {schema}.workers
WHERE heartbeat_at < coalesce(%(now)s::timestamptz, now()) - %(silent_for)s::interval;

-- name: sync_tasks
-- Record the tasks a worker knows, with their defaults, for enqueue() from SQL.
INSERT INTO {schema}.tasks (name, queue, priority, max_attempts, timeout_seconds, updated_at)
SELECT name, queue, priority, max_attempts, timeout_seconds, now()
FROM unnest(%(names)s::text[], %(queues)s::text[], %(priorities)s::smallint[],
            %(max_attempts)s::integer[], %(timeouts)s::double precision[])
     AS t (name, queue, priority, max_attempts, timeout_seconds)
ON CONFLICT (name) DO UPDATE
SET queue = excluded.queue, priority = excluded.priority, max_attempts = excluded.max_attempts,
    timeout_seconds = excluded.timeout_seconds, updated_at = excluded.updated_at;

-- name: create_queues
-- Create queues that do not exist yet.
INSERT INTO {schema}.queues (name) SELECT unnest(%(names)s::text[]) ON CONFLICT DO NOTHING;

-- name: ensure_history_partitions
-- Create the daily history partitions around now that are missing.
SELECT {schema}.ensure_history_partitions_v1(%(days_ahead)s, coalesce(%(now)s::timestamptz, now()));

-- name: listen
-- Subscribe to the schema's channel: payloads are queue names.
LISTEN {schema};

-- name: ping
-- Check that a connection still answers.
SELECT 1;
