-- Conveyor schema, version 10: job control. Pausing one task everywhere or everything, and
-- cancelling, aborting, running now and deleting single jobs (docs/job-control.md).
--
-- Pauses. A row in pauses (scope 'all') stops every claim; a row (scope 'task', name) makes
-- claims skip that task's jobs. Running jobs finish; nothing new starts until the row goes.
-- The plain claims (sql/queries/execute.sql) read pauses once per statement (an InitPlan
-- over a table that is empty unless someone paused something). A resume sends the wake-up
-- on the schema's channel for every queue holding waiting jobs it releases, and 'rescan' on
-- the channel "<schema>.control": the released jobs may sit behind a worker's claim
-- cursors, which skipped them while they were paused (see conveyor.queue.cursors). The
-- channel name is cut at 63 bytes, as PostgreSQL cuts identifiers: two schemas whose names
-- share their first 55 characters share it.
--
-- Ending a job as cancelled happens in ONE place: cancel_jobs_v1. Every path that cancels
-- (cancel_job_v1, abort_job_v1 on a job whose worker is gone, the worker's record of an
-- aborted attempt, the rescue of an aborted job whose lease ran out) calls it with ids it
-- has locked and checked.
--
-- States each function leaves (docs/job-control.md):
--   cancel_job_v1   waiting / scheduled / blocked -> job_history 'cancelled' ('cancelled');
--                   running -> as abort_job_v1; finished, dead or unknown -> an error.
--   abort_job_v1    running -> abort_requested_at set, "<schema>.control" 'abort <id>'
--                   ('aborting'); the worker stops the handler and records 'cancelled'.
--                   A running job whose lease has run out (its worker is gone) is cancelled
--                   at once ('cancelled'): a late write of that worker is fenced out.
--                   Not running -> as cancel_job_v1.
--   run_job_now_v1  scheduled -> available now, wake-up ('available'); available: no change.
--   delete_job_v1   waiting / scheduled -> removed, no history ('deleted').

-- == The one place a live job ends as cancelled ==========================================

-- Moves the given live jobs to job_history as 'cancelled', appending to each one's errors
-- {attempt, at, worker, error, by}. The caller has locked the rows (FOR UPDATE) and checked
-- that each may end so (and, for a running job, that its fence still holds). Returns the ids
-- moved, settled: what follows a cancelled job is cancelled, its batch counts it, its
-- waiting callers are woken (settle_v1).
CREATE FUNCTION cancel_jobs_v1(ids bigint[], error text, by text, at timestamptz)
RETURNS SETOF bigint
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    WITH gone AS (
        DELETE FROM jobs j WHERE j.id = ANY (cancel_jobs_v1.ids) RETURNING j.*
    ), moved AS (
        INSERT INTO job_history
            (id, run_at, enqueued_at, started_at, finished_at, worker_id, attempt, max_attempts, priority,
             state, queue, task, unique_key, args, result, errors, key, meta, after_id, batch_id)
        SELECT g.id, g.run_at, g.enqueued_at, g.started_at, coalesce(cancel_jobs_v1.at, now()), g.worker_id,
               g.attempt, g.max_attempts, g.priority, 'cancelled', g.queue, g.task, g.unique_key, g.args, NULL,
               append_error_v1(g.errors, jsonb_build_object(
                   'attempt', g.attempt, 'at', coalesce(cancel_jobs_v1.at, now()), 'worker', g.worker_id,
                   'error', cancel_jobs_v1.error, 'by', cancel_jobs_v1.by)),
               g.key, g.meta, g.after_id, g.batch_id
        FROM gone g
        RETURNING id
    ), settled AS (
        -- Their ends reach others (version 9, settle_v1): blocked followers are cancelled
        -- with the reason, batches count them, waiting callers are woken. NULLs (the common
        -- case) return at once.
        SELECT settle_v1('cancelled',
                         array_agg(g.id) FILTER (WHERE g.has_followers),
                         array_agg(g.batch_id) FILTER (WHERE g.batch_id IS NOT NULL),
                         array_agg(g.id) FILTER (WHERE g.awaited),
                         coalesce(cancel_jobs_v1.at, now()))
        FROM gone g
    )
    -- Reading settled makes it run (a CTE nobody reads is not executed).
    SELECT id FROM moved WHERE (SELECT count(*) FROM settled) >= 0;
