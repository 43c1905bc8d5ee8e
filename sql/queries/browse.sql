-- Reading jobs page by page (search, history, dead letters), cleaning finished jobs, the
-- workers and the queue overview: the API, the CLI and the dashboard (conveyor.queue.search,
-- cleaning, roster and overview).
--
-- The listing queries are run unprepared (Database.fetch_dicts(..., planned=True)), so each
-- call is planned for its own values: a filter left NULL folds away, a time range prunes
-- job_history's days, and the planner picks the index that fits the filters given. A
-- generic plan made once for all values could do neither.
--
-- Paging is by keyset, never OFFSET: a page starts after the sort key of the last row of the
-- page before (the cursor), so page 1000 costs what page 1 costs.

-- name: search_jobs
-- Jobs wherever they are (live, finished, dead), highest id first, after the cursor's id,
-- filtered. Each table is read backwards through its id index from %(id_hi)s (or below the
-- cursor's %(before_id)s) down to %(id_lo)s; %(from_live)s, %(from_history)s and
-- %(from_dead)s skip the tables the filters exclude.
SELECT id, queue, task, state, priority, attempt, max_attempts, run_at, enqueued_at, started_at,
       finished_at, key, unique_key, worker_id, progress, last_error
FROM (
    (SELECT j.id, j.queue, j.task::text AS task, j.state::text AS state, j.priority::smallint AS priority,
           j.attempt::integer AS attempt, j.max_attempts::integer AS max_attempts, j.run_at::timestamptz AS run_at,
           j.enqueued_at::timestamptz AS enqueued_at, j.started_at, NULL::timestamptz AS finished_at,
           j.key::text AS key, j.unique_key, j.worker_id, j.progress::smallint AS progress,
           j.errors -> -1 ->> 'error' AS last_error
    FROM {schema}.jobs j
    WHERE %(from_live)s
      AND j.id >= %(id_lo)s AND j.id <= %(id_hi)s
      AND (%(before_id)s::bigint IS NULL OR j.id < %(before_id)s)
      AND (%(queue)s::text IS NULL OR j.queue = %(queue)s)
      AND (%(task)s::text IS NULL OR j.task = %(task)s)
      AND (%(states)s::text[] IS NULL OR j.state = ANY (%(states)s::text[]))
      AND (%(key)s::text IS NULL OR j.key = %(key)s)
      AND (%(unique_key)s::text IS NULL OR j.unique_key = %(unique_key)s)
      AND (%(enqueued_after)s::timestamptz IS NULL OR j.enqueued_at >= %(enqueued_after)s)
      AND (%(enqueued_before)s::timestamptz IS NULL OR j.enqueued_at < %(enqueued_before)s)
    ORDER BY j.id DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT h.id, h.queue, h.task, h.state, h.priority, h.attempt, h.max_attempts, h.run_at, h.enqueued_at,
           h.started_at, h.finished_at, h.key, h.unique_key, h.worker_id,
           CASE WHEN h.state = 'completed' THEN 100::smallint END, h.errors -> -1 ->> 'error'
    FROM {schema}.job_history h
    WHERE %(from_history)s
      AND h.id >= %(id_lo)s AND h.id <= %(id_hi)s
      AND (%(before_id)s::bigint IS NULL OR h.id < %(before_id)s)
      AND (%(queue)s::text IS NULL OR h.queue = %(queue)s)
      AND (%(task)s::text IS NULL OR h.task = %(task)s)
      AND (%(states)s::text[] IS NULL OR h.state = ANY (%(states)s::text[]))
      AND (%(key)s::text IS NULL OR h.key = %(key)s)
      AND (%(unique_key)s::text IS NULL OR h.unique_key = %(unique_key)s)
      AND (%(enqueued_after)s::timestamptz IS NULL OR h.enqueued_at >= %(enqueued_after)s)
      AND (%(enqueued_before)s::timestamptz IS NULL OR h.enqueued_at < %(enqueued_before)s)
      AND (%(finished_after)s::timestamptz IS NULL OR h.finished_at >= %(finished_after)s)
      AND (%(finished_before)s::timestamptz IS NULL OR h.finished_at < %(finished_before)s)
    ORDER BY h.id DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT d.id, d.queue, d.task, 'dead', d.priority, d.attempt, d.max_attempts, d.run_at, d.enqueued_at,
           d.started_at, d.died_at, d.key, d.unique_key, NULL::uuid, NULL::smallint, d.errors -> -1 ->> 'error'
    FROM {schema}.dead_jobs d
    WHERE %(from_dead)s
      AND d.id >= %(id_lo)s AND d.id <= %(id_hi)s
      AND (%(before_id)s::bigint IS NULL OR d.id < %(before_id)s)
      AND (%(queue)s::text IS NULL OR d.queue = %(queue)s)
      AND (%(task)s::text IS NULL OR d.task = %(task)s)
      AND (%(key)s::text IS NULL OR d.key = %(key)s)
      AND (%(unique_key)s::text IS NULL OR d.unique_key = %(unique_key)s)
      AND (%(enqueued_after)s::timestamptz IS NULL OR d.enqueued_at >= %(enqueued_after)s)
      AND (%(enqueued_before)s::timestamptz IS NULL OR d.enqueued_at < %(enqueued_before)s)
      AND (%(finished_after)s::timestamptz IS NULL OR d.died_at >= %(finished_after)s)
      AND (%(finished_before)s::timestamptz IS NULL OR d.died_at < %(finished_before)s)
    ORDER BY d.id DESC LIMIT %(limit)s)
) AS found
ORDER BY id DESC
LIMIT %(limit)s;

-- name: finished_jobs
-- Finished jobs (completed and cancelled from job_history, dead from dead_jobs), most recently
-- finished first (finished_at or died_at, then id), after the cursor's (%(before_at)s,
-- %(before_id)s), filtered. job_history is read queue by queue through
-- job_history_queue_finished, newest first, so a page costs about (queues x page size) index
-- entries whatever the history holds; dead_jobs through dead_jobs_died_at or dead_jobs_queue.
-- Every job's queue has a queues row: enqueue refuses a queue without one, and queue rows
-- are never deleted.
SELECT id, queue, task, state, priority, attempt, max_attempts, run_at, enqueued_at, started_at,
       finished_at, key, unique_key, worker_id, last_error
