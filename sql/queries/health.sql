-- What /health reads (conveyor.ops.health), besides live_workers and schedule_lags
-- (metrics.sql) and scheduler_status (inspect.sql). Every read here is small: the version
-- row, the due jobs through jobs_claim, the schedules.

-- name: schema_revision
-- The Alembic revision the schema is at (the version table lives in the schema).
SELECT version_num FROM {schema}.alembic_version;

-- name: health_queues
-- Per queue: whether it is paused (itself, or everything), its due jobs that no paused task
-- holds, and how long the oldest of them has waited.
SELECT n.queue,
       coalesce(q.paused, false) OR EXISTS (SELECT FROM {schema}.pauses p WHERE p.scope = 'all') AS paused,
       coalesce(w.waiting, 0) AS waiting,
       date_trunc('second', coalesce(%(now)s::timestamptz, now()) - w.oldest) AS oldest_waiting_age
FROM (SELECT name AS queue FROM {schema}.queues
      UNION SELECT DISTINCT queue FROM {schema}.jobs WHERE state = 'available') AS n
LEFT JOIN {schema}.queues q ON q.name = n.queue
LEFT JOIN (
    SELECT j.queue, count(*) AS waiting, min(j.run_at) AS oldest
    FROM {schema}.jobs j
    WHERE j.state = 'available'
      AND NOT EXISTS (SELECT FROM {schema}.pauses p WHERE p.scope = 'task' AND p.name = j.task)
    GROUP BY j.queue
) AS w ON w.queue = n.queue
ORDER BY n.queue;
