-- Probe M: retention over a day being copied to the run log while the row step runs.
-- A queue 'short' keeps finished jobs 1 h (less than the default 1 day). A job_history day 3
-- days ago holds 1000 rows of 'short' and 1000 of 'p'. drop_partition_v1 copies the first
-- 500 (by id) and stops (its time budget ran out, as apply_retention allows); then the row
-- step (retention_batch_v1) moves 'short' rows of every partition, the copied ones included.
\set VERBOSITY terse
SELECT conveyor.create_queue('p'), conveyor.create_queue('short');
SELECT conveyor.set_retention('short', completed_keep => interval '1 hour');
SELECT conveyor.ensure_history_partitions(7, now() - interval '3 days');
INSERT INTO conveyor.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, max_attempts, priority, state, queue, task, args, errors)
SELECT i, now() - interval '3 days', now() - interval '3 days', now() - interval '3 days',
       date_trunc('day', now() - interval '3 days') + interval '1 hour' + i * interval '1 second',
       1, 1, 2, 'completed', CASE WHEN i % 2 = 0 THEN 'short' ELSE 'p' END, 'arec', '{}', '[]'
FROM generate_series(1, 2000) i;
SELECT tableoid::regclass AS partition, count(*) FROM conveyor.job_history GROUP BY 1;
SELECT * FROM conveyor.expired_partitions(now());
SELECT * FROM conveyor.drop_partition_v1('job_history_' || to_char(now() - interval '3 days', 'YYYYMMDD'), 500);
SELECT * FROM conveyor.retention_batch_v1(now(), 5000);
SELECT * FROM conveyor.drop_partition_v1('job_history_' || to_char(now() - interval '3 days', 'YYYYMMDD'), 5000);
SELECT count(*) AS runs_rows, count(DISTINCT id) AS distinct_ids, count(*) - count(DISTINCT id) AS duplicated FROM conveyor.job_runs;
SELECT count(*) AS history_left FROM conveyor.job_history;