FROM (
    (SELECT f.* FROM {schema}.queues q CROSS JOIN LATERAL (
        SELECT h.id, h.queue, h.task, h.state, h.priority, h.attempt, h.max_attempts, h.run_at, h.enqueued_at,
               h.started_at, h.finished_at, h.key, h.unique_key, h.worker_id,
               h.errors -> -1 ->> 'error' AS last_error
        FROM {schema}.job_history h
        WHERE h.queue = q.name
          AND (%(before_at)s::timestamptz IS NULL
               OR (h.finished_at <= %(before_at)s AND (h.finished_at < %(before_at)s OR h.id < %(before_id)s)))
          AND (%(task)s::text IS NULL OR h.task = %(task)s)
          AND (%(states)s::text[] IS NULL OR h.state = ANY (%(states)s::text[]))
          AND (%(key)s::text IS NULL OR h.key = %(key)s)
          AND (%(unique_key)s::text IS NULL OR h.unique_key = %(unique_key)s)
          AND (%(enqueued_after)s::timestamptz IS NULL OR h.enqueued_at >= %(enqueued_after)s)
          AND (%(enqueued_before)s::timestamptz IS NULL OR h.enqueued_at < %(enqueued_before)s)
          AND (%(finished_after)s::timestamptz IS NULL OR h.finished_at >= %(finished_after)s)
          AND (%(finished_before)s::timestamptz IS NULL OR h.finished_at < %(finished_before)s)
        ORDER BY h.finished_at DESC, h.id DESC LIMIT %(limit)s
    ) AS f
    WHERE %(from_history)s AND (%(queue)s::text IS NULL OR q.name = %(queue)s)
    ORDER BY f.finished_at DESC, f.id DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT d.id, d.queue, d.task, 'dead', d.priority, d.attempt, d.max_attempts, d.run_at, d.enqueued_at,
            d.started_at, d.died_at, d.key, d.unique_key, NULL::uuid, d.errors -> -1 ->> 'error'
    FROM {schema}.dead_jobs d
    WHERE %(from_dead)s
      AND (%(before_at)s::timestamptz IS NULL
           OR (d.died_at <= %(before_at)s AND (d.died_at < %(before_at)s OR d.id < %(before_id)s)))
      AND (%(queue)s::text IS NULL OR d.queue = %(queue)s)
      AND (%(task)s::text IS NULL OR d.task = %(task)s)
      AND (%(key)s::text IS NULL OR d.key = %(key)s)
      AND (%(unique_key)s::text IS NULL OR d.unique_key = %(unique_key)s)
      AND (%(enqueued_after)s::timestamptz IS NULL OR d.enqueued_at >= %(enqueued_after)s)
      AND (%(enqueued_before)s::timestamptz IS NULL OR d.enqueued_at < %(enqueued_before)s)
      AND (%(finished_after)s::timestamptz IS NULL OR d.died_at >= %(finished_after)s)
      AND (%(finished_before)s::timestamptz IS NULL OR d.died_at < %(finished_before)s)
    ORDER BY d.died_at DESC, d.id DESC LIMIT %(limit)s)
) AS found
ORDER BY finished_at DESC, id DESC
LIMIT %(limit)s;

