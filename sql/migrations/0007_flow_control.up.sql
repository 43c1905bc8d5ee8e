-- Conveyor schema, version 7: what flow control and job control need, added once.
--
-- jobs (and, where a finished job keeps it, job_history and dead_jobs):
--   key         the job's limit key inside its queue (a tenant, a publisher, an API account):
--               per-key rate limits and concurrency caps count jobs by it. NULL: no key.
--   meta        the user's own tags (a JSON object); Conveyor never reads it.
--   after_id    chain: the job waits in state 'blocked' until job after_id succeeds; if that
--               one dies or is cancelled, this one is cancelled with the reason.
--   batch_id    the batch (group) the job belongs to; its callback runs once all members
--               have finished.
--   has_followers  (jobs only) some blocked job waits for this one: its end releases or
--               cancels them. False for nearly every job, so the end of a job costs nothing more.
--   awaited     (jobs only) a caller waits for this job's end (Conveyor.result): its end
--               sends a notification on the channel "<schema>.done" with the job id.
--   abort_requested_at  (jobs only) abort asked for while the job ran; the worker holding it
--               stops the handler (see conveyor.queue.control).
-- Adding a column with a constant default rewrites nothing.
--
-- queues: limits, all NULL by default (no limit): rate_limit starts per rate_period across
-- all workers, concurrency running at once, and the same per key (key_rate_limit per
-- key_rate_period, key_concurrency). limited: any of them is set; the worker's plain claim
-- skips limited queues, which are claimed under their row's lock (see sql/queries/limits.sql).
--
-- rate_windows: the start times of the last rate_limit (or key_rate_limit) jobs of a queue
-- (key '') or of one key in it: a sliding window, exact for any span of the period.
--
-- pauses: a task paused everywhere (scope 'task', name the task), or everything (scope 'all').
--
-- batches: a group of jobs and the callback that runs once after the last of them ends.

ALTER DOMAIN job_state DROP CONSTRAINT live_state;
ALTER DOMAIN job_state ADD CONSTRAINT live_state
    CHECK (VALUE IN ('available', 'scheduled', 'running', 'blocked'));

CREATE DOMAIN job_key AS text
    CONSTRAINT key_length CHECK (length(VALUE) BETWEEN 1 AND 512);
CREATE DOMAIN job_meta AS jsonb
    CONSTRAINT meta_object CHECK (jsonb_typeof(VALUE) = 'object');

ALTER TABLE jobs
    ADD COLUMN key job_key,
    ADD COLUMN meta job_meta,
    ADD COLUMN after_id bigint,
    ADD COLUMN batch_id bigint,
    ADD COLUMN has_followers boolean NOT NULL DEFAULT false,
    ADD COLUMN awaited boolean NOT NULL DEFAULT false,
    ADD COLUMN abort_requested_at timestamptz;

ALTER TABLE job_history
    ADD COLUMN key text,
    ADD COLUMN meta jsonb,
    ADD COLUMN after_id bigint,
    ADD COLUMN batch_id bigint;

ALTER TABLE dead_jobs
    ADD COLUMN key text,
    ADD COLUMN meta jsonb,
    ADD COLUMN after_id bigint,
    ADD COLUMN batch_id bigint;

-- A keyed queue's claim reads each key's waiting jobs from the head of its own range, so a
-- key with a long backlog is skipped in one step (see sql/queries/limits.sql). Jobs without a
-- key are not in it: unkeyed enqueues pay nothing for it.
CREATE INDEX jobs_key_claim ON jobs (queue, key, priority, run_at, id)
    WHERE state = 'available' AND key IS NOT NULL;
CREATE INDEX jobs_after ON jobs (after_id) WHERE after_id IS NOT NULL;
CREATE INDEX jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;

