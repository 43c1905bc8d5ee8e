-- Conveyor schema, version 6: one way to write a job row in SQL, and versioned functions.
--
-- Versioning rule. Every function Conveyor's runtime queries call has a versioned name
-- (name_v1); a query names the version it was written against. A fix to a function ships as
-- name_v2 in a new migration, next to name_v1: the wrapper without a version moves to it, new
-- code calls name_v2, and workers still running the older release keep calling name_v1,
-- which keeps working until they are replaced. name_v1 is dropped only in a later release.
-- The names without a version (conveyor.enqueue, conveyor.retry_dead, ...) are the API for
-- psql and other languages: thin wrappers, same signature and defaults, that call the
-- current version. A wrapper is a plain SQL function over one call with no SET clause, so
-- PostgreSQL inlines it into the caller's statement: it costs nothing per call. Its body
-- names the schema, written into it when it is made (an inlined body runs with the
-- caller's search_path).
--
-- One writer. enqueue, fire_schedule and retry_dead all write a job through insert_job_v1,
-- which decides for each:
--   run_at  the time given, else now plus the delay (job_due_v1);
--   state   'available' when due at or before now, else 'scheduled' (job_state_v1);
--   queue, priority, max_attempts  given, else the task's row in tasks, else 'default', 2, 5;
--   NOTIFY  on the schema's channel, with the queue's name, when the job is available.
-- The Python client writes the same rows with statements of its own (one round trip, no
-- function call); tests/integration/test_enqueue_conformance.py holds every writer to the
-- same row.
--
-- The args limit: conveyor.enqueue and create_schedule measured args as PostgreSQL's text
-- (a space after every ':' and ','), so they refused args that the Python client and the
-- jobs table (job_args, since version 5) accept. They now measure compact JSON, as those do.
--
-- leaders.renewed_at: when the holder last renewed its lease, i.e. the scheduler's last
-- tick (leader_attempt sets it on every successful attempt).
--
-- jobs.run_at and enqueued_at hold only times a worker's Python can read (domain job_time);
-- attempt, claims and handbacks are never negative (domain job_count). See the end of
-- this file. expired_partitions_v1 never lists the day holding the database's now().

-- == One decision each ====================================================================

-- STABLE, not IMMUTABLE: timestamptz + interval depends on the TimeZone setting, and a SQL
-- function declared less volatile than its body is not inlined but run as a query of its own,
-- parsed again on every call.
CREATE FUNCTION job_due_v1(run_at timestamptz, delay interval, at timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(run_at, at + coalesce(delay, interval '0'));
$$;
COMMENT ON FUNCTION job_due_v1(timestamptz, interval, timestamptz) IS
    'When a job is due: run_at if given, else at (the enqueue''s clock) plus the delay.';

CREATE FUNCTION job_state_v1(due timestamptz, at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN due <= at THEN 'available' ELSE 'scheduled' END;
$$;
COMMENT ON FUNCTION job_state_v1(timestamptz, timestamptz) IS
    'A new job''s state: available when due at or before at (the enqueue''s clock), else scheduled.';

-- Write one job. Returns its id, or NULL when a live job holds unique_key. create_queue:
-- make the queue if it is missing (else refuse an unknown queue). job_id, claims,
-- enqueued_at and errors carry a job that comes back (retry_dead); NULL/defaults otherwise.
CREATE FUNCTION insert_job_v1(
    task          text,
    args          jsonb,
    queue         text,
    priority      integer,
    max_attempts  integer,
    run_at        timestamptz,
    unique_key    text,
    at            timestamptz,
    create_queue  boolean,
    job_id        bigint DEFAULT NULL,
    claims        integer DEFAULT 0,
    enqueued_at   timestamptz DEFAULT NULL,
    errors        jsonb DEFAULT '[]'
) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    declared tasks%ROWTYPE;
    target_queue text;
    due timestamptz := job_due_v1(insert_job_v1.run_at, NULL, insert_job_v1.at);
    new_state text := job_state_v1(due, insert_job_v1.at);
    new_id bigint;
BEGIN
    -- The rule of the job_time domain (see the end of this file), said plainly.
    IF NOT (due >= timestamptz '0001-01-02 00:00:00+00' AND due < timestamptz '9999-12-31 00:00:00+00') THEN
        RAISE EXCEPTION 'conveyor.enqueue: run_at % is outside the years 1 to 9999 a job''s time can hold', due
            USING ERRCODE = 'datetime_field_overflow';
    END IF;
    IF insert_job_v1.queue IS NULL OR insert_job_v1.priority IS NULL OR insert_job_v1.max_attempts IS NULL THEN
        SELECT * INTO declared FROM tasks t WHERE t.name = insert_job_v1.task;
    END IF;
    target_queue := coalesce(insert_job_v1.queue, declared.queue, 'default');
    IF insert_job_v1.create_queue THEN
        INSERT INTO queues (name) VALUES (target_queue) ON CONFLICT DO NOTHING;
    ELSE
        PERFORM 1 FROM queues q WHERE q.name = target_queue;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'conveyor.enqueue: unknown queue "%"', target_queue
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Create it with conveyor.create_queue(%L), or start a worker that serves it.', target_queue);
        END IF;
    END IF;

    IF insert_job_v1.job_id IS NULL THEN
        INSERT INTO jobs AS j (queue, task, args, state, priority, run_at, max_attempts, unique_key,
                               claims, errors, enqueued_at)
        VALUES (target_queue, insert_job_v1.task, insert_job_v1.args, new_state,
                coalesce(insert_job_v1.priority, declared.priority, 2), due,
                coalesce(insert_job_v1.max_attempts, declared.max_attempts, 5), insert_job_v1.unique_key,
                insert_job_v1.claims, insert_job_v1.errors, coalesce(insert_job_v1.enqueued_at, insert_job_v1.at))
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
        RETURNING j.id INTO new_id;
    ELSE
        INSERT INTO jobs AS j (id, queue, task, args, state, priority, run_at, max_attempts, unique_key,
                               claims, errors, enqueued_at)
        VALUES (insert_job_v1.job_id, target_queue, insert_job_v1.task, insert_job_v1.args, new_state,
                coalesce(insert_job_v1.priority, declared.priority, 2), due,
                coalesce(insert_job_v1.max_attempts, declared.max_attempts, 5), insert_job_v1.unique_key,
                insert_job_v1.claims, insert_job_v1.errors, coalesce(insert_job_v1.enqueued_at, insert_job_v1.at))
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
        RETURNING j.id INTO new_id;
    END IF;

    IF new_id IS NOT NULL AND new_state = 'available' THEN
        PERFORM pg_notify(current_schema(), target_queue);
    END IF;
    RETURN new_id;
END;
$$;
COMMENT ON FUNCTION insert_job_v1(text, jsonb, text, integer, integer, timestamptz, text, timestamptz, boolean,
                                  bigint, integer, timestamptz, jsonb) IS
    'Write one job row (the one SQL writer: enqueue, fire_schedule and retry_dead use it); '
    'NULL when a live job holds its unique key.';

-- == Enqueue and the dead-letter queue ===================================================

CREATE FUNCTION enqueue_v1(
    task          text,
    args          jsonb DEFAULT '{}',
    queue         text DEFAULT NULL,
    priority      integer DEFAULT NULL,
    run_at        timestamptz DEFAULT NULL,
    unique_key    text DEFAULT NULL,
    max_attempts  integer DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    job_id bigint;
BEGIN
    IF enqueue_v1.task IS NULL OR enqueue_v1.task = '' THEN
        RAISE EXCEPTION 'conveyor.enqueue: task name is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_v1.args IS NULL OR jsonb_typeof(enqueue_v1.args) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.enqueue: args for task "%" must be a JSON object, got %',
            enqueue_v1.task, coalesce(jsonb_typeof(enqueue_v1.args), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The rule of the job_args domain: compact JSON, counted exactly only past 1 MiB of text.
    IF octet_length(enqueue_v1.args::text) > 1048576 AND compact_json_octets_v1(enqueue_v1.args) > 1048576 THEN
        RAISE EXCEPTION 'conveyor.enqueue: args for task "%" take % bytes as JSON, more than the 1 MiB limit',
            enqueue_v1.task, compact_json_octets_v1(enqueue_v1.args)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF enqueue_v1.unique_key IS NOT NULL AND length(enqueue_v1.unique_key) NOT BETWEEN 1 AND 512 THEN
        RAISE EXCEPTION 'conveyor.enqueue: unique_key must be 1 to 512 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_v1.priority IS NOT NULL AND enqueue_v1.priority NOT BETWEEN 0 AND 3 THEN
        RAISE EXCEPTION 'conveyor.enqueue: priority % is out of range', enqueue_v1.priority
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 0 (critical), 1 (high), 2 (normal) or 3 (low).';
    END IF;
    IF enqueue_v1.max_attempts IS NOT NULL AND enqueue_v1.max_attempts < 1 THEN
        RAISE EXCEPTION 'conveyor.enqueue: max_attempts must be at least 1, got %', enqueue_v1.max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    job_id := insert_job_v1(enqueue_v1.task, enqueue_v1.args, enqueue_v1.queue, enqueue_v1.priority,
                            enqueue_v1.max_attempts, enqueue_v1.run_at, enqueue_v1.unique_key, now(), false);
    IF job_id IS NULL THEN
        -- A live job holds this unique key already: that job stands for this request.
        SELECT j.id INTO job_id FROM jobs j WHERE j.unique_key = enqueue_v1.unique_key;
        IF job_id IS NULL THEN
            RAISE EXCEPTION 'conveyor.enqueue: the job holding unique key "%" finished while this one was enqueued; try again',
                enqueue_v1.unique_key USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;
    RETURN job_id;
END;
$$;
COMMENT ON FUNCTION enqueue_v1(text, jsonb, text, integer, timestamptz, text, integer) IS
    'Version 1 of enqueue (see conveyor.enqueue).';

CREATE FUNCTION retry_dead_v1(job_id bigint) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    dead dead_jobs%ROWTYPE;
    revived bigint;
BEGIN
    DELETE FROM dead_jobs d WHERE d.id = retry_dead_v1.job_id RETURNING d.* INTO dead;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conveyor.retry_dead: no dead job with id %', retry_dead_v1.job_id
            USING ERRCODE = 'no_data_found';
    END IF;
    -- A fresh attempt budget, due now; its id, claims, unique key, enqueue time and errors kept.
    revived := insert_job_v1(dead.task, dead.args, dead.queue, dead.priority, dead.max_attempts, NULL,
                             dead.unique_key, now(), true, dead.id, dead.claims, dead.enqueued_at, dead.errors);
    IF revived IS NULL THEN
        RAISE EXCEPTION 'conveyor.retry_dead: job % cannot go back: a live job already holds its unique key',
            retry_dead_v1.job_id USING ERRCODE = 'unique_violation';
    END IF;
    RETURN revived;
END;
$$;
COMMENT ON FUNCTION retry_dead_v1(bigint) IS 'Version 1 of retry_dead (see conveyor.retry_dead).';

CREATE FUNCTION purge_dead_v1(
    job_ids     bigint[] DEFAULT NULL,
    queue       text DEFAULT NULL,
    task        text DEFAULT NULL,
    older_than  interval DEFAULT NULL
) RETURNS bigint
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    WITH purged AS (
        DELETE FROM dead_jobs d
        WHERE (purge_dead_v1.job_ids IS NULL OR d.id = ANY (purge_dead_v1.job_ids))
          AND (purge_dead_v1.queue IS NULL OR d.queue = purge_dead_v1.queue)
          AND (purge_dead_v1.task IS NULL OR d.task = purge_dead_v1.task)
          AND (purge_dead_v1.older_than IS NULL OR d.died_at < now() - purge_dead_v1.older_than)
        RETURNING 1
    )
    SELECT count(*) FROM purged;
$$;

CREATE FUNCTION pause_queue_v1(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    INSERT INTO queues (name, paused) VALUES (pause_queue_v1.name, true)
    ON CONFLICT ON CONSTRAINT queues_pkey DO UPDATE SET paused = true, updated_at = now();
$$;

CREATE FUNCTION resume_queue_v1(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    UPDATE queues SET paused = false, updated_at = now() WHERE queues.name = resume_queue_v1.name;
    SELECT pg_notify(current_schema(), resume_queue_v1.name);
$$;

-- == Schedules ===========================================================================

-- One fire: the fire row and its job, in the caller's transaction. Returns the job id, or
-- NULL when that fire time has fired already (or is recorded as skipped).
CREATE FUNCTION fire_schedule_v1(
    name        text,
    fire_time   timestamptz,
    kind        text DEFAULT 'on_time',
    window_end  timestamptz DEFAULT NULL,
    at          timestamptz DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    s schedules%ROWTYPE;
    moment timestamptz := coalesce(fire_schedule_v1.at, now());
    job_id bigint;
BEGIN
    SELECT * INTO s FROM schedules WHERE schedules.name = fire_schedule_v1.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conveyor.fire_schedule: no schedule named ''%''', fire_schedule_v1.name
            USING ERRCODE = 'no_data_found';
    END IF;
    IF fire_schedule_v1.kind <> 'skipped' THEN
        job_id := nextval(pg_get_serial_sequence('jobs', 'id'));
    END IF;
    INSERT INTO schedule_fires (schedule, fire_time, kind, window_end, job_id, fired_at)
    VALUES (s.name, fire_schedule_v1.fire_time, fire_schedule_v1.kind, fire_schedule_v1.window_end, job_id, moment)
    ON CONFLICT (schedule, fire_time) WHERE kind <> 'manual' DO NOTHING;
    IF NOT FOUND OR job_id IS NULL THEN
        RETURN NULL;
    END IF;
    -- Due at the fire's moment, enqueued then.
    RETURN insert_job_v1(s.task, s.args, s.queue, s.priority, s.max_attempts, moment, NULL, moment, true, job_id);
END;
$$;

CREATE FUNCTION create_schedule_v1(
    name          text,
    cron          text,
    task          text,
    args          jsonb DEFAULT '{}',
    timezone      text DEFAULT 'UTC',
    queue         text DEFAULT NULL,
    priority      integer DEFAULT NULL,
    max_attempts  integer DEFAULT NULL,
    catch_up      text DEFAULT 'once',
    replace       boolean DEFAULT false,
    at            timestamptz DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
BEGIN
    IF create_schedule_v1.name IS NULL OR create_schedule_v1.name !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,126}$' THEN
        RAISE EXCEPTION 'conveyor.create_schedule: schedule name ''%'' is not allowed: use letters, digits and _ . : -',
            create_schedule_v1.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM check_cron(create_schedule_v1.cron);
    PERFORM check_timezone(create_schedule_v1.timezone);
    IF create_schedule_v1.task IS NULL OR create_schedule_v1.task = '' THEN
        RAISE EXCEPTION 'conveyor.create_schedule: task name is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF create_schedule_v1.args IS NULL OR jsonb_typeof(create_schedule_v1.args) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.create_schedule: args must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(create_schedule_v1.args::text) > 1048576 AND compact_json_octets_v1(create_schedule_v1.args) > 1048576 THEN
        RAISE EXCEPTION 'conveyor.create_schedule: args take % bytes as JSON, more than the 1 MiB limit',
            compact_json_octets_v1(create_schedule_v1.args) USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF create_schedule_v1.queue IS NOT NULL AND NOT EXISTS (SELECT FROM queues q WHERE q.name = create_schedule_v1.queue) THEN
        RAISE EXCEPTION 'conveyor.create_schedule: unknown queue ''%''', create_schedule_v1.queue
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Create it with conveyor.create_queue(%L) first.', create_schedule_v1.queue);
    END IF;
    IF create_schedule_v1.priority IS NOT NULL AND create_schedule_v1.priority NOT BETWEEN 0 AND 3 THEN
        RAISE EXCEPTION 'conveyor.create_schedule: priority % is out of range 0-3', create_schedule_v1.priority
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF create_schedule_v1.max_attempts IS NOT NULL AND create_schedule_v1.max_attempts < 1 THEN
        RAISE EXCEPTION 'conveyor.create_schedule: max_attempts must be at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF create_schedule_v1.catch_up IS NULL OR create_schedule_v1.catch_up NOT IN ('skip', 'once') THEN
        RAISE EXCEPTION 'conveyor.create_schedule: catch_up must be ''skip'' or ''once'', got ''%''', create_schedule_v1.catch_up
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM schedules s WHERE s.name = create_schedule_v1.name) THEN
        IF NOT create_schedule_v1.replace THEN
            RAISE EXCEPTION 'conveyor.create_schedule: a schedule named ''%'' exists already', create_schedule_v1.name
                USING ERRCODE = 'unique_violation', HINT = 'Remove it first, or pass replace => true.';
        END IF;
        -- Same timing on a healthy schedule: the cadence goes on as it was. New timing, or a
        -- schedule stopped by an error: fires are owed from now on.
        UPDATE schedules s SET
            task = create_schedule_v1.task, args = create_schedule_v1.args, queue = create_schedule_v1.queue,
            priority = create_schedule_v1.priority, max_attempts = create_schedule_v1.max_attempts,
            catch_up = create_schedule_v1.catch_up, error = NULL, updated_at = now(),
            next_fire_at = CASE WHEN s.cron = create_schedule_v1.cron AND s.timezone = create_schedule_v1.timezone
                                     AND s.error IS NULL THEN s.next_fire_at END,
            defined_at = CASE WHEN s.cron = create_schedule_v1.cron AND s.timezone = create_schedule_v1.timezone
                                   AND s.error IS NULL THEN s.defined_at
                              ELSE coalesce(create_schedule_v1.at, now()) END,
            cron = create_schedule_v1.cron, timezone = create_schedule_v1.timezone
        WHERE s.name = create_schedule_v1.name;
    ELSE
        INSERT INTO schedules (name, cron, timezone, task, args, queue, priority, max_attempts, catch_up, defined_at)
        VALUES (create_schedule_v1.name, create_schedule_v1.cron, create_schedule_v1.timezone, create_schedule_v1.task,
                create_schedule_v1.args, create_schedule_v1.queue, create_schedule_v1.priority,
                create_schedule_v1.max_attempts, create_schedule_v1.catch_up, coalesce(create_schedule_v1.at, now()));
    END IF;
    PERFORM pg_notify(current_schema(), '#schedules');
    RETURN create_schedule_v1.name;
END;
$$;

CREATE FUNCTION pause_schedule_v1(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT find_schedule(pause_schedule_v1.name);
    UPDATE schedules SET paused = true, updated_at = now() WHERE schedules.name = pause_schedule_v1.name;
$$;

-- Resuming lets the schedule fire again from its next fire time; if fire times passed while
-- it was paused, its catch-up policy decides about them (one job, or a skipped window).
CREATE FUNCTION resume_schedule_v1(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT find_schedule(resume_schedule_v1.name);
    -- A paused schedule owes what it missed to its policy; one stopped by an error starts over
    -- from now (the error said why it could not fire).
    UPDATE schedules
    SET paused = false,
        resumed = error IS NULL AND coalesce(next_fire_at <= now(), false),
        next_fire_at = CASE WHEN error IS NULL THEN next_fire_at END,
        defined_at = CASE WHEN error IS NULL THEN defined_at ELSE now() END,
        error = NULL,
        updated_at = now()
    WHERE schedules.name = resume_schedule_v1.name AND (paused OR error IS NOT NULL);
    SELECT pg_notify(current_schema(), '#schedules');
$$;

-- A manual fire: the schedule's job, now, without touching its cadence.
CREATE FUNCTION trigger_schedule_v1(name text) RETURNS bigint
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT find_schedule(trigger_schedule_v1.name);
    SELECT fire_schedule_v1(trigger_schedule_v1.name, clock_timestamp(), 'manual');
$$;

CREATE FUNCTION remove_schedule_v1(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT find_schedule(remove_schedule_v1.name);
    DELETE FROM schedules WHERE schedules.name = remove_schedule_v1.name;
$$;

-- == Partitions and retention ============================================================

CREATE FUNCTION ensure_history_partitions_v1(days_ahead integer DEFAULT 7, at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT ensure_daily_partitions('job_history', days_ahead, at)
         + ensure_daily_partitions('job_runs', days_ahead, at);
$$;

CREATE FUNCTION set_retention_v1(
    queue           text DEFAULT '*',
    completed_keep  interval DEFAULT NULL,
    completed_max   integer DEFAULT NULL,
    dead_keep       interval DEFAULT NULL,
    runs_keep       interval DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
BEGIN
    IF set_retention_v1.queue IS NULL THEN
        RAISE EXCEPTION 'conveyor.set_retention: name a queue, or ''*'' for the defaults'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF set_retention_v1.queue <> '*' AND NOT EXISTS (SELECT FROM queues q WHERE q.name = set_retention_v1.queue) THEN
        RAISE EXCEPTION 'conveyor.set_retention: unknown queue ''%''', set_retention_v1.queue
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF set_retention_v1.completed_keep < interval '0' OR set_retention_v1.dead_keep < interval '0'
       OR set_retention_v1.runs_keep < interval '0' OR set_retention_v1.completed_max < 0 THEN
        RAISE EXCEPTION 'conveyor.set_retention: retention must not be negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO retention AS r (queue, completed_keep, completed_max, dead_keep, runs_keep)
    VALUES (set_retention_v1.queue, set_retention_v1.completed_keep, set_retention_v1.completed_max,
            set_retention_v1.dead_keep, set_retention_v1.runs_keep)
    ON CONFLICT (queue) DO UPDATE SET
        completed_keep = coalesce(excluded.completed_keep, r.completed_keep),
        completed_max = coalesce(excluded.completed_max, r.completed_max),
        dead_keep = coalesce(excluded.dead_keep, r.dead_keep),
        runs_keep = coalesce(excluded.runs_keep, r.runs_keep);
END;
$$;

CREATE FUNCTION expired_partitions_v1(at timestamptz DEFAULT now()) RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    WITH keeps AS (
        SELECT max(completed_keep) AS completed, max(runs_keep) AS runs
        FROM (SELECT completed_keep, runs_keep FROM retention_by_queue
              UNION ALL SELECT completed_keep, runs_keep FROM retention WHERE queue = '*') AS k
    )
    SELECT c.relname::text
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN keeps
    WHERE ((i.inhparent = 'job_history'::regclass AND c.relname ~ '^job_history_[0-9]{8}$'
           AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= (at - keeps.completed) AT TIME ZONE 'UTC')
       OR (i.inhparent = 'job_runs'::regclass AND c.relname ~ '^job_runs_[0-9]{8}$'
           AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= (at - keeps.runs) AT TIME ZONE 'UTC'))
      -- Never today's day or a later one, whatever at says: acks still write into it.
      AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= now() AT TIME ZONE 'UTC'
    ORDER BY 1;
$$;

-- == The names without a version: wrappers over the current version =====================

DO $wrappers$
BEGIN
    EXECUTE format($sql$
CREATE OR REPLACE FUNCTION %1$I.enqueue(
    task          text,
    args          jsonb DEFAULT '{}',
    queue         text DEFAULT NULL,
    priority      integer DEFAULT NULL,
    run_at        timestamptz DEFAULT NULL,
    unique_key    text DEFAULT NULL,
    max_attempts  integer DEFAULT NULL
) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.enqueue_v1(enqueue.task, enqueue.args, enqueue.queue, enqueue.priority, enqueue.run_at,
                           enqueue.unique_key, enqueue.max_attempts);
$body$;

CREATE OR REPLACE FUNCTION %1$I.retry_dead(job_id bigint) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.retry_dead_v1(retry_dead.job_id);
$body$;

CREATE OR REPLACE FUNCTION %1$I.purge_dead(
    job_ids     bigint[] DEFAULT NULL,
    queue       text DEFAULT NULL,
    task        text DEFAULT NULL,
    older_than  interval DEFAULT NULL
) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.purge_dead_v1(purge_dead.job_ids, purge_dead.queue, purge_dead.task, purge_dead.older_than);
$body$;

CREATE OR REPLACE FUNCTION %1$I.pause_queue(name text) RETURNS void
LANGUAGE sql
AS $body$
    SELECT %1$I.pause_queue_v1(pause_queue.name);
$body$;

CREATE OR REPLACE FUNCTION %1$I.resume_queue(name text) RETURNS void
LANGUAGE sql
AS $body$
    SELECT %1$I.resume_queue_v1(resume_queue.name);
$body$;

CREATE OR REPLACE FUNCTION %1$I.fire_schedule(
    name        text,
    fire_time   timestamptz,
    kind        text DEFAULT 'on_time',
    window_end  timestamptz DEFAULT NULL,
    at          timestamptz DEFAULT NULL
) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.fire_schedule_v1(fire_schedule.name, fire_schedule.fire_time, fire_schedule.kind,
                                 fire_schedule.window_end, fire_schedule.at);
$body$;

CREATE OR REPLACE FUNCTION %1$I.create_schedule(
    name          text,
    cron          text,
    task          text,
    args          jsonb DEFAULT '{}',
    timezone      text DEFAULT 'UTC',
    queue         text DEFAULT NULL,
    priority      integer DEFAULT NULL,
    max_attempts  integer DEFAULT NULL,
    catch_up      text DEFAULT 'once',
    replace       boolean DEFAULT false,
    at            timestamptz DEFAULT NULL
) RETURNS text
LANGUAGE sql
AS $body$
    SELECT %1$I.create_schedule_v1(create_schedule.name, create_schedule.cron, create_schedule.task,
                                   create_schedule.args, create_schedule.timezone, create_schedule.queue,
                                   create_schedule.priority, create_schedule.max_attempts,
                                   create_schedule.catch_up, create_schedule.replace, create_schedule.at);
$body$;

CREATE OR REPLACE FUNCTION %1$I.pause_schedule(name text) RETURNS void
LANGUAGE sql
AS $body$
    SELECT %1$I.pause_schedule_v1(pause_schedule.name);
$body$;

CREATE OR REPLACE FUNCTION %1$I.resume_schedule(name text) RETURNS void
LANGUAGE sql
AS $body$
    SELECT %1$I.resume_schedule_v1(resume_schedule.name);
$body$;

CREATE OR REPLACE FUNCTION %1$I.trigger_schedule(name text) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.trigger_schedule_v1(trigger_schedule.name);
$body$;

CREATE OR REPLACE FUNCTION %1$I.remove_schedule(name text) RETURNS void
LANGUAGE sql
AS $body$
    SELECT %1$I.remove_schedule_v1(remove_schedule.name);
$body$;

CREATE OR REPLACE FUNCTION %1$I.ensure_history_partitions(days_ahead integer DEFAULT 7, at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE sql
AS $body$
    SELECT %1$I.ensure_history_partitions_v1(ensure_history_partitions.days_ahead, ensure_history_partitions.at);
$body$;

CREATE OR REPLACE FUNCTION %1$I.set_retention(
    queue           text DEFAULT '*',
    completed_keep  interval DEFAULT NULL,
    completed_max   integer DEFAULT NULL,
    dead_keep       interval DEFAULT NULL,
    runs_keep       interval DEFAULT NULL
) RETURNS void
LANGUAGE sql
AS $body$
    SELECT %1$I.set_retention_v1(set_retention.queue, set_retention.completed_keep, set_retention.completed_max,
                                 set_retention.dead_keep, set_retention.runs_keep);
$body$;

CREATE OR REPLACE FUNCTION %1$I.expired_partitions(at timestamptz DEFAULT now()) RETURNS SETOF text
LANGUAGE sql STABLE
AS $body$
    SELECT * FROM %1$I.expired_partitions_v1(expired_partitions.at);
$body$;
$sql$, current_schema());
END;
$wrappers$;

-- == The scheduler's last tick ===========================================================

ALTER TABLE leaders ADD COLUMN renewed_at timestamptz;
COMMENT ON COLUMN leaders.renewed_at IS
    'When the holder last renewed its lease: for the scheduler, its last tick. NULL until a '
    'holder of version 6 or later renews it.';

-- == Times a worker can read =============================================================

-- A job's run_at and enqueued_at are read by every worker and every listing, in Python,
-- whose datetime holds years 1 to 9999 only: one '-infinity' or year-10000 row made the
-- claim that took it fail after it committed (its whole batch was orphaned) and made
-- `conveyor jobs list` fail for everyone. The domain refuses such times where they are
-- written; a day's margin at each end keeps the value readable in every session time zone.
-- job_count holds attempt, claims and handbacks, which only count up from 0. Their checks
-- are prepared once per session, as the domains of version 3 are. NOT VALID: rows already
-- in jobs are not rechecked (the type change then rewrites nothing).
CREATE DOMAIN job_time AS timestamptz;
CREATE DOMAIN job_count AS integer;

CREATE TEMPORARY TABLE conveyor_saved_job_views ON COMMIT DROP AS
SELECT c.relname AS name, pg_get_viewdef(c.oid) AS definition, obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'v'
  AND c.relname IN ('queue_stats', 'job_list');

DROP VIEW queue_stats;
DROP VIEW job_list;

ALTER TABLE jobs
    ALTER COLUMN run_at TYPE job_time,
    ALTER COLUMN enqueued_at TYPE job_time,
    ALTER COLUMN attempt TYPE job_count,
    ALTER COLUMN claims TYPE job_count,
    ALTER COLUMN handbacks TYPE job_count;

DO $$
DECLARE
    saved record;
BEGIN
    FOR saved IN SELECT * FROM conveyor_saved_job_views ORDER BY name LOOP
        EXECUTE format('CREATE VIEW %I AS %s', saved.name, saved.definition);
        EXECUTE format('COMMENT ON VIEW %I IS %L', saved.name, saved.comment);
    END LOOP;
END;
$$;

DROP TABLE conveyor_saved_job_views;

ALTER DOMAIN job_time ADD CONSTRAINT time_within_years_1_to_9999
    CHECK (VALUE >= timestamptz '0001-01-02 00:00:00+00' AND VALUE < timestamptz '9999-12-31 00:00:00+00') NOT VALID;
ALTER DOMAIN job_count ADD CONSTRAINT count_not_negative CHECK (VALUE >= 0) NOT VALID;
