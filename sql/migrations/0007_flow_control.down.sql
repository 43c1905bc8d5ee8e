-- Undo 0007. Jobs that are blocked cannot be kept by version 6: they are removed.

DO $wrappers$
BEGIN
    EXECUTE format($sql$
DROP FUNCTION %1$I.enqueue(text, jsonb, text, integer, timestamptz, text, integer, text, jsonb);
CREATE FUNCTION %1$I.enqueue(
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
$sql$, current_schema());
END;
$wrappers$;
COMMENT ON FUNCTION enqueue(text, jsonb, text, integer, timestamptz, text, integer) IS
    'Enqueue a job inside the caller''s transaction; returns its id (or the id of the live job '
    'that already holds unique_key). Workers see it only after commit.';

DROP FUNCTION retry_dead_v2(bigint);
DROP FUNCTION enqueue_v2(text, jsonb, text, integer, timestamptz, text, integer, text, jsonb);
DROP FUNCTION insert_job_v2(text, jsonb, text, integer, integer, timestamptz, text, timestamptz, boolean,
                            bigint, integer, timestamptz, jsonb, text, jsonb);

DELETE FROM jobs WHERE state = 'blocked';
DROP TABLE batches;
DROP TABLE pauses;
DROP TABLE rate_windows;
ALTER TABLE queues
    DROP COLUMN limited,
    DROP COLUMN rate_limit,
    DROP COLUMN rate_period,
    DROP COLUMN concurrency,
    DROP COLUMN key_rate_limit,
    DROP COLUMN key_rate_period,
    DROP COLUMN key_concurrency;
ALTER TABLE dead_jobs DROP COLUMN key, DROP COLUMN meta, DROP COLUMN after_id, DROP COLUMN batch_id;
ALTER TABLE job_history DROP COLUMN key, DROP COLUMN meta, DROP COLUMN after_id, DROP COLUMN batch_id;
ALTER TABLE jobs
    DROP COLUMN key,
    DROP COLUMN meta,
    DROP COLUMN after_id,
    DROP COLUMN batch_id,
    DROP COLUMN has_followers,
    DROP COLUMN awaited,
    DROP COLUMN abort_requested_at;
DROP DOMAIN job_key;
DROP DOMAIN job_meta;
ALTER DOMAIN job_state DROP CONSTRAINT live_state;
ALTER DOMAIN job_state ADD CONSTRAINT live_state CHECK (VALUE IN ('available', 'scheduled', 'running'));
