-- Job control (docs/job-control.md): pauses of tasks and of everything, and one job's cancel,
-- abort, run now and delete. The SQL functions are in sql/migrations/0010_job_control.up.sql;
-- every job that ends as cancelled ends through cancel_jobs_v1.

-- name: pause_task
-- Stop every worker starting jobs of a task (running ones finish).
SELECT {schema}.pause_task_v1(%(task)s);

-- name: resume_task
-- Let a paused task's jobs start again, and wake the workers of their queues.
SELECT {schema}.resume_task_v1(%(task)s);

-- name: pause_all
-- Stop every worker starting any job (running ones finish).
SELECT {schema}.pause_all_v1();

-- name: resume_all
-- Let jobs start again after pause_all, and wake the workers of every queue with waiting jobs.
SELECT {schema}.resume_all_v1();

-- name: list_pauses
-- What is paused besides queues: scope 'all' (everything) or 'task' (name: the task).
SELECT scope, name, paused_at FROM {schema}.pauses ORDER BY scope, name;

-- name: list_tasks
-- The tasks workers declared (sync_tasks) and the paused ones, with whether each is paused.
SELECT coalesce(t.name, p.name) AS name, t.queue, p.paused_at IS NOT NULL AS paused, p.paused_at
FROM {schema}.tasks t
FULL JOIN (SELECT name, paused_at FROM {schema}.pauses WHERE scope = 'task') AS p ON p.name = t.name
ORDER BY 1;

-- name: cancel_job
-- Cancel a job: one that waits moves to history as cancelled; a running one is aborted.
SELECT {schema}.cancel_job_v1(%(id)s, %(reason)s, %(by)s, %(now)s::timestamptz);

-- name: abort_job
-- Abort a running job on whichever worker holds it (a job that waits is cancelled).
SELECT {schema}.abort_job_v1(%(id)s, %(reason)s, %(by)s, %(now)s::timestamptz);

-- name: run_job_now
-- Make a scheduled job (or a retry waiting out its backoff) available now, and wake its queue.
SELECT {schema}.run_job_now_v1(%(id)s, %(now)s::timestamptz);

-- name: delete_job
-- Remove a waiting or scheduled job without a trace in history.
SELECT {schema}.delete_job_v1(%(id)s);

-- name: listen_control
-- Subscribe to the control channel "<schema>.control": 'abort <id>' and 'rescan'.
LISTEN {control};

-- name: record_aborted
-- A worker stopped aborted jobs: those it still holds (fenced as every outcome) end as
-- cancelled with the error "aborted". %(jobs)s: {"<id>": claims}. Returns the ids moved.
SELECT {schema}.cancel_jobs_v1(ARRAY(
    SELECT j.id FROM {schema}.jobs j
    WHERE j.id = ANY (ARRAY(SELECT jsonb_object_keys(%(jobs)s::jsonb)::bigint))
      AND j.worker_id = %(worker_id)s
      AND j.claims = (%(jobs)s::jsonb ->> j.id::text)::integer
    ORDER BY j.id
    FOR UPDATE), 'aborted', NULL, coalesce(%(now)s::timestamptz, now())) AS id;

-- name: cancel_aborted_expired
-- Aborted jobs whose worker stopped heartbeating before it stopped them (the rescue leaves
-- these out): they end as cancelled, not run again. Returns the ids moved. cancel_jobs_v1
-- is called only when there are some: it writes job_history, which may be locked (DDL, a
-- retention step), and the maintenance pass must not wait on that for nothing.
SELECT {schema}.cancel_jobs_v1(e.ids,
    'aborted (its worker stopped heartbeating before it stopped the job)', NULL,
    coalesce(%(now)s::timestamptz, now())) AS id
FROM (
    SELECT ARRAY(
        SELECT j.id FROM {schema}.jobs j
        WHERE j.state = 'running' AND j.abort_requested_at IS NOT NULL
          AND j.lease_expires_at < coalesce(%(now)s::timestamptz, now())
        ORDER BY j.id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED) AS ids
) AS e
WHERE cardinality(e.ids) > 0;