$$;
COMMENT ON FUNCTION cancel_jobs_v1(bigint[], text, text, timestamptz) IS
    'Move locked, checked live jobs to job_history as cancelled, with an errors entry, and settle '
    'them (settle_v1); the one place a job ends as cancelled.';

-- == Pauses ==============================================================================

CREATE FUNCTION pause_task_v1(name text) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF pause_task_v1.name IS NULL OR pause_task_v1.name = '' THEN
        RAISE EXCEPTION 'conveyor.pause_task: a task name is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF char_length(pause_task_v1.name) > 200 THEN
        RAISE EXCEPTION 'conveyor.pause_task: a task name is at most 200 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pauses (scope, name) VALUES ('task', pause_task_v1.name)
    ON CONFLICT ON CONSTRAINT pauses_pkey DO NOTHING;
END;
$$;

-- Sends the wake-ups of what a resume released: each queue holding waiting jobs of the task
-- (every queue with waiting jobs, for task NULL), and 'rescan' for the workers' cursors.
CREATE FUNCTION wake_released_v1(task text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT pg_notify(current_schema(), q.queue)
    FROM (SELECT DISTINCT j.queue FROM jobs j
          WHERE j.state = 'available' AND (wake_released_v1.task IS NULL OR j.task = wake_released_v1.task)) AS q;
    SELECT pg_notify(left(current_schema() || '.control', 63), 'rescan');
$$;

CREATE FUNCTION resume_task_v1(name text) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF resume_task_v1.name IS NULL OR resume_task_v1.name = '' THEN
        RAISE EXCEPTION 'conveyor.resume_task: a task name is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM pauses WHERE scope = 'task' AND pauses.name = resume_task_v1.name;
    PERFORM wake_released_v1(resume_task_v1.name);
END;
$$;

CREATE FUNCTION pause_all_v1() RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    INSERT INTO pauses (scope, name) VALUES ('all', '') ON CONFLICT ON CONSTRAINT pauses_pkey DO NOTHING;
$$;

CREATE FUNCTION resume_all_v1() RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    DELETE FROM pauses WHERE scope = 'all';
    SELECT wake_released_v1(NULL);
$$;

-- == One job =============================================================================

-- Where a job that is not live is, for a refusal's message: 'completed' or 'cancelled'
-- (job_history), 'dead' (dead_jobs), or NULL (no such job).
CREATE FUNCTION finished_state_v1(job_id bigint) RETURNS text
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    SELECT coalesce((SELECT h.state FROM job_history h WHERE h.id = finished_state_v1.job_id LIMIT 1),
                    (SELECT 'dead' FROM dead_jobs d WHERE d.id = finished_state_v1.job_id));
$$;

-- Raises the refusal for a job that is not live: finished (object_not_in_prerequisite_state)
-- or unknown (no_data_found).
CREATE FUNCTION refuse_not_live_v1(fn text, job_id bigint) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    ended text := finished_state_v1(refuse_not_live_v1.job_id);
BEGIN
    IF ended IS NULL THEN
        RAISE EXCEPTION 'conveyor.%: no job with id %', fn, job_id USING ERRCODE = 'no_data_found';
    END IF;
    RAISE EXCEPTION 'conveyor.%: job % has already ended (%)', fn, job_id, ended
        USING ERRCODE = 'object_not_in_prerequisite_state';
END;
$$;

-- cancel_job_v1 and abort_job_v1 (caller: the name their refusals give): see the top of this file.
CREATE FUNCTION stop_job_v1(caller text, job_id bigint, reason text, by text, at timestamptz) RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    j jobs%ROWTYPE;
    moment timestamptz := coalesce(stop_job_v1.at, now());
    why text := CASE WHEN stop_job_v1.reason IS NULL OR stop_job_v1.reason = '' THEN ''
                     ELSE ': ' || stop_job_v1.reason END;
BEGIN
    SELECT * INTO j FROM jobs WHERE id = stop_job_v1.job_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM refuse_not_live_v1(stop_job_v1.caller, stop_job_v1.job_id);
    END IF;
    IF j.state <> 'running' THEN
        PERFORM cancel_jobs_v1(ARRAY[j.id], 'cancelled before it ran' || why, stop_job_v1.by, moment);
        RETURN 'cancelled';
    END IF;
    IF j.lease_expires_at < moment THEN
        -- Its worker stopped heartbeating: whatever it writes later is fenced out.
        PERFORM cancel_jobs_v1(ARRAY[j.id], 'aborted (its worker had stopped heartbeating)' || why,
                               stop_job_v1.by, moment);
        RETURN 'cancelled';
    END IF;
    IF j.abort_requested_at IS NULL THEN
        UPDATE jobs SET abort_requested_at = moment,
                        errors = append_error_v1(jobs.errors, jsonb_build_object(
                            'attempt', j.attempt, 'at', moment, 'worker', j.worker_id,
                            'error', 'abort requested' || why, 'by', stop_job_v1.by))
        WHERE jobs.id = j.id;
    END IF;
    PERFORM pg_notify(left(current_schema() || '.control', 63), 'abort ' || j.id);
    RETURN 'aborting';
END;
$$;

CREATE FUNCTION abort_job_v1(job_id bigint, reason text DEFAULT NULL, by text DEFAULT NULL,
                             at timestamptz DEFAULT NULL) RETURNS text
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT stop_job_v1('abort_job', abort_job_v1.job_id, abort_job_v1.reason, abort_job_v1.by, abort_job_v1.at);
$$;

-- Cancel of a running job is an abort: cancel and abort differ only in their refusals' name.
CREATE FUNCTION cancel_job_v1(job_id bigint, reason text DEFAULT NULL, by text DEFAULT NULL,
                              at timestamptz DEFAULT NULL) RETURNS text
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT stop_job_v1('cancel_job', cancel_job_v1.job_id, cancel_job_v1.reason, cancel_job_v1.by, cancel_job_v1.at);
$$;

CREATE FUNCTION run_job_now_v1(job_id bigint, at timestamptz DEFAULT NULL) RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    j jobs%ROWTYPE;
    moment timestamptz := coalesce(run_job_now_v1.at, now());
BEGIN
    SELECT * INTO j FROM jobs WHERE id = run_job_now_v1.job_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM refuse_not_live_v1('run_job_now', run_job_now_v1.job_id);
    END IF;
    IF j.state = 'running' THEN
        RAISE EXCEPTION 'conveyor.run_job_now: job % is running already', j.id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    ELSIF j.state = 'blocked' THEN
        RAISE EXCEPTION 'conveyor.run_job_now: job % waits for job % to complete; it cannot run before', j.id, j.after_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    ELSIF j.state = 'scheduled' THEN
        UPDATE jobs SET state = 'available', run_at = least(jobs.run_at, moment) WHERE jobs.id = j.id;
    END IF;
    PERFORM pg_notify(current_schema(), j.queue);
    RETURN 'available';
END;
$$;

CREATE FUNCTION delete_job_v1(job_id bigint) RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    j jobs%ROWTYPE;
BEGIN
    SELECT * INTO j FROM jobs WHERE id = delete_job_v1.job_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM refuse_not_live_v1('delete_job', delete_job_v1.job_id);
    END IF;
    IF j.state = 'running' THEN
        RAISE EXCEPTION 'conveyor.delete_job: job % is running; abort it instead', j.id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    ELSIF j.has_followers OR j.batch_id IS NOT NULL OR j.state = 'blocked' THEN
        -- Jobs chained after it, or its batch, wait for its end: a deletion would leave them
        -- waiting forever.
        RAISE EXCEPTION 'conveyor.delete_job: job % is part of a chain or a batch; cancel it instead', j.id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM jobs WHERE jobs.id = j.id;
    IF j.awaited THEN
        -- Callers awaiting it (Conveyor.result) are woken at once, as by any end (settle_v1's
        -- channel); they find no job and raise NotFoundError.
        PERFORM pg_notify(left(current_schema(), 58) || '.done', j.id::text);
    END IF;
    RETURN 'deleted';
END;
$$;

-- == queue_stats: what is paused ========================================================

-- queue_stats_v1, and: all_paused (everything is paused), paused_tasks (paused tasks with
-- jobs waiting in the queue). The count of jobs is the one pass version 1 made.
CREATE FUNCTION queue_stats_v2()
RETURNS TABLE (queue text, paused boolean, waiting bigint, scheduled bigint, running bigint,
               completed_24h bigint, dead bigint, oldest_waiting_age interval,
               all_paused boolean, paused_tasks text[])
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    everything boolean := EXISTS (SELECT FROM pauses p WHERE p.scope = 'all');
    held text[] := ARRAY(SELECT p.name FROM pauses p WHERE p.scope = 'task');
BEGIN
    RETURN QUERY
    SELECT s.queue, s.paused, s.waiting, s.scheduled, s.running, s.completed_24h, s.dead, s.oldest_waiting_age,
           everything,
           CASE WHEN cardinality(held) = 0 THEN '{}'::text[] ELSE ARRAY(
               SELECT DISTINCT j.task::text FROM jobs j
               WHERE j.queue = s.queue AND j.state = 'available' AND j.task = ANY (held) ORDER BY 1) END
    FROM queue_stats_v1() AS s;
END;
$$;

CREATE OR REPLACE VIEW queue_stats AS
SELECT queue, paused, waiting, scheduled, running, completed_24h, dead, oldest_waiting_age,
       all_paused, paused_tasks
FROM queue_stats_v2();
COMMENT ON VIEW queue_stats IS
    'Per queue: waiting (due now), scheduled (later), running, completed in the last 24 h (to '
    'the 5 minutes), dead, how long the oldest waiting job has waited, whether everything is '
    'paused, and the paused tasks with jobs waiting here.';

-- == The names without a version =========================================================

DO $wrappers$
BEGIN
    EXECUTE format($sql$
CREATE OR REPLACE FUNCTION %1$I.pause_task(name text) RETURNS void
LANGUAGE sql
AS $body$
    SELECT %1$I.pause_task_v1(pause_task.name);
$body$;

CREATE OR REPLACE FUNCTION %1$I.resume_task(name text) RETURNS void
LANGUAGE sql
AS $body$
    SELECT %1$I.resume_task_v1(resume_task.name);
$body$;

CREATE OR REPLACE FUNCTION %1$I.pause_all() RETURNS void
LANGUAGE sql
AS $body$
    SELECT %1$I.pause_all_v1();
$body$;

CREATE OR REPLACE FUNCTION %1$I.resume_all() RETURNS void
LANGUAGE sql
AS $body$
    SELECT %1$I.resume_all_v1();
$body$;

CREATE OR REPLACE FUNCTION %1$I.cancel_job(job_id bigint, reason text DEFAULT NULL, by text DEFAULT NULL)
RETURNS text
LANGUAGE sql
AS $body$
    SELECT %1$I.cancel_job_v1(cancel_job.job_id, cancel_job.reason, cancel_job.by);
$body$;

CREATE OR REPLACE FUNCTION %1$I.abort_job(job_id bigint, reason text DEFAULT NULL, by text DEFAULT NULL)
RETURNS text
LANGUAGE sql
AS $body$
    SELECT %1$I.abort_job_v1(abort_job.job_id, abort_job.reason, abort_job.by);
$body$;

CREATE OR REPLACE FUNCTION %1$I.run_job_now(job_id bigint) RETURNS text
LANGUAGE sql
AS $body$
    SELECT %1$I.run_job_now_v1(run_job_now.job_id);
$body$;

CREATE OR REPLACE FUNCTION %1$I.delete_job(job_id bigint) RETURNS text
LANGUAGE sql
AS $body$
    SELECT %1$I.delete_job_v1(delete_job.job_id);
$body$;
$sql$, current_schema());
END;
$wrappers$;