-- name: highest_job_id
-- The highest job id in any table (NULL: no job): an id search skips the id ranges above it.
SELECT greatest((SELECT max(id) FROM {schema}.jobs), (SELECT max(id) FROM {schema}.job_history),
                (SELECT max(id) FROM {schema}.dead_jobs));

-- name: dead_ids_matching
-- The ids above %(after_id)s of the dead jobs matching every filter given (queue, task, died in
-- [died_after, died_before), died more than older_than before the database's now()), lowest
-- first, at most %(batch)s: retry and purge by filter go through them a batch at a time.
SELECT id FROM {schema}.dead_jobs
WHERE id > %(after_id)s
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(died_after)s::timestamptz IS NULL OR died_at >= %(died_after)s)
  AND (%(died_before)s::timestamptz IS NULL OR died_at < %(died_before)s)
  AND (%(older_than)s::interval IS NULL OR died_at < now() - %(older_than)s::interval)
ORDER BY id
LIMIT %(batch)s;

-- name: count_dead_matching
-- How many dead jobs match every filter given (queue, task, died in [died_after, died_before)):
-- what a retry or purge by filter would take now (the dashboard's confirmation says it).
SELECT count(*) AS matching FROM {schema}.dead_jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(died_after)s::timestamptz IS NULL OR died_at >= %(died_after)s)
  AND (%(died_before)s::timestamptz IS NULL OR died_at < %(died_before)s);

-- name: retention_lock
-- Take the schema's retention lock for this transaction (concurrent retention runs and cleans
-- take turns one batch at a time; see retention_batch_v1). %(schema)s: the schema's name.
SELECT pg_advisory_xact_lock(hashtext(%(schema)s || '.retention'));

-- name: clean_history_step
-- Move at most about %(batch)s of the oldest finished jobs of one queue (of one state, if
-- given) finished before %(before)s from job_history to the run log, as retention does
-- (retention_take_v1): the batch's newest finish time is found by reading %(batch)s entries of
-- job_history_queue_finished, and every row up to it goes (rows sharing that time all go).
-- Rows of a day retention is copying to the run log are left to it (they would be copied
-- twice). Run after retention_lock in the same transaction. Returns the rows moved.
WITH copying AS (
    SELECT c.oid FROM {schema}.partition_copies p
    JOIN pg_class c ON c.relname = p.partition AND c.relnamespace = quote_ident(%(schema)s)::regnamespace
), bound AS (
    SELECT h.finished_at FROM {schema}.job_history h
    WHERE h.queue = %(queue)s AND h.finished_at < %(before)s
      AND (%(state)s::text IS NULL OR h.state = %(state)s)
      AND h.tableoid <> ALL (ARRAY(SELECT oid FROM copying))
    ORDER BY h.finished_at OFFSET %(batch)s - 1 LIMIT 1
), gone AS (
    DELETE FROM {schema}.job_history t
    WHERE t.queue = %(queue)s AND t.finished_at < %(before)s
      AND t.finished_at <= coalesce((SELECT finished_at FROM bound), %(before)s)
      AND (%(state)s::text IS NULL OR t.state = %(state)s)
      AND t.tableoid <> ALL (ARRAY(SELECT oid FROM copying))
    RETURNING t.id, t.enqueued_at, t.started_at, t.finished_at, t.worker_id, t.attempt, t.state, t.queue, t.task,
              t.errors -> -1 ->> 'error' AS error
), moved AS (
    INSERT INTO {schema}.job_runs (id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task,
                                   error)
    SELECT id, enqueued_at, started_at, finished_at, worker_id, attempt, state, queue, task, error FROM gone
    RETURNING 1
)
SELECT count(*) FROM moved;

