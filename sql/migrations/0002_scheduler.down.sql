-- Undo 0002.
DROP VIEW job_list;
CREATE VIEW job_list AS
SELECT id, queue, task, state, priority, attempt, max_attempts, run_at, enqueued_at, started_at,
       NULL::timestamptz AS finished_at, progress, args,
       errors -> -1 ->> 'error' AS last_error
FROM jobs
UNION ALL
SELECT id, queue, task, 'dead', priority, attempt, max_attempts, run_at, enqueued_at, started_at,
       died_at, NULL, args, errors -> -1 ->> 'error'
FROM dead_jobs
UNION ALL
SELECT id, queue, task, state, priority, attempt, max_attempts, run_at, enqueued_at, started_at,
       finished_at, 100, args, errors -> -1 ->> 'error'
FROM job_history;
COMMENT ON VIEW job_list IS 'Every job Conveyor still holds, live, dead or finished, one row each.';

DROP PROCEDURE apply_retention(timestamptz);
DROP FUNCTION drop_partition(text);
DROP FUNCTION expired_partitions(timestamptz);
DROP FUNCTION retention_rows(timestamptz);
DROP VIEW retention_by_queue;
DROP FUNCTION set_retention(text, interval, integer, interval, interval);
-- As 0001 made it.
CREATE OR REPLACE FUNCTION ensure_history_partitions(days_ahead integer DEFAULT 7, at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    day date;
    part text;
    created integer := 0;
BEGIN
    -- Workers starting together would otherwise race to create the same partition.
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.job_history partitions'));
    FOR day IN
        SELECT d::date FROM generate_series(
            (at AT TIME ZONE 'UTC')::date - 1,
            (at AT TIME ZONE 'UTC')::date + days_ahead,
            interval '1 day') AS d
    LOOP
        part := 'job_history_' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('%I.%I', current_schema(), part)) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE %I.%I (LIKE %I.job_history INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           current_schema(), part, current_schema());
            EXECUTE format('ALTER TABLE %I.job_history ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                           current_schema(), current_schema(), part,
                           day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        EXCEPTION WHEN check_violation OR duplicate_table THEN
            -- Rows for that day already sit in the default partition, or another session
            -- made the partition first: leave the day to them.
            RAISE NOTICE 'conveyor: history partition % not created: %', part, SQLERRM;
        END;
    END LOOP;
    RETURN created;
END;
$$;
DROP FUNCTION ensure_daily_partitions(text, integer, timestamptz);
DROP TABLE job_runs;
DROP TABLE retention;
DROP TABLE leaders;
DROP FUNCTION remove_schedule(text);
DROP FUNCTION trigger_schedule(text);
DROP FUNCTION resume_schedule(text);
DROP FUNCTION pause_schedule(text);
DROP FUNCTION find_schedule(text);
DROP FUNCTION create_schedule(text, text, text, jsonb, text, text, integer, integer, text, boolean, timestamptz);
DROP FUNCTION fire_schedule(text, timestamptz, text, timestamptz, timestamptz);
DROP TABLE schedule_fires;
DROP TABLE schedules;
DROP FUNCTION check_timezone(text);
DROP FUNCTION check_cron(text);
DROP FUNCTION cron_field_value(text, text, integer);
