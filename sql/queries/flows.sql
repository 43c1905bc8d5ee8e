-- Results, chains and batches (see conveyor.queue.flows and sql/migrations/0009_flows.up.sql).

-- name: listen_done
-- Subscribe to the channel where awaited jobs announce their end: payloads are job ids.
LISTEN {channel};

-- name: mark_awaited
-- Ask for a notification when this job ends; no row when it is not live (ended, or unknown).
UPDATE {schema}.jobs SET awaited = true WHERE id = %(id)s RETURNING state;

-- name: job_outcome
-- How a job ended, or that it still lives: (state, result, last error entry).
SELECT state, result, errors -> -1 AS last_error FROM {schema}.job_history WHERE id = %(id)s
UNION ALL
SELECT 'dead', NULL, errors -> -1 FROM {schema}.dead_jobs WHERE id = %(id)s
UNION ALL
SELECT state::text, NULL, NULL FROM {schema}.jobs WHERE id = %(id)s;

-- name: create_batch
-- A new batch (pending 1 until sealed) and its callback; returns its id.
SELECT {schema}.create_batch_v1(%(task)s, %(args)s::jsonb, %(queue)s, %(priority)s, %(meta)s::jsonb);

-- name: seal_batch
-- No more members; returns the callback's job id if every member had ended already.
SELECT {schema}.seal_batch_v1(%(id)s, coalesce(%(now)s::timestamptz, now()));

-- name: link_jobs
-- Make jobs written in this transaction run after a job and/or join a batch.
SELECT {schema}.link_jobs_v1(%(ids)s::bigint[], %(after_id)s, %(batch_id)s, coalesce(%(now)s::timestamptz, now()));

-- name: get_batch
-- One batch with its counts.
SELECT id, callback_task, callback_args, callback_queue, callback_priority, total, pending, completed, dead,
       cancelled, meta, created_at, sealed_at, finished_at, callback_job_id
FROM {schema}.batches WHERE id = %(id)s;