-- name: clean_dead_step
-- Move at most about %(batch)s of the oldest dead jobs (of one queue, if given) that died
-- before %(before)s to the run log: retention's own step (retention_take_v2: only dead jobs
-- the metrics have counted). Run after retention_lock in the same transaction. Returns the
-- rows moved.
SELECT {schema}.retention_take_v2('dead_jobs', %(queue)s::text, %(before)s::timestamptz, %(batch)s::integer);

-- name: queue_names
-- Every queue's name, in order.
SELECT name FROM {schema}.queues ORDER BY name;

-- name: clock_minus
-- The clock's now (the database's when %(now)s is NULL) less %(older_than)s: a cut-off time.
SELECT coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval;

-- name: list_workers
-- Every worker row (live ones, and those silent for less than the hour after which workers
-- forget them), with the clock's now, joined to the jobs each holds: one row per (worker,
-- running job), job columns NULL for a worker holding none. One statement, one snapshot.
-- Running jobs are found through jobs_leases (running jobs only).
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
)
SELECT w.id, w.hostname, w.pid, w.queues, w.concurrency, w.started_at, w.heartbeat_at, clock.now AS checked_at,
       j.id AS job_id, j.queue AS job_queue, j.task::text AS job_task, j.attempt::integer AS job_attempt,
       j.started_at AS job_started_at, j.lease_expires_at AS job_lease_expires_at,
       j.abort_requested_at IS NOT NULL AS job_aborting
FROM {schema}.workers w
CROSS JOIN clock
LEFT JOIN {schema}.jobs j ON j.worker_id = w.id AND j.state = 'running'
ORDER BY w.started_at, w.id, j.id;

