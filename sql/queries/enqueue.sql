-- Runtime queries, loaded by conveyor.db.queries. Each block starts with "-- name: NAME"
-- and a line saying what it does. {schema} is replaced by the quoted schema identifier;
-- parameters are psycopg's %(name)s; time-dependent queries take %(now)s (NULL means the
-- database clock), so tests pin time instead of sleeping. %(durable)s false (only on
-- Conveyor's own connections, whose transaction is the enqueue alone): the commit does not
-- wait for the disk (SET LOCAL synchronous_commit = off, see docs/enqueueing.md).

-- name: enqueue_job
-- Insert one job (the form for any job: with a unique key, a limit key or meta); its run_at and state are decided by the same SQL functions as every other
-- writer's (job_due_v1, job_state_v1: inlined, so they cost nothing). A queue declared by the task is created on first use; any other queue
-- must exist (no row comes back otherwise). A unique key held by a live job gives no row.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
), new_queue AS (
    INSERT INTO {schema}.queues (name)
    SELECT %(queue)s
    WHERE %(declared_queue)s AND NOT EXISTS (SELECT FROM {schema}.queues WHERE name = %(queue)s)
    ON CONFLICT DO NOTHING
)
INSERT INTO {schema}.jobs AS j (queue, task, args, state, priority, run_at, max_attempts, unique_key, enqueued_at,
                                key, meta)
SELECT %(queue)s, %(task)s, %(args)s::jsonb, {schema}.job_state_v1(due.at, clock.now),
       %(priority)s, due.at, %(max_attempts)s, %(unique_key)s, clock.now, %(key)s, %(meta)s::jsonb
FROM clock
CROSS JOIN LATERAL (
    SELECT {schema}.job_due_v1(%(run_at)s::timestamptz, %(delay)s::interval, clock.now) AS at
) AS due
WHERE %(declared_queue)s OR EXISTS (SELECT FROM {schema}.queues WHERE name = %(queue)s)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
RETURNING j.id, (CASE WHEN j.state = 'available' THEN pg_notify(%(channel)s, j.queue) END) IS NOT NULL AS notified,
          (CASE WHEN NOT %(durable)s THEN set_config('synchronous_commit', 'off', true) END) IS NOT NULL
              AS commit_not_awaited;

-- name: enqueue_job_in_known_queue
-- Insert one job without a unique key into a queue whose row exists: enqueue_job without the
-- queue check and the unique-key arbiter, for the hot path of single enqueues. One VALUES
-- row, no CTE: planned as a plain insert, cheaper than enqueue_job's form.
INSERT INTO {schema}.jobs AS j (queue, task, args, state, priority, run_at, max_attempts, enqueued_at)
VALUES (
    %(queue)s, %(task)s, %(args)s::jsonb,
    {schema}.job_state_v1(
        {schema}.job_due_v1(%(run_at)s::timestamptz, %(delay)s::interval, coalesce(%(now)s::timestamptz, now())),
        coalesce(%(now)s::timestamptz, now())),
    %(priority)s,
    {schema}.job_due_v1(%(run_at)s::timestamptz, %(delay)s::interval, coalesce(%(now)s::timestamptz, now())),
    %(max_attempts)s,
    coalesce(%(now)s::timestamptz, now()))
RETURNING j.id, (CASE WHEN j.state = 'available' THEN pg_notify(%(channel)s, j.queue) END) IS NOT NULL AS notified,
          (CASE WHEN NOT %(durable)s THEN set_config('synchronous_commit', 'off', true) END) IS NOT NULL
              AS commit_not_awaited;

-- name: enqueue_job_due_now
-- enqueue_job_in_known_queue for a job due now: the column defaults give state
-- ('available'); the clock gives run_at and enqueued_at. The single enqueue's commonest form.
-- %(notify)s false: the caller wakes the workers itself once this has committed (see
-- queue.wake_ups: a NOTIFY holds a database-wide lock through its transaction's commit).
INSERT INTO {schema}.jobs AS j (queue, task, args, priority, max_attempts, run_at, enqueued_at)
VALUES (%(queue)s, %(task)s, %(args)s::jsonb, %(priority)s, %(max_attempts)s,
        coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()))
