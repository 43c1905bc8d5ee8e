-- Probe N: the queue_stats rollup after a retention run with a clock moved forward a day
-- (CALL apply_retention(now() + 1 day), or apply_retention(db, now=...)). Jobs finished after
-- it, at the real time, are not in completed_24h until real time passes the moved mark.
\set VERBOSITY terse
SELECT conveyor.create_queue('p');
INSERT INTO conveyor.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, max_attempts, priority, state, queue, task, args, errors)
SELECT i, now(), now(), now(), now() - interval '2 hours' + i * interval '1 second', 1, 1, 2, 'completed', 'p', 'arec', '{}', '[]' FROM generate_series(1, 100) i;
SELECT conveyor.count_finished_v1(now(), 100) AS buckets_counted;
SELECT queue, completed_24h FROM conveyor.queue_stats WHERE queue = 'p';
SELECT counted_to AS mark_before FROM conveyor.finished_counts_mark;
SELECT conveyor.count_finished_v1(now() + interval '1 day', 1000) AS buckets_counted_future;
SELECT counted_to AS mark_after FROM conveyor.finished_counts_mark;
-- 50 jobs finish now
INSERT INTO conveyor.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, max_attempts, priority, state, queue, task, args, errors)
SELECT 1000 + i, now(), now(), now(), now(), 1, 1, 2, 'completed', 'p', 'arec', '{}', '[]' FROM generate_series(1, 50) i;
SELECT queue, completed_24h AS completed_24h_expect_150 FROM conveyor.queue_stats WHERE queue = 'p';
SELECT count(*) AS truly_completed_24h FROM conveyor.job_history WHERE queue = 'p' AND finished_at > now() - interval '24 hours';