ALTER TABLE queues
    ADD COLUMN rate_limit integer CONSTRAINT rate_limit_range CHECK (rate_limit BETWEEN 1 AND 100000),
    ADD COLUMN rate_period interval CONSTRAINT rate_period_positive CHECK (rate_period > interval '0'),
    ADD COLUMN concurrency integer CONSTRAINT concurrency_positive CHECK (concurrency >= 1),
    ADD COLUMN key_rate_limit integer CONSTRAINT key_rate_limit_range CHECK (key_rate_limit BETWEEN 1 AND 100000),
    ADD COLUMN key_rate_period interval CONSTRAINT key_rate_period_positive CHECK (key_rate_period > interval '0'),
    ADD COLUMN key_concurrency integer CONSTRAINT key_concurrency_positive CHECK (key_concurrency >= 1),
    ADD COLUMN limited boolean GENERATED ALWAYS AS (
        rate_limit IS NOT NULL OR concurrency IS NOT NULL
        OR key_rate_limit IS NOT NULL OR key_concurrency IS NOT NULL) STORED,
    ADD CONSTRAINT rate_limit_with_period CHECK ((rate_limit IS NULL) = (rate_period IS NULL)),
    ADD CONSTRAINT key_rate_limit_with_period CHECK ((key_rate_limit IS NULL) = (key_rate_period IS NULL));

