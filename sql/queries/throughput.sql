-- Throughput per minute for the dashboard's charts (conveyor.queue.throughput: the design and
-- its invariants are written there).
--
-- Cost: each minute counted is a range of the (queue, time) indexes of job_history and
-- dead_jobs per queue (job_history_queue_finished, dead_jobs_queue), plus a heap visit per
-- finished job for its state; the caller counts only the minutes it has not cached, so a
-- read costs about the jobs finished in the last minute or two, whatever the history holds.

-- name: throughput_minutes
-- Jobs completed (job_history, state completed) and jobs that died (dead_jobs) per minute,
-- in one queue (%(queue)s) or all (NULL: every queue with a queues row). The minutes are the
-- %(minutes)s whole minutes ending with the one holding the clock's now (the database's when
-- %(now)s is NULL), less those in %(cached)s, newest first, at most %(most)s of them. Each row
-- also carries the clock's now and the settled time: least(now - %(settle)s, the start of the
-- oldest open transaction of another session). Conveyor stamps a finish no earlier than its
-- transaction's start, so a minute that ends at or before the settled time gets no more rows.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), settled AS (
    SELECT least(least(clock.now, now()) - %(settle)s::interval,
                 (SELECT min(a.xact_start) FROM pg_stat_activity a
                  WHERE a.datname = current_database() AND a.backend_type = 'client backend'
                    AND a.pid <> pg_backend_pid())) AS at
    FROM clock
), names AS (
    SELECT CASE WHEN %(queue)s::text IS NULL THEN ARRAY(SELECT q.name FROM {schema}.queues q)
                ELSE ARRAY[%(queue)s::text] END AS queues
), wanted AS (
    SELECT m.minute
    FROM clock,
         generate_series(date_bin(interval '1 minute', clock.now, timestamptz '2000-01-01 00:00:00+00')
                             - (%(minutes)s::integer - 1) * interval '1 minute',
                         date_bin(interval '1 minute', clock.now, timestamptz '2000-01-01 00:00:00+00'),
                         interval '1 minute') AS m (minute)
    WHERE m.minute <> ALL (%(cached)s::timestamptz[])
    ORDER BY m.minute DESC
    LIMIT %(most)s
)
SELECT clock.now, settled.at AS settled, w.minute,
       (SELECT count(*) FROM {schema}.job_history h
        WHERE h.queue = ANY (names.queues) AND h.finished_at >= w.minute
          AND h.finished_at < w.minute + interval '1 minute' AND h.state = 'completed') AS completed,
       (SELECT count(*) FROM {schema}.dead_jobs d
        WHERE d.queue = ANY (names.queues) AND d.died_at >= w.minute
          AND d.died_at < w.minute + interval '1 minute') AS dead
FROM clock CROSS JOIN settled CROSS JOIN names
LEFT JOIN wanted w ON true
ORDER BY w.minute DESC;
