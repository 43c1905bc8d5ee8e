-- Retention, in bounded steps (see the SQL functions count_finished_v1, retention_batch_v2,
-- expired_partitions_v2 and drop_partition_v2): run by the elected scheduler, or with
-- `conveyor retention apply`. Every call takes at most its batch of rows and commits. Rows of
-- job_history and dead_jobs go only once the metrics have counted them (before the mark of
-- count_metrics_v1, which retention runs first: count_metrics in metrics.sql).

-- name: count_finished
-- Count finished jobs into the rollup behind queue_stats, at most %(spans)s 5-minute buckets;
-- returns the buckets counted.
SELECT {schema}.count_finished_v1(coalesce(%(now)s::timestamptz, now()), %(spans)s);

-- name: retention_batch
-- One batch of each row step (at most %(batch)s rows per statement); one row per step with its count.
SELECT step, affected FROM {schema}.retention_batch_v2(coalesce(%(now)s::timestamptz, now()), %(batch)s);

-- name: expired_partitions
-- The daily partitions past every queue's keep (job_history days only once counted).
SELECT {schema}.expired_partitions_v2(coalesce(%(now)s::timestamptz, now()));

-- name: drop_partition_step
-- Copy up to %(batch)s rows of an expired job_history day to the run log, and drop the day
-- once all are copied (a job_runs day is dropped at once): (rows copied, dropped).
SELECT copied, dropped FROM {schema}.drop_partition_v2(%(partition)s, %(batch)s);

-- name: set_retention
-- Change the defaults (queue '*') or one queue's retention; NULLs leave a value as it is.
SELECT {schema}.set_retention_v1(%(queue)s, %(completed_keep)s::interval, %(completed_max)s::integer,
                              %(dead_keep)s::interval, %(runs_keep)s::interval);

-- name: list_retention
-- The defaults, then what each queue keeps.
SELECT '*' AS queue, completed_keep, completed_max, dead_keep, runs_keep FROM {schema}.retention WHERE queue = '*'
UNION ALL
(SELECT queue, completed_keep, completed_max, dead_keep, runs_keep FROM {schema}.retention_by_queue ORDER BY queue);