CREATE TABLE rate_windows (
    queue   text NOT NULL,
    key     text NOT NULL,
    starts  timestamptz[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (queue, key)
);
COMMENT ON TABLE rate_windows IS
    'Recent start times per queue (key '''') or per key in a queue, oldest first, at most the '
    'rate limit''s count: the sliding window the limited claim reads and appends to.';

CREATE TABLE pauses (
    scope      text NOT NULL CONSTRAINT pause_scope CHECK (scope IN ('all', 'task')),
    name       text NOT NULL DEFAULT '',
    paused_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, name)
);
COMMENT ON TABLE pauses IS
    'What is paused besides queues: one task type everywhere (scope task) or everything (scope all).';

CREATE TABLE batches (
    id                 bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    callback_task      text,
    callback_args      jsonb NOT NULL DEFAULT '{}',
    callback_queue     text,
    callback_priority  smallint,
    total              integer NOT NULL DEFAULT 0,
    -- Members not yet finished, plus one until the batch is sealed (no more members).
    pending            integer NOT NULL DEFAULT 1,
    completed          integer NOT NULL DEFAULT 0,
    dead               integer NOT NULL DEFAULT 0,
    cancelled          integer NOT NULL DEFAULT 0,
    meta               jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    sealed_at          timestamptz,
    finished_at        timestamptz,
    callback_job_id    bigint
);
COMMENT ON TABLE batches IS
    'Groups of jobs: counts by outcome, and the callback enqueued once when pending reaches 0.';

-- == One job writer, version 2: the key and meta =========================================
-- insert_job_v2 is insert_job_v1 with the job's limit key and meta; enqueue_v2 takes them and
-- checks them (key 1 to 512 characters, meta a JSON object of at most 64 KiB as compact
-- JSON); retry_dead_v2 keeps them. The wrappers conveyor.enqueue and conveyor.retry_dead
-- move to version 2 (enqueue gains two parameters with defaults, so the old wrapper is
-- dropped: two overloads would make a call with defaults ambiguous).

ALTER DOMAIN job_meta ADD CONSTRAINT meta_at_most_64_kib CHECK (compact_json_octets_v1(VALUE) <= 65536);

CREATE FUNCTION insert_job_v2(
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
    errors        jsonb DEFAULT '[]',
    key           text DEFAULT NULL,
    meta          jsonb DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    declared tasks%ROWTYPE;
    target_queue text;
    due timestamptz := job_due_v1(insert_job_v2.run_at, NULL, insert_job_v2.at);
    new_state text := job_state_v1(due, insert_job_v2.at);
    new_id bigint;
BEGIN
    -- The rule of the job_time domain (see the end of this file), said plainly.
    IF NOT (due >= timestamptz '0001-01-02 00:00:00+00' AND due < timestamptz '9999-12-31 00:00:00+00') THEN
        RAISE EXCEPTION 'conveyor.enqueue: run_at % is outside the years 1 to 9999 a job''s time can hold', due
            USING ERRCODE = 'datetime_field_overflow';
    END IF;
    IF insert_job_v2.queue IS NULL OR insert_job_v2.priority IS NULL OR insert_job_v2.max_attempts IS NULL THEN
        SELECT * INTO declared FROM tasks t WHERE t.name = insert_job_v2.task;
    END IF;
    target_queue := coalesce(insert_job_v2.queue, declared.queue, 'default');
    IF insert_job_v2.create_queue THEN
        INSERT INTO queues (name) VALUES (target_queue) ON CONFLICT DO NOTHING;
    ELSE
        PERFORM 1 FROM queues q WHERE q.name = target_queue;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'conveyor.enqueue: unknown queue "%"', target_queue
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Create it with conveyor.create_queue(%L), or start a worker that serves it.', target_queue);
        END IF;
    END IF;

    IF insert_job_v2.job_id IS NULL THEN
        INSERT INTO jobs AS j (queue, task, args, state, priority, run_at, max_attempts, unique_key,
                               claims, errors, enqueued_at, key, meta)
        VALUES (target_queue, insert_job_v2.task, insert_job_v2.args, new_state,
                coalesce(insert_job_v2.priority, declared.priority, 2), due,
                coalesce(insert_job_v2.max_attempts, declared.max_attempts, 5), insert_job_v2.unique_key,
                insert_job_v2.claims, insert_job_v2.errors, coalesce(insert_job_v2.enqueued_at, insert_job_v2.at),
                insert_job_v2.key, insert_job_v2.meta)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
        RETURNING j.id INTO new_id;
    ELSE
        INSERT INTO jobs AS j (id, queue, task, args, state, priority, run_at, max_attempts, unique_key,
                               claims, errors, enqueued_at, key, meta)
        VALUES (insert_job_v2.job_id, target_queue, insert_job_v2.task, insert_job_v2.args, new_state,
                coalesce(insert_job_v2.priority, declared.priority, 2), due,
                coalesce(insert_job_v2.max_attempts, declared.max_attempts, 5), insert_job_v2.unique_key,
                insert_job_v2.claims, insert_job_v2.errors, coalesce(insert_job_v2.enqueued_at, insert_job_v2.at),
                insert_job_v2.key, insert_job_v2.meta)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
        RETURNING j.id INTO new_id;
    END IF;

    IF new_id IS NOT NULL AND new_state = 'available' THEN
        PERFORM pg_notify(current_schema(), target_queue);
    END IF;
    RETURN new_id;
END;
$$;
COMMENT ON FUNCTION insert_job_v2(text, jsonb, text, integer, integer, timestamptz, text, timestamptz, boolean,
                                  bigint, integer, timestamptz, jsonb, text, jsonb) IS
    'Write one job row (the one SQL writer: enqueue, fire_schedule and retry_dead use it), '
    'with its limit key and meta; '
    'NULL when a live job holds its unique key.';

CREATE FUNCTION enqueue_v2(
    task          text,
    args          jsonb DEFAULT '{}',
    queue         text DEFAULT NULL,
    priority      integer DEFAULT NULL,
    run_at        timestamptz DEFAULT NULL,
    unique_key    text DEFAULT NULL,
    max_attempts  integer DEFAULT NULL,
    key           text DEFAULT NULL,
    meta          jsonb DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    job_id bigint;
BEGIN
    IF enqueue_v2.task IS NULL OR enqueue_v2.task = '' THEN
        RAISE EXCEPTION 'conveyor.enqueue: task name is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_v2.args IS NULL OR jsonb_typeof(enqueue_v2.args) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.enqueue: args for task "%" must be a JSON object, got %',
            enqueue_v2.task, coalesce(jsonb_typeof(enqueue_v2.args), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The rule of the job_args domain: compact JSON, counted exactly only past 1 MiB of text.
    IF octet_length(enqueue_v2.args::text) > 1048576 AND compact_json_octets_v1(enqueue_v2.args) > 1048576 THEN
        RAISE EXCEPTION 'conveyor.enqueue: args for task "%" take % bytes as JSON, more than the 1 MiB limit',
            enqueue_v2.task, compact_json_octets_v1(enqueue_v2.args)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF enqueue_v2.unique_key IS NOT NULL AND length(enqueue_v2.unique_key) NOT BETWEEN 1 AND 512 THEN
        RAISE EXCEPTION 'conveyor.enqueue: unique_key must be 1 to 512 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_v2.priority IS NOT NULL AND enqueue_v2.priority NOT BETWEEN 0 AND 3 THEN
        RAISE EXCEPTION 'conveyor.enqueue: priority % is out of range', enqueue_v2.priority
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 0 (critical), 1 (high), 2 (normal) or 3 (low).';
    END IF;
    IF enqueue_v2.max_attempts IS NOT NULL AND enqueue_v2.max_attempts < 1 THEN
        RAISE EXCEPTION 'conveyor.enqueue: max_attempts must be at least 1, got %', enqueue_v2.max_attempts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF enqueue_v2.key IS NOT NULL AND length(enqueue_v2.key) NOT BETWEEN 1 AND 512 THEN
        RAISE EXCEPTION 'conveyor.enqueue: key must be 1 to 512 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_v2.meta IS NOT NULL AND jsonb_typeof(enqueue_v2.meta) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.enqueue: meta for task "%" must be a JSON object, got %',
            enqueue_v2.task, jsonb_typeof(enqueue_v2.meta)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF enqueue_v2.meta IS NOT NULL AND compact_json_octets_v1(enqueue_v2.meta) > 65536 THEN
        RAISE EXCEPTION 'conveyor.enqueue: meta for task "%" takes % bytes as JSON, more than the 64 KiB limit',
            enqueue_v2.task, compact_json_octets_v1(enqueue_v2.meta)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;

    job_id := insert_job_v2(enqueue_v2.task, enqueue_v2.args, enqueue_v2.queue, enqueue_v2.priority,
                            enqueue_v2.max_attempts, enqueue_v2.run_at, enqueue_v2.unique_key, now(), false,
                            key => enqueue_v2.key, meta => enqueue_v2.meta);
    IF job_id IS NULL THEN
        -- A live job holds this unique key already: that job stands for this request.
        SELECT j.id INTO job_id FROM jobs j WHERE j.unique_key = enqueue_v2.unique_key;
        IF job_id IS NULL THEN
            RAISE EXCEPTION 'conveyor.enqueue: the job holding unique key "%" finished while this one was enqueued; try again',
                enqueue_v2.unique_key USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;
    RETURN job_id;
END;
$$;
COMMENT ON FUNCTION enqueue_v2(text, jsonb, text, integer, timestamptz, text, integer, text, jsonb) IS
    'Version 2 of enqueue (see conveyor.enqueue).';

CREATE FUNCTION retry_dead_v2(job_id bigint) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    dead dead_jobs%ROWTYPE;
    revived bigint;
BEGIN
    DELETE FROM dead_jobs d WHERE d.id = retry_dead_v2.job_id RETURNING d.* INTO dead;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conveyor.retry_dead: no dead job with id %', retry_dead_v2.job_id
            USING ERRCODE = 'no_data_found';
    END IF;
    -- A fresh attempt budget, due now; its id, claims, unique key, enqueue time, errors, key and meta kept.
    revived := insert_job_v2(dead.task, dead.args, dead.queue, dead.priority, dead.max_attempts, NULL,
                             dead.unique_key, now(), true, dead.id, dead.claims, dead.enqueued_at, dead.errors,
                             dead.key, dead.meta);
    IF revived IS NULL THEN
        RAISE EXCEPTION 'conveyor.retry_dead: job % cannot go back: a live job already holds its unique key',
            retry_dead_v2.job_id USING ERRCODE = 'unique_violation';
    END IF;
    RETURN revived;
END;
$$;
COMMENT ON FUNCTION retry_dead_v2(bigint) IS 'Version 2 of retry_dead (keeps the key and meta) (see conveyor.retry_dead).';

DROP FUNCTION enqueue(text, jsonb, text, integer, timestamptz, text, integer);

DO $wrappers$
BEGIN
    EXECUTE format($sql$
CREATE FUNCTION %1$I.enqueue(
    task          text,
    args          jsonb DEFAULT '{}',
    queue         text DEFAULT NULL,
    priority      integer DEFAULT NULL,
    run_at        timestamptz DEFAULT NULL,
    unique_key    text DEFAULT NULL,
    max_attempts  integer DEFAULT NULL,
    key           text DEFAULT NULL,
    meta          jsonb DEFAULT NULL
) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.enqueue_v2(enqueue.task, enqueue.args, enqueue.queue, enqueue.priority, enqueue.run_at,
                           enqueue.unique_key, enqueue.max_attempts, enqueue.key, enqueue.meta);
$body$;

CREATE OR REPLACE FUNCTION %1$I.retry_dead(job_id bigint) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.retry_dead_v2(retry_dead.job_id);
$body$;
$sql$, current_schema());
END;
$wrappers$;
COMMENT ON FUNCTION enqueue(text, jsonb, text, integer, timestamptz, text, integer, text, jsonb) IS
    'Enqueue a job inside the caller''s transaction; returns its id (or the id of the live job '
    'that already holds unique_key). Workers see it only after commit. key: its limit key in the '
    'queue; meta: the caller''s own tags (a JSON object).';
