-- Undo 0005: retention as one statement per step again, queue_stats counting whole tables,
-- and args unchecked in the jobs table.

DO $create$
BEGIN
    EXECUTE format($body$
CREATE OR REPLACE PROCEDURE %1$I.apply_retention(at timestamptz DEFAULT now())
LANGUAGE plpgsql
AS $procedure$
DECLARE
    result record;
    part text;
BEGIN
    FOR result IN SELECT * FROM %1$I.retention_rows(at) LOOP
        RAISE NOTICE 'conveyor retention: %%: %%', result.step, result.affected;
    END LOOP;
    COMMIT;
    FOR part IN SELECT * FROM %1$I.expired_partitions(at) LOOP
        BEGIN
            RAISE NOTICE 'conveyor retention: dropped %% (%% rows to the run log)', part, %1$I.drop_partition(part);
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'conveyor retention: %% is busy; it goes next time', part;
        END;
        COMMIT;
    END LOOP;
END;
$procedure$
$body$, current_schema());
END;
$create$;

DROP FUNCTION drop_partition_v1(text, integer);
DROP FUNCTION retention_batch_v1(timestamptz, integer);
DROP FUNCTION retention_take_v1(text, text, timestamptz, integer);
DROP TABLE partition_copies;

CREATE OR REPLACE VIEW queue_stats AS
SELECT names.queue,
       coalesce(q.paused, false)          AS paused,
       coalesce(live.waiting, 0)          AS waiting,
       coalesce(live.scheduled, 0)        AS scheduled,
       coalesce(live.running, 0)          AS running,
       coalesce(done.completed, 0)        AS completed_24h,
       coalesce(dead.dead, 0)             AS dead,
       date_trunc('second', now() - live.oldest_waiting) AS oldest_waiting_age
FROM (SELECT name AS queue FROM queues UNION SELECT DISTINCT queue FROM jobs) AS names
LEFT JOIN queues q ON q.name = names.queue
LEFT JOIN (
    SELECT queue,
           count(*) FILTER (WHERE state = 'available') AS waiting,
           count(*) FILTER (WHERE state = 'scheduled') AS scheduled,
           count(*) FILTER (WHERE state = 'running')   AS running,
           min(run_at) FILTER (WHERE state = 'available') AS oldest_waiting
    FROM jobs GROUP BY queue
) AS live ON live.queue = names.queue
LEFT JOIN (
    SELECT queue, count(*) AS completed FROM job_history
    WHERE state = 'completed' AND finished_at > now() - interval '24 hours'
    GROUP BY queue
) AS done ON done.queue = names.queue
LEFT JOIN (SELECT queue, count(*) AS dead FROM dead_jobs GROUP BY queue) AS dead
    ON dead.queue = names.queue;
COMMENT ON VIEW queue_stats IS
    'Per queue: waiting (due now), scheduled (later), running, completed in the last 24 h, dead, '
    'and how long the oldest waiting job has waited.';

DROP FUNCTION queue_stats_v1();
DROP FUNCTION count_finished_v1(timestamptz, integer);
DROP TABLE finished_counts_mark;
DROP TABLE finished_counts;

DROP INDEX job_runs_queue_finished;
DROP INDEX job_history_queue_finished;

ALTER DOMAIN job_args DROP CONSTRAINT args_at_most_1_mib;
DROP FUNCTION compact_json_octets_v1(jsonb);
