-- Undo 0001: drop every object it made. The schema itself stays: Alembic keeps its
-- version table there.
DROP VIEW job_list;
DROP VIEW queue_stats;
DROP FUNCTION resume_queue(text);
DROP FUNCTION pause_queue(text);
DROP FUNCTION purge_dead(bigint[], text, text, interval);
DROP FUNCTION retry_dead(bigint);
DROP FUNCTION enqueue(text, jsonb, text, integer, timestamptz, text, integer);
DROP FUNCTION create_queue(text);
DROP FUNCTION ensure_history_partitions(integer, timestamptz);
DROP TABLE workers;
DROP TABLE dead_jobs;
DROP TABLE job_history;
DROP TABLE jobs;
DROP TABLE tasks;
DROP TABLE queues;
