-- Conveyor schema, version 2: schedules, leader election, retention and the run log.
-- Applied like 0001 (search_path = the Conveyor schema; names unqualified).

-- == Cron, checked in SQL with the same grammar as conveyor.cron in Python ================

CREATE FUNCTION cron_field_value(expression text, token text, field integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE
SET search_path FROM CURRENT
AS $$
DECLARE
    names text[] := array['second', 'minute', 'hour', 'day-of-month', 'month', 'day-of-week'];
    lows integer[] := array[0, 0, 0, 1, 1, 0];
    highs integer[] := array[59, 59, 23, 31, 12, 7];
    value integer;
BEGIN
    IF token ~ '^[0-9]{1,6}$' THEN
        value := token::integer;
    ELSIF field = 5 AND upper(token) = ANY (array['JAN','FEB','MAR','APR','MAY','JUN','JUL','AUG','SEP','OCT','NOV','DEC']) THEN
        value := array_position(array['JAN','FEB','MAR','APR','MAY','JUN','JUL','AUG','SEP','OCT','NOV','DEC'], upper(token));
    ELSIF field = 6 AND upper(token) = ANY (array['SUN','MON','TUE','WED','THU','FRI','SAT']) THEN
        value := array_position(array['SUN','MON','TUE','WED','THU','FRI','SAT'], upper(token)) - 1;
    ELSE
        RAISE EXCEPTION 'cron expression ''%'': % value ''%'' is not valid', expression, names[field], token
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF value NOT BETWEEN lows[field] AND highs[field] THEN
        RAISE EXCEPTION 'cron expression ''%'': % value % is out of range %-%',
            expression, names[field], value, lows[field], highs[field]
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value;
END;
$$;

-- The expression as 6 fields (seconds first); refuses what conveyor.cron refuses.
CREATE FUNCTION check_cron(expression text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path FROM CURRENT
AS $$
DECLARE
    names text[] := array['second', 'minute', 'hour', 'day-of-month', 'month', 'day-of-week'];
    lows integer[] := array[0, 0, 0, 1, 1, 0];
    highs integer[] := array[59, 59, 23, 31, 12, 7];
    normalized text := btrim(regexp_replace(coalesce(expression, ''), '[ \t\n\r\f\v]+', ' ', 'g'));
    fields text[];
    field integer;
    item text;
    parts text[];
    first_value integer;
    last_value integer;
    step integer;
    days integer[] := '{}';
    months integer[] := '{}';
BEGIN
    IF normalized = '' THEN
        RAISE EXCEPTION 'cron expression is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    normalized := CASE lower(normalized)
        WHEN '@yearly' THEN '0 0 1 1 *' WHEN '@annually' THEN '0 0 1 1 *'
        WHEN '@monthly' THEN '0 0 1 * *' WHEN '@weekly' THEN '0 0 * * 0'
        WHEN '@daily' THEN '0 0 * * *' WHEN '@midnight' THEN '0 0 * * *'
        WHEN '@hourly' THEN '0 * * * *' ELSE normalized END;
    IF left(normalized, 1) = '@' THEN
        RAISE EXCEPTION 'unknown cron shorthand ''%'': use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly',
            normalized USING ERRCODE = 'invalid_parameter_value';
    END IF;
    fields := string_to_array(normalized, ' ');
    IF cardinality(fields) NOT IN (5, 6) THEN
        RAISE EXCEPTION 'cron expression ''%'' has % fields: give 5 (minute hour day month weekday) or 6 (second first)',
            expression, cardinality(fields) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(fields) = 5 THEN
        fields := array_prepend('0', fields);
    END IF;
    FOR field IN 1..6 LOOP
        FOREACH item IN ARRAY string_to_array(fields[field], ',') LOOP
            parts := regexp_match(item, '^(?:(\*)|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:/([0-9]{1,6}))?$');
            IF parts IS NULL THEN
                RAISE EXCEPTION 'cron expression ''%'': % field ''%'' is not valid', expression, names[field], fields[field]
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            step := coalesce(parts[4]::integer, 1);
            IF step < 1 THEN
                RAISE EXCEPTION 'cron expression ''%'': % step must be at least 1', expression, names[field]
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF parts[1] IS NOT NULL THEN
                first_value := lows[field];
                last_value := highs[field];
            ELSE
                first_value := cron_field_value(expression, parts[2], field);
                last_value := CASE
                    WHEN parts[3] IS NOT NULL THEN cron_field_value(expression, parts[3], field)
                    WHEN parts[4] IS NOT NULL THEN highs[field]
                    ELSE first_value END;
                IF first_value > last_value THEN
                    RAISE EXCEPTION 'cron expression ''%'': % range %-% runs backwards',
                        expression, names[field], parts[2], parts[3] USING ERRCODE = 'invalid_parameter_value';
                END IF;
            END IF;
            IF field = 4 THEN
                days := days || array(SELECT generate_series(first_value, last_value, step));
            ELSIF field = 5 THEN
                months := months || array(SELECT generate_series(first_value, last_value, step));
            END IF;
        END LOOP;
    END LOOP;
    -- When a day field starts with * a day must match both fields (the classic cron rule),
    -- so some listed day must exist in some listed month.
    IF (left(fields[4], 1) = '*' OR left(fields[6], 1) = '*') AND NOT EXISTS (
        SELECT FROM unnest(days) AS d, unnest(months) AS m
        WHERE d <= CASE WHEN m = 2 THEN 29 WHEN m IN (4, 6, 9, 11) THEN 30 ELSE 31 END
    ) THEN
        RAISE EXCEPTION 'cron expression ''%'' never fires: no month in it has such a day', expression
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN array_to_string(fields, ' ');
END;
$$;

CREATE FUNCTION check_timezone(timezone text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
AS $$
BEGIN
    -- IANA names only: not the posix/ and right/ copies, the server's localtime or posixrules.
    PERFORM FROM pg_timezone_names
    WHERE name = check_timezone.timezone AND name !~ '^(posix|right)/' AND name NOT IN ('localtime', 'posixrules');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown time zone ''%'': use an IANA name like UTC, Europe/Paris or Australia/Sydney',
            timezone USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN timezone;
END;
$$;

-- == Schedules ==========================================================================

CREATE TABLE schedules (
    name              text PRIMARY KEY
                      CONSTRAINT schedule_name_format CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,126}$'),
    cron              text NOT NULL,
    timezone          text NOT NULL DEFAULT 'UTC',
    task              text NOT NULL CONSTRAINT schedule_task_named CHECK (task <> ''),
    args              jsonb NOT NULL DEFAULT jsonb_build_object()
                      CONSTRAINT schedule_args_object CHECK (jsonb_typeof(args) = 'object'),
    queue             text,
    priority          smallint CONSTRAINT schedule_priority_range CHECK (priority BETWEEN 0 AND 3),
    max_attempts      integer CONSTRAINT schedule_max_attempts_positive CHECK (max_attempts >= 1),
    catch_up          text NOT NULL DEFAULT 'once' CONSTRAINT catch_up_policy CHECK (catch_up IN ('skip', 'once')),
    paused            boolean NOT NULL DEFAULT false,
    -- Set by resume_schedule when a fire time passed while paused: those fires, from
    -- next_fire_at to the moment it is resumed, go to the catch-up policy. (A new or
    -- redefined schedule owes nothing.)
    resumed           boolean NOT NULL DEFAULT false,
    declared_in_code  boolean NOT NULL DEFAULT false,
    -- When the current definition (cron and time zone) was made: fires are owed from then.
    defined_at        timestamptz NOT NULL DEFAULT now(),
    -- NULL: the scheduler computes it from defined_at (a new or redefined schedule).
    next_fire_at      timestamptz,
    last_fire_at      timestamptz,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE schedules IS
    'Cron schedules. The elected scheduler enqueues a job for each fire time; see schedule_fires.';
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused;

CREATE TABLE schedule_fires (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule    text NOT NULL,
    fire_time   timestamptz NOT NULL,
    kind        text NOT NULL CONSTRAINT fire_kind CHECK (kind IN ('on_time', 'late', 'catch_up', 'skipped', 'manual')),
    window_end  timestamptz,
    job_id      bigint,
    fired_at    timestamptz NOT NULL
);
COMMENT ON TABLE schedule_fires IS
    'One row per fire. The unique (schedule, fire_time) index is what makes a fire happen once, '
    'whichever scheduler (or two, during a hand-over) gets to it.';
CREATE UNIQUE INDEX schedule_fires_once ON schedule_fires (schedule, fire_time) WHERE kind <> 'manual';
CREATE INDEX schedule_fires_fired_at ON schedule_fires (fired_at);

-- One fire: the fire row and its job, in the caller's transaction. Returns the job id, or
-- NULL when that fire time has fired already (or is recorded as skipped).
CREATE FUNCTION fire_schedule(
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

CREATE FUNCTION create_schedule(
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

CREATE FUNCTION find_schedule(name text) RETURNS schedules
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    match schedules%ROWTYPE;
BEGIN
    SELECT * INTO match FROM schedules s WHERE s.name = find_schedule.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conveyor.find_schedule: no schedule named ''%''', find_schedule.name
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN match;
END;
$$;

CREATE FUNCTION pause_schedule(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT find_schedule(pause_schedule.name);
    UPDATE schedules SET paused = true, updated_at = now() WHERE schedules.name = pause_schedule.name;
$$;

-- Resuming lets the schedule fire again from its next fire time; if fire times passed while
-- it was paused, its catch-up policy decides about them (one job, or a skipped window).
CREATE FUNCTION resume_schedule(name text) RETURNS void
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

-- A manual fire: the schedule's job, now, without touching its cadence.
CREATE FUNCTION trigger_schedule(name text) RETURNS bigint
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT find_schedule(trigger_schedule.name);
    SELECT fire_schedule(trigger_schedule.name, clock_timestamp(), 'manual');
$$;

CREATE FUNCTION remove_schedule(name text) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT find_schedule(remove_schedule.name);
    DELETE FROM schedules WHERE schedules.name = remove_schedule.name;
$$;

-- == Leader election =====================================================================

CREATE TABLE leaders (
    role        text PRIMARY KEY,
    holder      uuid NOT NULL,
    hostname    text NOT NULL,
    pid         integer NOT NULL,
    elected_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
COMMENT ON TABLE leaders IS 'Who leads (role scheduler) and until when; see conveyor.queue.leader.';

-- == Retention and the run log ==========================================================

CREATE TABLE retention (
    queue           text PRIMARY KEY,
    completed_keep  interval,
    completed_max   integer CONSTRAINT completed_max_positive CHECK (completed_max >= 0),
    dead_keep       interval,
    runs_keep       interval
);
COMMENT ON TABLE retention IS
    'How long finished work is kept. The row for queue ''*'' holds the defaults; a row per '
    'queue overrides the columns it sets.';
INSERT INTO retention (queue, completed_keep, completed_max, dead_keep, runs_keep)
VALUES ('*', interval '24 hours', NULL, interval '7 days', interval '90 days');

CREATE TABLE job_runs (
    id            bigint NOT NULL,
    enqueued_at   timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz NOT NULL,
    worker_id     uuid,
    attempt       integer NOT NULL,
    state         text NOT NULL CONSTRAINT run_state CHECK (state IN ('completed', 'cancelled', 'dead')),
    queue         text NOT NULL,
    task          text NOT NULL,
    error         text
) PARTITION BY RANGE (finished_at);
COMMENT ON TABLE job_runs IS
    'The run log: one compact row per finished job (no arguments or results), kept after the '
    'job itself is gone from job_history or dead_jobs. One partition per UTC day.';
CREATE INDEX job_runs_id ON job_runs (id);
CREATE TABLE job_runs_default PARTITION OF job_runs DEFAULT;

CREATE FUNCTION ensure_daily_partitions(parent text, days_ahead integer, at timestamptz) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
-- Attaching locks the parent briefly; never queue behind a long transaction (and hold acks).
SET lock_timeout = '500ms'
AS $$
DECLARE
    day date;
    part text;
    created integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.' || parent || ' partitions'));
    FOR day IN
        SELECT d::date FROM generate_series(
            (at AT TIME ZONE 'UTC')::date - 1, (at AT TIME ZONE 'UTC')::date + days_ahead, interval '1 day') AS d
    LOOP
        part := parent || '_' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('%I.%I', current_schema(), part)) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           current_schema(), part, current_schema(), parent);
            EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                           current_schema(), parent, current_schema(), part,
                           day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        EXCEPTION WHEN check_violation OR duplicate_table OR unique_violation OR lock_not_available THEN
            RAISE NOTICE 'conveyor: partition % not created: %', part, SQLERRM;
        END;
    END LOOP;
    RETURN created;
END;
$$;

CREATE OR REPLACE FUNCTION ensure_history_partitions(days_ahead integer DEFAULT 7, at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT ensure_daily_partitions('job_history', days_ahead, at)
         + ensure_daily_partitions('job_runs', days_ahead, at);
$$;

SELECT ensure_history_partitions();

CREATE FUNCTION set_retention(
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

CREATE VIEW retention_by_queue AS
SELECT q.name AS queue,
       coalesce(r.completed_keep, d.completed_keep) AS completed_keep,
       coalesce(r.completed_max, d.completed_max) AS completed_max,
       coalesce(r.dead_keep, d.dead_keep) AS dead_keep,
       coalesce(r.runs_keep, d.runs_keep) AS runs_keep
FROM queues q
CROSS JOIN (SELECT * FROM retention WHERE queue = '*') AS d
LEFT JOIN retention r ON r.queue = q.name;
COMMENT ON VIEW retention_by_queue IS 'The retention in force for each queue (its own row over the defaults).';

-- Retention, in pieces that hold locks briefly (the elected scheduler runs them in turn, each
-- in its own transaction; CALL apply_retention() does the same from psql):
--   retention_rows      row by row, where whole days cannot go;
--   expired_partitions  the whole days of job_history and job_runs past every queue's keep;
--   drop_partition      one such day: copied to the run log (job_history) and dropped.
-- Dropping a partition takes an exclusive lock on its parent table for an instant; it waits
-- at most 500 ms for it, so acks never queue long behind it. A day it cannot drop now goes
-- next time.

CREATE FUNCTION retention_rows(at timestamptz DEFAULT now())
RETURNS TABLE (step text, affected bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET lock_timeout = '500ms'
AS $$
DECLARE
    longest_completed interval;
    longest_runs interval;
    moved bigint;
BEGIN
    SELECT max(completed_keep), max(runs_keep) INTO longest_completed, longest_runs
    FROM (SELECT completed_keep, runs_keep FROM retention_by_queue
          UNION ALL SELECT completed_keep, runs_keep FROM retention WHERE queue = '*') AS keeps;

    step := 'finished jobs moved to the run log'; affected := 0;
    BEGIN
        -- Queues keeping less than the longest keep, and rows in the default partition.
        WITH gone AS (
            DELETE FROM job_history h
            USING retention_by_queue k
            WHERE h.queue = k.queue
              AND k.completed_keep < longest_completed
              AND h.finished_at < at - k.completed_keep
            RETURNING h.*
        )
        INSERT INTO job_runs (id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task, error)
        SELECT id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task, errors -> -1 ->> 'error'
        FROM gone;
        GET DIAGNOSTICS moved = ROW_COUNT;
        affected := affected + moved;

        WITH gone AS (
            DELETE FROM job_history_default h WHERE h.finished_at < at - longest_completed RETURNING h.*
        )
        INSERT INTO job_runs (id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task, error)
        SELECT id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task, errors -> -1 ->> 'error'
        FROM gone;
        GET DIAGNOSTICS moved = ROW_COUNT;
        affected := affected + moved;

        -- Beyond a queue's completed_max newest.
        WITH beyond AS (
            SELECT ranked.id, ranked.finished_at FROM (
                SELECT h.id, h.finished_at, k.completed_max,
                       row_number() OVER (PARTITION BY h.queue ORDER BY h.finished_at DESC, h.id DESC) AS newest
                FROM job_history h JOIN retention_by_queue k ON k.queue = h.queue
                WHERE k.completed_max IS NOT NULL
            ) AS ranked
            WHERE ranked.newest > ranked.completed_max
        ), gone AS (
            DELETE FROM job_history h USING beyond
            WHERE h.id = beyond.id AND h.finished_at = beyond.finished_at
            RETURNING h.*
        )
        INSERT INTO job_runs (id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task, error)
        SELECT id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task, errors -> -1 ->> 'error'
        FROM gone;
        GET DIAGNOSTICS moved = ROW_COUNT;
        affected := affected + moved;
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'conveyor: finished jobs are busy; retention goes on next time';
        affected := 0;
    END;
    RETURN NEXT;

    step := 'dead jobs moved to the run log'; affected := 0;
    BEGIN
        WITH gone AS (
            DELETE FROM dead_jobs j
            USING (SELECT d.queue, coalesce(k.dead_keep, (SELECT dead_keep FROM retention WHERE queue = '*')) AS keep
                   FROM (SELECT DISTINCT queue FROM dead_jobs) AS d
                   LEFT JOIN retention_by_queue k ON k.queue = d.queue) AS keeps
            WHERE j.queue = keeps.queue AND j.died_at < at - keeps.keep
            RETURNING j.*
        )
        INSERT INTO job_runs (id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task, error)
        SELECT id, enqueued_at, started_at, died_at, NULL, attempt, 'dead', queue, task, errors -> -1 ->> 'error'
        FROM gone;
        GET DIAGNOSTICS affected = ROW_COUNT;
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'conveyor: dead jobs are busy; retention goes on next time';
    END;
    RETURN NEXT;

    step := 'run log rows deleted'; affected := 0;
    BEGIN
        DELETE FROM job_runs r
        USING retention_by_queue k
        WHERE r.queue = k.queue AND k.runs_keep < longest_runs AND r.finished_at < at - k.runs_keep;
        GET DIAGNOSTICS moved = ROW_COUNT;
        affected := moved;
        DELETE FROM job_runs_default r WHERE r.finished_at < at - longest_runs;
        GET DIAGNOSTICS moved = ROW_COUNT;
        affected := affected + moved;
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'conveyor: the run log is busy; retention goes on next time';
        affected := 0;
    END;
    RETURN NEXT;

    step := 'fire log rows deleted'; affected := 0;
    BEGIN
        DELETE FROM schedule_fires WHERE fired_at < at - longest_runs;
        GET DIAGNOSTICS affected = ROW_COUNT;
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'conveyor: the fire log is busy; retention goes on next time';
    END;
    RETURN NEXT;
END;
$$;

CREATE FUNCTION expired_partitions(at timestamptz DEFAULT now()) RETURNS SETOF text
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

-- Drop one day: a job_history day is first copied to the run log. Returns the rows copied.
CREATE FUNCTION drop_partition(partition text) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET lock_timeout = '500ms'
AS $$
DECLARE
    copied bigint := 0;
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE c.relname = drop_partition.partition AND c.relnamespace = current_schema()::regnamespace
          AND ((i.inhparent = 'job_history'::regclass AND c.relname ~ '^job_history_[0-9]{8}$')
               OR (i.inhparent = 'job_runs'::regclass AND c.relname ~ '^job_runs_[0-9]{8}$'))
    ) THEN
        RAISE EXCEPTION 'conveyor.drop_partition: % is not a daily partition of job_history or job_runs',
            drop_partition.partition USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF drop_partition.partition LIKE 'job_history_%' THEN
        EXECUTE format(
            'INSERT INTO job_runs (id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task, error) '
            'SELECT id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task, '
            'errors -> -1 ->> ''error'' FROM %I.%I', current_schema(), drop_partition.partition);
        GET DIAGNOSTICS copied = ROW_COUNT;
    END IF;
    EXECUTE format('DROP TABLE %I.%I', current_schema(), drop_partition.partition);
    RETURN copied;
END;
$$;

-- All of retention from psql: rows first, then each expired day in its own transaction
-- (CALL conveyor.apply_retention(); outside a transaction block: it commits as it goes). A
-- procedure that commits cannot pin its search_path, so the schema is written into it here.
DO $create$
BEGIN
    EXECUTE format($body$
CREATE PROCEDURE %1$I.apply_retention(at timestamptz DEFAULT now())
LANGUAGE plpgsql
AS $procedure$
DECLARE
    result record;
    part text;
BEGIN
    FOR result IN SELECT * FROM %1$I.retention_rows(at) LOOP
        RAISE NOTICE 'conveyor retention: %%: %%', result.step, result.affected;
    END LOOP;
    COMMIT;
    FOR part IN SELECT * FROM %1$I.expired_partitions(at) LOOP
        BEGIN
            RAISE NOTICE 'conveyor retention: dropped %% (%% rows to the run log)', part, %1$I.drop_partition(part);
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'conveyor retention: %% is busy; it goes next time', part;
        END;
        COMMIT;
    END LOOP;
END;
$procedure$
$body$, current_schema());
END;
$create$;

-- The job listing now includes what only the run log still remembers.
DROP VIEW job_list;
CREATE VIEW job_list AS
SELECT id, queue, task, state, priority, attempt, max_attempts, run_at, enqueued_at, started_at,
       NULL::timestamptz AS finished_at, progress::integer AS progress, args,
       errors -> -1 ->> 'error' AS last_error
FROM jobs
UNION ALL
SELECT id, queue, task, 'dead', priority, attempt, max_attempts, run_at, enqueued_at, started_at,
       died_at, NULL, args, errors -> -1 ->> 'error'
FROM dead_jobs
UNION ALL
SELECT id, queue, task, state, priority, attempt, max_attempts, run_at, enqueued_at, started_at,
       finished_at, 100, args, errors -> -1 ->> 'error'
FROM job_history
UNION ALL
SELECT id, queue, task, state, NULL, attempt, NULL, NULL, enqueued_at, started_at,
       finished_at, NULL, NULL, error
FROM job_runs;
COMMENT ON VIEW job_list IS
    'Every job Conveyor remembers, one row each: live, dead, finished, or only in the run log '
    '(no arguments then).';
