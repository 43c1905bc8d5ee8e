-- Undo 0006: the functions without a version hold their version-5 bodies again (the
-- _v1 functions and the one writer go), leaders loses renewed_at, and jobs
-- times are plain timestamptz again.

CREATE TEMPORARY TABLE conveyor_saved_job_views ON COMMIT DROP AS
SELECT c.relname AS name, pg_get_viewdef(c.oid) AS definition, obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'v'
  AND c.relname IN ('queue_stats', 'job_list');

DROP VIEW queue_stats;
DROP VIEW job_list;

ALTER TABLE jobs
    ALTER COLUMN run_at TYPE timestamptz,
    ALTER COLUMN enqueued_at TYPE timestamptz,
    ALTER COLUMN attempt TYPE integer,
    ALTER COLUMN claims TYPE integer,
    ALTER COLUMN handbacks TYPE integer;

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
DROP DOMAIN job_time;
DROP DOMAIN job_count;

CREATE OR REPLACE FUNCTION enqueue(
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
    declared tasks%ROWTYPE;
    target_queue text;
    due timestamptz := coalesce(enqueue.run_at, now());
    job_id bigint;
BEGIN
    IF enqueue.task IS NULL OR enqueue.task = '' THEN
        RAISE EXCEPTION 'conveyor.enqueue: task name is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.args IS NULL OR jsonb_typeof(enqueue.args) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.enqueue: args for task "%" must be a JSON object, got %',
            enqueue.task, coalesce(jsonb_typeof(enqueue.args), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(enqueue.args::text) > 1048576 THEN
        RAISE EXCEPTION 'conveyor.enqueue: args for task "%" take % bytes as JSON, more than the 1 MiB limit',
            enqueue.task, octet_length(enqueue.args::text)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF enqueue.unique_key IS NOT NULL AND length(enqueue.unique_key) NOT BETWEEN 1 AND 512 THEN
        RAISE EXCEPTION 'conveyor.enqueue: unique_key must be 1 to 512 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue.priority IS NOT NULL AND enqueue.priority NOT BETWEEN 0 AND 3 THEN
        RAISE EXCEPTION 'conveyor.enqueue: priority % is out of range', enqueue.priority
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 0 (critical), 1 (high), 2 (normal) or 3 (low).';
    END IF;
    IF enqueue.max_attempts IS NOT NULL AND enqueue.max_attempts < 1 THEN
        RAISE EXCEPTION 'conveyor.enqueue: max_attempts must be at least 1, got %', enqueue.max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT * INTO declared FROM tasks t WHERE t.name = enqueue.task;
    target_queue := coalesce(enqueue.queue, declared.queue, 'default');
    PERFORM 1 FROM queues q WHERE q.name = target_queue;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conveyor.enqueue: unknown queue "%"', target_queue
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Create it with conveyor.create_queue(%L), or start a worker that serves it.', target_queue);
    END IF;

    INSERT INTO jobs AS j (queue, task, args, state, priority, run_at, max_attempts, unique_key, enqueued_at)
    VALUES (
        target_queue, enqueue.task, enqueue.args,
        CASE WHEN due <= now() THEN 'available' ELSE 'scheduled' END,
        coalesce(enqueue.priority, declared.priority, 2),
        due,
        coalesce(enqueue.max_attempts, declared.max_attempts, 5),
        enqueue.unique_key,
        now())
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING j.id INTO job_id;

    IF job_id IS NULL THEN
        -- A live job holds this unique key already: that job stands for this request.
        SELECT j.id INTO job_id FROM jobs j WHERE j.unique_key = enqueue.unique_key;
        IF job_id IS NULL THEN
            RAISE EXCEPTION 'conveyor.enqueue: the job holding unique key "%" finished while this one was enqueued; try again',
                enqueue.unique_key USING ERRCODE = 'serialization_failure';
        END IF;
        RETURN job_id;
    END IF;

    IF due <= now() THEN
        PERFORM pg_notify(current_schema(), target_queue);
    END IF;
    RETURN job_id;
END;
$$;

CREATE OR REPLACE FUNCTION retry_dead(job_id bigint) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    revived jobs%ROWTYPE;
BEGIN
    WITH dead AS (DELETE FROM dead_jobs d WHERE d.id = retry_dead.job_id RETURNING d.*)
    INSERT INTO jobs (id, queue, task, args, state, priority, run_at, attempt, max_attempts,
                      claims, unique_key, enqueued_at, errors)
    SELECT dead.id, dead.queue, dead.task, dead.args, 'available', dead.priority, now(), 0,
           dead.max_attempts, dead.claims, dead.unique_key, dead.enqueued_at, dead.errors
    FROM dead
    RETURNING * INTO revived;

    IF revived.id IS NULL THEN
        RAISE EXCEPTION 'conveyor.retry_dead: no dead job with id %', retry_dead.job_id
            USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO queues (name) VALUES (revived.queue) ON CONFLICT DO NOTHING;
    PERFORM pg_notify(current_schema(), revived.queue);
    RETURN revived.id;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'conveyor.retry_dead: job % cannot go back: a live job already holds its unique key',
        retry_dead.job_id USING ERRCODE = 'unique_violation';
END;
$$;

CREATE OR REPLACE FUNCTION purge_dead(
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
        WHERE (purge_dead.job_ids IS NULL OR d.id = ANY (purge_dead.job_ids))
          AND (purge_dead.queue IS NULL OR d.queue = purge_dead.queue)
          AND (purge_dead.task IS NULL OR d.task = purge_dead.task)
          AND (purge_dead.older_than IS NULL OR d.died_at < now() - purge_dead.older_than)
        RETURNING 1
    )
    SELECT count(*) FROM purged;
$$;

CREATE OR REPLACE FUNCTION pause_queue(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    INSERT INTO queues (name, paused) VALUES (pause_queue.name, true)
    ON CONFLICT ON CONSTRAINT queues_pkey DO UPDATE SET paused = true, updated_at = now();
$$;

CREATE OR REPLACE FUNCTION resume_queue(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    UPDATE queues SET paused = false, updated_at = now() WHERE queues.name = resume_queue.name;
    SELECT pg_notify(current_schema(), resume_queue.name);
$$;

CREATE OR REPLACE FUNCTION fire_schedule(
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
    declared tasks%ROWTYPE;
    moment timestamptz := coalesce(fire_schedule.at, now());
    job_id bigint;
    target_queue text;
BEGIN
    SELECT * INTO s FROM schedules WHERE schedules.name = fire_schedule.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conveyor.fire_schedule: no schedule named ''%''', fire_schedule.name
            USING ERRCODE = 'no_data_found';
    END IF;
    IF fire_schedule.kind <> 'skipped' THEN
        job_id := nextval(pg_get_serial_sequence('jobs', 'id'));
    END IF;
    INSERT INTO schedule_fires (schedule, fire_time, kind, window_end, job_id, fired_at)
    VALUES (s.name, fire_schedule.fire_time, fire_schedule.kind, fire_schedule.window_end, job_id, moment)
    ON CONFLICT (schedule, fire_time) WHERE kind <> 'manual' DO NOTHING;
    IF NOT FOUND OR job_id IS NULL THEN
        RETURN NULL;
    END IF;

    SELECT * INTO declared FROM tasks t WHERE t.name = s.task;
    target_queue := coalesce(s.queue, declared.queue, 'default');
    INSERT INTO queues (name) VALUES (target_queue) ON CONFLICT DO NOTHING;
    INSERT INTO jobs (id, queue, task, args, state, priority, run_at, max_attempts, enqueued_at)
    VALUES (job_id, target_queue, s.task, s.args, 'available', coalesce(s.priority, declared.priority, 2),
            moment, coalesce(s.max_attempts, declared.max_attempts, 5), moment);
    PERFORM pg_notify(current_schema(), target_queue);
    RETURN job_id;
END;
$$;

CREATE OR REPLACE FUNCTION create_schedule(
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
    IF create_schedule.name IS NULL OR create_schedule.name !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,126}$' THEN
        RAISE EXCEPTION 'conveyor.create_schedule: schedule name ''%'' is not allowed: use letters, digits and _ . : -',
            create_schedule.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM check_cron(create_schedule.cron);
    PERFORM check_timezone(create_schedule.timezone);
    IF create_schedule.task IS NULL OR create_schedule.task = '' THEN
        RAISE EXCEPTION 'conveyor.create_schedule: task name is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF create_schedule.args IS NULL OR jsonb_typeof(create_schedule.args) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.create_schedule: args must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(create_schedule.args::text) > 1048576 THEN
        RAISE EXCEPTION 'conveyor.create_schedule: args take % bytes as JSON, more than the 1 MiB limit',
            octet_length(create_schedule.args::text) USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF create_schedule.queue IS NOT NULL AND NOT EXISTS (SELECT FROM queues q WHERE q.name = create_schedule.queue) THEN
        RAISE EXCEPTION 'conveyor.create_schedule: unknown queue ''%''', create_schedule.queue
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Create it with conveyor.create_queue(%L) first.', create_schedule.queue);
    END IF;
    IF create_schedule.priority IS NOT NULL AND create_schedule.priority NOT BETWEEN 0 AND 3 THEN
        RAISE EXCEPTION 'conveyor.create_schedule: priority % is out of range 0-3', create_schedule.priority
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF create_schedule.max_attempts IS NOT NULL AND create_schedule.max_attempts < 1 THEN
        RAISE EXCEPTION 'conveyor.create_schedule: max_attempts must be at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF create_schedule.catch_up IS NULL OR create_schedule.catch_up NOT IN ('skip', 'once') THEN
        RAISE EXCEPTION 'conveyor.create_schedule: catch_up must be ''skip'' or ''once'', got ''%''', create_schedule.catch_up
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM schedules s WHERE s.name = create_schedule.name) THEN
        IF NOT create_schedule.replace THEN
            RAISE EXCEPTION 'conveyor.create_schedule: a schedule named ''%'' exists already', create_schedule.name
                USING ERRCODE = 'unique_violation', HINT = 'Remove it first, or pass replace => true.';
        END IF;
        -- Same timing on a healthy schedule: the cadence goes on as it was. New timing, or a
        -- schedule stopped by an error: fires are owed from now on.
        UPDATE schedules s SET
            task = create_schedule.task, args = create_schedule.args, queue = create_schedule.queue,
            priority = create_schedule.priority, max_attempts = create_schedule.max_attempts,
            catch_up = create_schedule.catch_up, error = NULL, updated_at = now(),
            next_fire_at = CASE WHEN s.cron = create_schedule.cron AND s.timezone = create_schedule.timezone
                                     AND s.error IS NULL THEN s.next_fire_at END,
            defined_at = CASE WHEN s.cron = create_schedule.cron AND s.timezone = create_schedule.timezone
                                   AND s.error IS NULL THEN s.defined_at
                              ELSE coalesce(create_schedule.at, now()) END,
            cron = create_schedule.cron, timezone = create_schedule.timezone
        WHERE s.name = create_schedule.name;
    ELSE
        INSERT INTO schedules (name, cron, timezone, task, args, queue, priority, max_attempts, catch_up, defined_at)
        VALUES (create_schedule.name, create_schedule.cron, create_schedule.timezone, create_schedule.task,
                create_schedule.args, create_schedule.queue, create_schedule.priority,
                create_schedule.max_attempts, create_schedule.catch_up, coalesce(create_schedule.at, now()));
    END IF;
    PERFORM pg_notify(current_schema(), '#schedules');
    RETURN create_schedule.name;
END;
$$;

CREATE OR REPLACE FUNCTION pause_schedule(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT find_schedule(pause_schedule.name);
    UPDATE schedules SET paused = true, updated_at = now() WHERE schedules.name = pause_schedule.name;
$$;

CREATE OR REPLACE FUNCTION resume_schedule(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT find_schedule(resume_schedule.name);
    -- A paused schedule owes what it missed to its policy; one stopped by an error starts over
    -- from now (the error said why it could not fire).
    UPDATE schedules
    SET paused = false,
        resumed = error IS NULL AND coalesce(next_fire_at <= now(), false),
        next_fire_at = CASE WHEN error IS NULL THEN next_fire_at END,
        defined_at = CASE WHEN error IS NULL THEN defined_at ELSE now() END,
        error = NULL,
        updated_at = now()
    WHERE schedules.name = resume_schedule.name AND (paused OR error IS NOT NULL);
    SELECT pg_notify(current_schema(), '#schedules');
$$;

CREATE OR REPLACE FUNCTION trigger_schedule(name text) RETURNS bigint
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT find_schedule(trigger_schedule.name);
    SELECT fire_schedule(trigger_schedule.name, clock_timestamp(), 'manual');
$$;

CREATE OR REPLACE FUNCTION remove_schedule(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT find_schedule(remove_schedule.name);
    DELETE FROM schedules WHERE schedules.name = remove_schedule.name;
$$;

CREATE OR REPLACE FUNCTION ensure_history_partitions(days_ahead integer DEFAULT 7, at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT ensure_daily_partitions('job_history', days_ahead, at)
         + ensure_daily_partitions('job_runs', days_ahead, at);
$$;

CREATE OR REPLACE FUNCTION set_retention(
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
    IF set_retention.queue IS NULL THEN
        RAISE EXCEPTION 'conveyor.set_retention: name a queue, or ''*'' for the defaults'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF set_retention.queue <> '*' AND NOT EXISTS (SELECT FROM queues q WHERE q.name = set_retention.queue) THEN
        RAISE EXCEPTION 'conveyor.set_retention: unknown queue ''%''', set_retention.queue
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF set_retention.completed_keep < interval '0' OR set_retention.dead_keep < interval '0'
       OR set_retention.runs_keep < interval '0' OR set_retention.completed_max < 0 THEN
        RAISE EXCEPTION 'conveyor.set_retention: retention must not be negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO retention AS r (queue, completed_keep, completed_max, dead_keep, runs_keep)
    VALUES (set_retention.queue, set_retention.completed_keep, set_retention.completed_max,
            set_retention.dead_keep, set_retention.runs_keep)
    ON CONFLICT (queue) DO UPDATE SET
        completed_keep = coalesce(excluded.completed_keep, r.completed_keep),
        completed_max = coalesce(excluded.completed_max, r.completed_max),
        dead_keep = coalesce(excluded.dead_keep, r.dead_keep),
        runs_keep = coalesce(excluded.runs_keep, r.runs_keep);
END;
$$;

CREATE OR REPLACE FUNCTION expired_partitions(at timestamptz DEFAULT now()) RETURNS SETOF text
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
    WHERE (i.inhparent = 'job_history'::regclass AND c.relname ~ '^job_history_[0-9]{8}$'
           AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= (at - keeps.completed) AT TIME ZONE 'UTC')
       OR (i.inhparent = 'job_runs'::regclass AND c.relname ~ '^job_runs_[0-9]{8}$'
           AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= (at - keeps.runs) AT TIME ZONE 'UTC')
    ORDER BY 1;
$$;

DROP FUNCTION expired_partitions_v1(timestamptz);
DROP FUNCTION set_retention_v1(text, interval, integer, interval, interval);
DROP FUNCTION ensure_history_partitions_v1(integer, timestamptz);
DROP FUNCTION remove_schedule_v1(text);
DROP FUNCTION trigger_schedule_v1(text);
DROP FUNCTION resume_schedule_v1(text);
DROP FUNCTION pause_schedule_v1(text);
DROP FUNCTION create_schedule_v1(text, text, text, jsonb, text, text, integer, integer, text, boolean, timestamptz);
DROP FUNCTION fire_schedule_v1(text, timestamptz, text, timestamptz, timestamptz);
DROP FUNCTION resume_queue_v1(text);
DROP FUNCTION pause_queue_v1(text);
DROP FUNCTION purge_dead_v1(bigint[], text, text, interval);
DROP FUNCTION retry_dead_v1(bigint);
DROP FUNCTION enqueue_v1(text, jsonb, text, integer, timestamptz, text, integer);
DROP FUNCTION insert_job_v1(text, jsonb, text, integer, integer, timestamptz, text, timestamptz, boolean,
                            bigint, integer, timestamptz, jsonb);
DROP FUNCTION job_state_v1(timestamptz, timestamptz);
DROP FUNCTION job_due_v1(timestamptz, interval, timestamptz);

ALTER TABLE leaders DROP COLUMN renewed_at;