RETURNING j.id, (CASE WHEN %(notify)s THEN pg_notify(%(channel)s, j.queue) END) IS NOT NULL AS notified,
          (CASE WHEN NOT %(durable)s THEN set_config('synchronous_commit', 'off', true) END) IS NOT NULL
              AS commit_not_awaited;

-- name: find_unique_job
-- The live job holding a unique key.
SELECT id FROM {schema}.jobs WHERE unique_key = %(unique_key)s;

-- name: queue_exists
-- Whether a queue row exists.
SELECT EXISTS (SELECT FROM {schema}.queues WHERE name = %(queue)s);

-- name: ensure_queues
-- Create the declared queues that are missing; return every name that can take jobs.
WITH wanted AS (
    SELECT * FROM unnest(%(names)s::text[], %(declared)s::boolean[]) AS w (name, declared)
), added AS (
    INSERT INTO {schema}.queues (name)
    SELECT name FROM wanted WHERE declared
    ON CONFLICT DO NOTHING
)
SELECT name FROM wanted
WHERE declared OR EXISTS (SELECT FROM {schema}.queues q WHERE q.name = wanted.name);

-- name: prepare_bulk
-- The clock and n fresh job ids, for a bulk enqueue by COPY. The sequence is looked up once,
-- not per row: the catalog look-up costs more than the nextval itself.
WITH id_sequence AS MATERIALIZED (
    SELECT pg_get_serial_sequence(%(jobs_table)s, 'id')::regclass AS seq
)
SELECT coalesce(%(now)s::timestamptz, now()) AS now,
       array(SELECT nextval(id_sequence.seq) FROM id_sequence, generate_series(1, %(count)s)) AS ids;

-- name: copy_jobs
-- COPY rows straight into the jobs table (bulk enqueue without unique keys).
COPY {schema}.jobs (id, queue, task, args, state, priority, run_at, max_attempts, enqueued_at)
FROM STDIN;

-- name: copy_jobs_due_now
-- copy_jobs for jobs due now by the database's clock: state, run_at and enqueued_at are the
-- columns' defaults ('available', now(), now()), which nothing has to send or parse.
COPY {schema}.jobs (id, queue, task, args, priority, max_attempts)
FROM STDIN;

-- name: insert_jobs
-- Bulk insert from arrays (jobs with unique keys, limit keys or meta), skipping rows whose
-- unique key a live job already holds. Rows go in in the order of their unique keys, so
-- that two batches sharing keys wait for one another instead of each holding a key the
-- other wants next (a deadlock, which aborts one of them).
INSERT INTO {schema}.jobs AS j (id, queue, task, args, state, priority, run_at, max_attempts, unique_key, enqueued_at,
                                key, meta)
SELECT r.id, r.queue, r.task, r.args::jsonb, r.state, r.priority, r.run_at, r.max_attempts, r.unique_key, %(now)s,
       r.key, r.meta::jsonb
FROM unnest(%(ids)s::bigint[], %(queues)s::text[], %(tasks)s::text[], %(args)s::text[], %(states)s::text[],
            %(priorities)s::smallint[], %(run_ats)s::timestamptz[], %(max_attempts)s::integer[],
            %(unique_keys)s::text[], %(keys)s::text[], %(metas)s::text[])
     AS r (id, queue, task, args, state, priority, run_at, max_attempts, unique_key, key, meta)
ORDER BY r.unique_key COLLATE "C", r.id
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
RETURNING j.id;

-- name: find_unique_jobs
-- The live jobs holding any of these unique keys.
SELECT unique_key, id FROM {schema}.jobs WHERE unique_key = ANY (%(unique_keys)s::text[]);

-- name: wake_queues
-- Wake the workers of these queues, in a transaction of its own, sent after the jobs it
-- announces have committed. It writes no data, and a notification lost to a crash is made
-- good by the workers' poll, so its commit does not wait for the disk: the database-wide
-- lock that NOTIFY takes at commit is held for an instant, not for a disk flush.
SELECT pg_notify(%(channel)s, name) IS NOT NULL AS notified,
       set_config('synchronous_commit', 'off', true) IS NOT NULL AS commit_not_awaited
FROM unnest(%(names)s::text[]) AS name;

-- name: notify_queues
-- Wake the workers of these queues (delivered when the transaction commits).
SELECT pg_notify(%(channel)s, name) IS NOT NULL AS notified FROM unnest(%(names)s::text[]) AS name;
