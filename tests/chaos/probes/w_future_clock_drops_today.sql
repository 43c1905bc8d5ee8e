-- Probe W: retention given a clock two days ahead (CALL apply_retention(now() + 2 days), or
-- apply_retention(now=...)) takes today's job_history day as expired while workers still ack
-- into it. The day is copied to the run log in id order; a job with a lower id than the copy
-- has reached, acked meanwhile, lands behind the mark and is dropped with the day, in neither
-- table.
\set VERBOSITY terse
SELECT conveyor.create_queue('p');
SELECT conveyor.ensure_history_partitions(7, now());
INSERT INTO conveyor.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, max_attempts, priority, state, queue, task, args, errors)
SELECT 1000 + i, now(), now(), now(), now(), 1, 1, 2, 'completed', 'p', 'arec', '{}', '[]' FROM generate_series(1, 1000) i;
SELECT * FROM conveyor.expired_partitions(now() + interval '2 days') p WHERE p = 'job_history_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD');
SELECT * FROM conveyor.drop_partition_v1('job_history_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD'), 500);
-- a worker acks job 7 (enqueued long ago, finished now)
INSERT INTO conveyor.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, max_attempts, priority, state, queue, task, args, errors)
VALUES (7, now(), now(), now(), now(), 1, 1, 2, 'completed', 'p', 'arec', '{}', '[]');
SELECT * FROM conveyor.drop_partition_v1('job_history_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD'), 5000);
SELECT (SELECT count(*) FROM conveyor.job_runs WHERE id = 7) AS job7_in_runs, (SELECT count(*) FROM conveyor.job_history WHERE id = 7) AS job7_in_history,
       (SELECT count(*) FROM conveyor.job_runs) AS runs_total;
