-- Undo 0007. Jobs that are blocked cannot be kept by version 6: they are removed.

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