-- name: queue_overview
-- Per queue (or one): the counts of the queue_stats view (the same definitions, so they
-- agree with it), the jobs blocked behind another, and throughput: jobs completed in the
-- last minute and the last hour, and jobs that died in the last hour, by the clock's now.
--
-- Cost, on a large installation (bench/dashboard_cost.py): the unfinished jobs are read in
-- one pass (queue_stats_v1 reads them three times); the rows of job_history finished since
-- the rollup's mark (finished_counts_mark: the scheduler counts every minute) are read once
-- per queue, through job_history_queue_finished, and serve the 24 hours, the hour and the
-- minute alike; the rest comes from the 5-minute buckets of the rollup (finished_counts).
-- When the rollup is stale (its mark over an hour old: no scheduler running), the 24 hours
-- and the hour are counted from job_history instead, as queue_stats does. Dead jobs through
-- dead_jobs_queue.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), marks AS (
    SELECT clock.now,
           clock.now - interval '1 hour' AS hour_start,
           date_bin(interval '5 minutes', clock.now - interval '1 hour', timestamptz '2000-01-01 00:00:00+00')
               + CASE WHEN date_bin(interval '5 minutes', clock.now - interval '1 hour',
                                    timestamptz '2000-01-01 00:00:00+00') = clock.now - interval '1 hour'
                      THEN interval '0' ELSE interval '5 minutes' END AS hour_bucket,
           date_bin(interval '5 minutes', now() - interval '24 hours', timestamptz '2000-01-01 00:00:00+00')
               AS day_bucket,
           m.counted_to AS mark,
           coalesce(m.counted_to > now() - interval '1 hour', false) AS day_fresh,
           coalesce(m.counted_to > date_bin(interval '5 minutes', clock.now - interval '1 hour',
                                            timestamptz '2000-01-01 00:00:00+00') + interval '5 minutes', false)
               AS hour_fresh
    FROM clock
    LEFT JOIN {schema}.finished_counts_mark m ON true
), live AS (
    SELECT j.queue,
           count(*) FILTER (WHERE j.state = 'available') AS waiting,
           count(*) FILTER (WHERE j.state = 'scheduled') AS scheduled,
           count(*) FILTER (WHERE j.state = 'running') AS running,
           count(*) FILTER (WHERE j.state = 'blocked' AND j.after_id IS NOT NULL) AS blocked,
           min(j.run_at) FILTER (WHERE j.state = 'available') AS oldest_waiting
    FROM {schema}.jobs j
    WHERE %(queue)s::text IS NULL OR j.queue = %(queue)s
    GROUP BY j.queue
), names AS (
    SELECT q.name AS queue FROM {schema}.queues q WHERE %(queue)s::text IS NULL OR q.name = %(queue)s
    UNION
    SELECT l.queue FROM live l
), pauses AS (
    SELECT coalesce(bool_or(p.scope = 'all'), false) AS everything,
           coalesce(array_agg(p.name) FILTER (WHERE p.scope = 'task'), ARRAY[]::text[]) AS tasks
    FROM {schema}.pauses p
)
SELECT n.queue,
       coalesce(q.paused, false) AS paused,
       pauses.everything AS all_paused,
       CASE WHEN cardinality(pauses.tasks) = 0 THEN ARRAY[]::text[] ELSE ARRAY(
           SELECT DISTINCT j.task::text FROM {schema}.jobs j
           WHERE j.queue = n.queue AND j.state = 'available' AND j.task = ANY (pauses.tasks) ORDER BY 1) END
           AS paused_tasks,
       coalesce(l.waiting, 0) AS waiting,
       coalesce(l.scheduled, 0) AS scheduled,
       coalesce(l.running, 0) AS running,
       coalesce(l.blocked, 0) AS blocked,
       CASE WHEN marks.day_fresh THEN
           (SELECT coalesce(sum(f.completed), 0)::bigint FROM {schema}.finished_counts f
            WHERE f.queue = n.queue AND f.bucket >= marks.day_bucket AND f.bucket < marks.mark) + tail.completed
       ELSE
           (SELECT count(*) FROM {schema}.job_history h
            WHERE h.queue = n.queue AND h.finished_at > now() - interval '24 hours' AND h.state = 'completed')
       END AS completed_24h,
       (SELECT count(*) FROM {schema}.dead_jobs d WHERE d.queue = n.queue) AS dead,
       date_trunc('second', now() - l.oldest_waiting) AS oldest_waiting_age,
       CASE WHEN marks.day_fresh AND marks.mark <= marks.now - interval '1 minute' THEN tail.last_minute
       ELSE
           (SELECT count(*) FROM {schema}.job_history h
            WHERE h.queue = n.queue AND h.finished_at >= marks.now - interval '1 minute' AND h.state = 'completed')
       END AS completed_last_minute,
       CASE WHEN marks.hour_fresh AND marks.day_fresh THEN
           (SELECT coalesce(sum(f.completed), 0)::bigint FROM {schema}.finished_counts f
            WHERE f.queue = n.queue AND f.bucket >= marks.hour_bucket AND f.bucket < marks.mark)
           + (SELECT count(*) FROM {schema}.job_history h
              WHERE h.queue = n.queue AND h.finished_at >= marks.hour_start AND h.finished_at < marks.hour_bucket
                AND h.state = 'completed')
           + tail.completed
       ELSE
           (SELECT count(*) FROM {schema}.job_history h
            WHERE h.queue = n.queue AND h.finished_at >= marks.hour_start AND h.state = 'completed')
       END AS completed_last_hour,
       (SELECT count(*) FROM {schema}.dead_jobs d
        WHERE d.queue = n.queue AND d.died_at >= marks.hour_start) AS dead_last_hour
FROM names n
CROSS JOIN marks
CROSS JOIN pauses
LEFT JOIN {schema}.queues q ON q.name = n.queue
LEFT JOIN live l ON l.queue = n.queue
CROSS JOIN LATERAL (
    -- The rows finished since the rollup's mark, read once (none when the rollup is stale).
    SELECT count(*) FILTER (WHERE h.state = 'completed') AS completed,
           count(*) FILTER (WHERE h.state = 'completed' AND h.finished_at >= marks.now - interval '1 minute')
               AS last_minute
    FROM {schema}.job_history h
    WHERE marks.day_fresh AND h.queue = n.queue AND h.finished_at >= marks.mark
) AS tail
ORDER BY n.queue;

-- name: no_jit
-- No JIT compilation for the rest of this transaction (see Database.fetch_planned).
SET LOCAL jit = off;
