-- Retention, in short steps (see the SQL functions retention_rows, expired_partitions and
-- drop_partition): run by the elected scheduler, or with `conveyor retention apply`.

-- name: retention_rows
-- Row-by-row retention, where whole days cannot go; one row per step with its count.
SELECT step, affected FROM {schema}.retention_rows(coalesce(%(now)s::timestamptz, now()));

-- name: expired_partitions
-- The daily partitions past every queue's keep.
SELECT {schema}.expired_partitions(coalesce(%(now)s::timestamptz, now()));

-- name: drop_partition
-- Drop one expired day (a job_history day goes to the run log first); rows copied.
SELECT {schema}.drop_partition(%(partition)s);

-- name: set_retention
-- Change the defaults (queue '*') or one queue's retention; NULLs leave a value as it is.
SELECT {schema}.set_retention(%(queue)s, %(completed_keep)s::interval, %(completed_max)s::integer,
                              %(dead_keep)s::interval, %(runs_keep)s::interval);

-- name: list_retention
-- The defaults, then what each queue keeps.
SELECT '*' AS queue, completed_keep, completed_max, dead_keep, runs_keep FROM {schema}.retention WHERE queue = '*'
UNION ALL
(SELECT queue, completed_keep, completed_max, dead_keep, runs_keep FROM {schema}.retention_by_queue ORDER BY queue);
