-- Importing jobs from procrastinate (conveyor.queue.imports, docs/coming-from-procrastinate.md).
--
-- {jobs} and {events} are procrastinate's procrastinate_jobs and procrastinate_events in the
-- schema the user named, composed as identifiers. The ledger {schema}.imported_jobs holds
-- every source job imported, so each query leaves out the rows it lists.

-- name: procrastinate_tables
-- Which of procrastinate's tables (and the job columns the import reads) the schema has.
SELECT to_regclass(format('%%I.procrastinate_jobs', %(source_schema)s::text)) IS NOT NULL AS has_jobs,
       to_regclass(format('%%I.procrastinate_events', %(source_schema)s::text)) IS NOT NULL AS has_events,
       array(SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = %(source_schema)s AND table_name = 'procrastinate_jobs') AS job_columns;

-- name: start_import_batch
-- The start of each batch's transaction. Imports of one source take turns, batch by batch (a
-- transaction-level advisory lock): a batch's read then sees every batch committed before it,
-- so even with the source rows kept, a job another import just took is never taken again.
-- And for the rest of the transaction, procrastinate's schema is the search_path: its
-- triggers (which run on the cancel and delete below) name its tables and types unqualified;
-- Conveyor's own queries qualify every name, and its functions carry their own search_path.
SELECT pg_advisory_xact_lock(hashtextextended(%(source)s, 0)),
       set_config('search_path', %(search_path)s, true);

-- name: count_procrastinate_jobs
-- The source jobs not imported yet, by task, queue and status (statuses asked for only).
SELECT j.task_name, j.status::text, count(*)
FROM {jobs} j
WHERE j.status::text = ANY (%(statuses)s::text[])
  AND NOT EXISTS (SELECT FROM {schema}.imported_jobs i WHERE i.source = %(source)s AND i.source_id = j.id)
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: count_imported
-- How many jobs of this source earlier imports recorded.
SELECT count(*) FROM {schema}.imported_jobs WHERE source = %(source)s;

-- name: take_procrastinate_jobs
-- The next source jobs to import after id %(after)s, locked until the batch commits; rows
-- another transaction holds (a procrastinate worker fetching them) are skipped, not awaited.
-- A scheduled_at Python cannot hold ('infinity', past year 9998) is read as NULL, with its
-- text beside it, so that job alone is refused instead of the whole batch failing to load.
SELECT j.id, j.queue_name, j.task_name, j.priority, j.lock, j.queueing_lock, j.args, j.status::text,
       CASE WHEN j.scheduled_at BETWEEN '0002-01-01Z' AND '9999-01-01Z' THEN j.scheduled_at END,
       CASE WHEN NOT j.scheduled_at BETWEEN '0002-01-01Z' AND '9999-01-01Z' THEN j.scheduled_at::text END,
       j.attempts,
       (SELECT min(e.at) FROM {events} e WHERE e.job_id = j.id AND e.type = 'deferred') AS deferred_at,
       (SELECT max(e.at) FROM {events} e WHERE e.job_id = j.id AND e.type = 'failed') AS failed_at
FROM {jobs} j
WHERE j.id > %(after)s
  AND j.status::text = ANY (%(statuses)s::text[])
  AND j.task_name = ANY (%(tasks)s::text[])
  AND NOT EXISTS (SELECT FROM {schema}.imported_jobs i WHERE i.source = %(source)s AND i.source_id = j.id)
ORDER BY j.id
LIMIT %(limit)s
FOR UPDATE OF j SKIP LOCKED;

-- name: cancel_procrastinate_jobs
-- Imported source jobs that procrastinate could still run become 'cancelled' (what
-- procrastinate's own cancel does to a waiting job), so its workers never take them.
UPDATE {jobs} SET status = 'cancelled'
WHERE id = ANY (%(ids)s::bigint[]) AND status IN ('todo', 'doing', 'aborting');

-- name: delete_procrastinate_jobs
-- Imported source jobs are deleted (their events go with them, by procrastinate's cascade).
DELETE FROM {jobs} WHERE id = ANY (%(ids)s::bigint[]);

-- name: record_imported_jobs
-- The ledger rows of one batch: each source job and the Conveyor job it became.
INSERT INTO {schema}.imported_jobs (source, source_id, source_status, job_id)
SELECT %(source)s, s.source_id, s.source_status, s.job_id
FROM unnest(%(source_ids)s::bigint[], %(source_statuses)s::text[], %(job_ids)s::bigint[])
    AS s (source_id, source_status, job_id);

-- name: bury_imported_jobs
-- Failed source jobs go straight to the dead-letter table, with fresh job ids (%(ids)s,
-- from prepare_bulk) and one error entry each saying where they failed.
INSERT INTO {schema}.dead_jobs
    (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts, claims, priority, queue, task,
     unique_key, args, errors, key, meta)
SELECT d.id, d.run_at, d.enqueued_at, NULL, coalesce(%(now)s::timestamptz, now()), d.attempt, d.max_attempts,
       d.attempt, d.priority, d.queue, d.task, d.unique_key, d.args, jsonb_build_array(d.error), d.key, d.meta
FROM jsonb_to_recordset(%(jobs)s::jsonb) AS d (
    id bigint, run_at timestamptz, enqueued_at timestamptz, attempt integer, max_attempts integer,
    priority smallint, queue text, task text, unique_key text, args jsonb, error jsonb, key text, meta jsonb)
RETURNING id;
