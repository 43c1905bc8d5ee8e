-- What /metrics reads (conveyor.ops.metrics; the contract of each number is written there).
--
-- Cost: nothing here reads the history as a whole. Finished work is read per queue through
-- the (queue, finish time) indexes of job_history, job_runs and dead_jobs from the last read's
-- watermark on, so a read costs what finished since the previous one; the live jobs table
-- (the backlog) is read in one pass, as queue_stats reads it; the rest are small tables.

-- name: metrics_watermark
-- The time before which every write to the job tables has committed, as far as the database
-- can tell: %(settle)s before now, or the start of the oldest open transaction of another
-- client session, whichever is earlier. Conveyor stamps started_at, finished_at and died_at
-- with a time no earlier than its transaction's start, so a row still invisible to a
-- snapshot taken after this statement carries a time at or after the watermark. Read on
-- its own, before that snapshot. (Sessions of other roles are seen only with
-- pg_read_all_stats; without it, %(settle)s alone covers their writes.)
SELECT least(now() - %(settle)s::interval,
             (SELECT min(a.xact_start) FROM pg_stat_activity a
              WHERE a.datname = current_database() AND a.backend_type = 'client backend'
                AND a.pid <> pg_backend_pid())) AS watermark;

-- name: read_limits
-- Inside a read's transaction: its statement timeout (milliseconds, as text), no JIT (the
-- planner's row estimates for a range of the history can pass jit_above_cost, and compiling
-- would cost far more than running) and no parallel workers (their start costs more than
-- the few thousand rows a read takes; a scrape must not take the server's cores).
SELECT set_config('statement_timeout', %(statement_timeout)s, true), set_config('jit', 'off', true),
       set_config('max_parallel_workers_per_gather', '0', true);

-- name: metrics_live
-- One pass over the unfinished jobs, per queue and task: jobs blocked behind another,
-- jobs waiting to run again after an attempt, and jobs whose last start lies in
-- [since, until).
SELECT queue, task,
       count(*) FILTER (WHERE state = 'blocked') AS blocked,
       count(*) FILTER (WHERE state IN ('available', 'scheduled') AND attempt > 0) AS retrying,
       count(*) FILTER (WHERE started_at >= %(since)s AND started_at < %(until)s) AS started
FROM {schema}.jobs
GROUP BY queue, task;

-- name: metrics_finished
-- Per queue (of %(queues)s), task and outcome (completed, cancelled, dead): the jobs that
-- finished in [since, until), and the jobs finished since `since` whose last start lies in
-- [since, until); read wherever the rows are now: job_history, the run log (retention
-- moves rows there with their times) and dead_jobs.
SELECT f.queue, f.task, f.outcome,
       count(*) FILTER (WHERE f.finished_at < %(until)s) AS finished,
       count(*) FILTER (WHERE f.started_at >= %(since)s AND f.started_at < %(until)s) AS started
FROM unnest(%(queues)s::text[]) AS n (name)
CROSS JOIN LATERAL (
    SELECT h.queue, h.task, h.state AS outcome, h.finished_at, h.started_at
    FROM {schema}.job_history h WHERE h.queue = n.name AND h.finished_at >= %(since)s
    UNION ALL
    SELECT r.queue, r.task, r.state, r.finished_at, r.started_at
    FROM {schema}.job_runs r WHERE r.queue = n.name AND r.finished_at >= %(since)s
    UNION ALL
    SELECT d.queue, d.task, 'dead', d.died_at, d.started_at
    FROM {schema}.dead_jobs d WHERE d.queue = n.name AND d.died_at >= %(since)s
) AS f
GROUP BY f.queue, f.task, f.outcome;

-- name: metrics_durations
-- The jobs completed in [since, until) per queue (of %(queues)s), read from job_history as
-- metrics_finished reads it, counted per bucket of their wait (from due to the start of the
-- last attempt) and bucket of their run time (from that start to the outcome written), with
-- the sums of both. Bounds come negated and in reverse order (%(wait_bounds)s,
-- %(run_bounds)s: -b_n, ..., -b_1), so that width_bucket counts the bounds at or above a
-- value: bucket k (0-based) then holds the values in (b_k, b_k+1], Prometheus' "le", and
-- bucket n the values above every bound. (OFFSET 0 keeps the read per queue, through the
-- index: flattened into a join, a day's partition was read whole.)
SELECT n.name AS queue,
       cardinality(%(wait_bounds)s::float8[]) - width_bucket(-h.wait, %(wait_bounds)s::float8[]) AS wait_bucket,
       cardinality(%(run_bounds)s::float8[]) - width_bucket(-h.run, %(run_bounds)s::float8[]) AS run_bucket,
       count(*) AS jobs, sum(h.wait) AS wait, sum(h.run) AS run
FROM unnest(%(queues)s::text[]) AS n (name)
CROSS JOIN LATERAL (
    SELECT greatest(date_part('epoch', h.started_at - h.run_at), 0) AS wait,
           greatest(date_part('epoch', h.finished_at - h.started_at), 0) AS run
    FROM {schema}.job_history h
    WHERE h.queue = n.name AND h.finished_at >= %(since)s AND h.finished_at < %(until)s
      AND h.state = 'completed' AND h.started_at IS NOT NULL
    OFFSET 0
) AS h
GROUP BY 1, 2, 3;

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
