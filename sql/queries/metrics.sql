-- What /metrics reads (conveyor.ops.metrics; the contract of each number is written there).
--
-- Cost: nothing here reads the history as a whole. The counters and histograms are running
-- totals kept in the database (metric_totals, metric_buckets: a row per queue, task and
-- event, and per queue, kind and bucket), advanced by count_metrics_v1, which reads what
-- finished since the previous count through the (queue, time) indexes; the live jobs table
-- (the backlog) is read in one pass, as queue_stats reads it; the rest are small tables.

-- name: count_metrics
-- The counting step (sql/migrations/0012_metric_totals.up.sql): counts what happened since
-- the mark, up to the watermark (%(settle)s before now, or the start of the oldest open
-- transaction) and at most %(span)s of it, into the totals, under the mark's row lock; a call
-- that finds another count under way returns at once. Run on its own (autocommit), in READ
-- COMMITTED: (counted_to, counted, caught_up).
SELECT counted_to, counted, caught_up FROM {schema}.count_metrics_v1(%(settle)s::interval, %(span)s::interval);

-- name: read_limits
-- Inside a read's transaction: its statement timeout (milliseconds, as text), no JIT (the
-- planner's row estimates for a range of the history can pass jit_above_cost, and compiling
-- would cost far more than running) and no parallel workers (their start costs more than
-- the few thousand rows a read takes; a scrape must not take the server's cores).
SELECT set_config('statement_timeout', %(statement_timeout)s, true), set_config('jit', 'off', true),
       set_config('max_parallel_workers_per_gather', '0', true);

-- name: metrics_live
-- One pass over the unfinished jobs, per queue: jobs blocked behind another, and jobs
-- waiting to run again after an attempt.
SELECT queue,
       count(*) FILTER (WHERE state = 'blocked') AS blocked,
       count(*) FILTER (WHERE state IN ('available', 'scheduled') AND attempt > 0) AS retrying
FROM {schema}.jobs
GROUP BY queue;

-- name: metric_totals
-- The running totals per event (started, completed, cancelled, dead, failed), queue and task.
SELECT event, queue, task, total FROM {schema}.metric_totals;

-- name: metric_buckets
-- The histograms' running totals: per queue, kind (wait, run) and bucket (le, its upper
-- bound; Infinity for the last), the jobs and the sum of their seconds.
SELECT queue, kind, le, jobs, seconds FROM {schema}.metric_buckets;

-- name: metric_mark
-- How far the totals have counted, and since when they count.
SELECT counted_to, counting_since FROM {schema}.metric_mark;

-- name: metric_bounds
-- The histograms' bucket bounds per kind, in seconds, increasing.
SELECT kind, bounds FROM {schema}.metric_bounds_v1();

-- name: known_tasks
-- The tasks workers declared and their queues: their counters are shown (at 0) from the
-- first read on, so the first job of each is seen as an increase.
SELECT queue, name AS task FROM {schema}.tasks;

-- name: live_workers
-- Workers alive by the engine's rule: a heartbeat within %(silence)s (a worker beats every
-- third of its lease; the default lease is 30 s), or a running job whose lease has not run
-- out (the engine rescues a job only once its lease has run out).
SELECT w.queues, w.concurrency
FROM {schema}.workers w
WHERE w.heartbeat_at >= coalesce(%(now)s::timestamptz, now()) - %(silence)s::interval
   OR EXISTS (SELECT FROM {schema}.jobs j
              WHERE j.state = 'running' AND j.worker_id = w.id
                AND j.lease_expires_at > coalesce(%(now)s::timestamptz, now()));

-- name: schedule_lags
-- Every schedule that is not paused, how long ago its next fire time passed (0 while it
-- lies ahead; NULL while no scheduler has computed it), and its error if it cannot fire.
SELECT name, greatest(coalesce(%(now)s::timestamptz, now()) - next_fire_at, interval '0') AS lag, error
FROM {schema}.schedules
WHERE NOT paused
ORDER BY name;

-- name: limit_held
-- Per limited queue that is not paused, the due jobs its limits hold back now: every one
-- while the queue's own cap or rate window is full, else those of the keys whose cap or
-- window is full. It reads what claim_limited_v1 reads (running jobs through jobs_leases,
-- the rate windows) and counts the held jobs through jobs_claim or jobs_key_claim.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), limited AS (
    SELECT q.name, q.key_rate_limit, q.key_rate_period, q.key_concurrency,
           coalesce(q.concurrency <= (SELECT count(*) FROM {schema}.jobs j
                                      WHERE j.state = 'running' AND j.queue = q.name), false)
           OR coalesce(q.rate_limit <= (SELECT {schema}.window_used_v1(w.starts, w.counts, clock.now, q.rate_period)
                                        FROM {schema}.rate_windows w WHERE w.queue = q.name AND w.key = ''),
                       false) AS full
    FROM {schema}.queues q, clock
    WHERE q.limited AND NOT q.paused
)
SELECT l.name AS queue,
       CASE WHEN l.full THEN
           (SELECT count(*) FROM {schema}.jobs j WHERE j.queue = l.name AND j.state = 'available')
       ELSE
           (SELECT count(*) FROM {schema}.jobs j
            WHERE j.queue = l.name AND j.state = 'available' AND j.key IS NOT NULL
              AND j.key IN (
                  SELECT r.key FROM {schema}.jobs r
                  WHERE r.state = 'running' AND r.queue = l.name AND r.key IS NOT NULL
                  GROUP BY r.key HAVING count(*) >= l.key_concurrency
                  UNION
                  SELECT w.key FROM {schema}.rate_windows w, clock
                  WHERE w.queue = l.name AND w.key <> ''
                    AND {schema}.window_used_v1(w.starts, w.counts, clock.now, l.key_rate_period) >= l.key_rate_limit))
       END AS held
FROM limited l
ORDER BY l.name;
