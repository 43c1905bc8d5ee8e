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
