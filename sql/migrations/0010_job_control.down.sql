-- Undo 0010: the queue_stats view goes back to version 1's columns; the functions go.
-- Pauses of tasks and of everything stay in the pauses table (version 7's), unread.

DROP VIEW queue_stats;
CREATE VIEW queue_stats AS
SELECT queue, paused, waiting, scheduled, running, completed_24h, dead, oldest_waiting_age FROM queue_stats_v1();
COMMENT ON VIEW queue_stats IS
    'Per queue: waiting (due now), scheduled (later), running, completed in the last 24 h (to '
    'the 5 minutes), dead, and how long the oldest waiting job has waited.';

DROP FUNCTION queue_stats_v2();
DROP FUNCTION pause_task(text);
DROP FUNCTION resume_task(text);
DROP FUNCTION pause_all();
DROP FUNCTION resume_all();
DROP FUNCTION cancel_job(bigint, text, text);
DROP FUNCTION abort_job(bigint, text, text);
DROP FUNCTION run_job_now(bigint);
DROP FUNCTION delete_job(bigint);
DROP FUNCTION pause_task_v1(text);
DROP FUNCTION resume_task_v1(text);
DROP FUNCTION pause_all_v1();
DROP FUNCTION resume_all_v1();
DROP FUNCTION wake_released_v1(text);
DROP FUNCTION cancel_job_v1(bigint, text, text, timestamptz);
DROP FUNCTION abort_job_v1(bigint, text, text, timestamptz);
DROP FUNCTION run_job_now_v1(bigint, timestamptz);
DROP FUNCTION delete_job_v1(bigint);
DROP FUNCTION stop_job_v1(text, bigint, text, text, timestamptz);
DROP FUNCTION refuse_not_live_v1(text, bigint);
DROP FUNCTION finished_state_v1(bigint);
DROP FUNCTION cancel_jobs_v1(bigint[], text, text, timestamptz);
