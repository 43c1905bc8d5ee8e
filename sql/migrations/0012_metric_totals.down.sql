-- Undo 0012: the metric totals go (the counters start again from zero after an upgrade),
-- the wrappers and the retention procedure go back to the versions before, and the
-- functions of version 12 go.

DO $wrappers$
BEGIN
    EXECUTE format($sql$
CREATE OR REPLACE FUNCTION %1$I.retry_dead(job_id bigint) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.retry_dead_v2(retry_dead.job_id);
$body$;

CREATE OR REPLACE FUNCTION %1$I.purge_dead(
    job_ids     bigint[] DEFAULT NULL,
    queue       text DEFAULT NULL,
    task        text DEFAULT NULL,
    older_than  interval DEFAULT NULL
) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.purge_dead_v1(purge_dead.job_ids, purge_dead.queue, purge_dead.task, purge_dead.older_than);
$body$;

CREATE OR REPLACE FUNCTION %1$I.expired_partitions(at timestamptz DEFAULT now()) RETURNS SETOF text
LANGUAGE sql STABLE
AS $body$
    SELECT * FROM %1$I.expired_partitions_v1(expired_partitions.at);
$body$;
$sql$, current_schema());
END;
$wrappers$;

-- The retention procedure of version 5.
DO $create$
BEGIN
    EXECUTE format($body$
CREATE OR REPLACE PROCEDURE %1$I.apply_retention(at timestamptz DEFAULT now())
LANGUAGE plpgsql
AS $procedure$
DECLARE
    result record;
    part text;
    step record;
    busy boolean;
    more boolean;
BEGIN
    LOOP
        EXIT WHEN %1$I.count_finished_v1(at, 12) < 12;
        COMMIT;
    END LOOP;
    COMMIT;
    FOR part IN SELECT * FROM %1$I.expired_partitions(at) LOOP
        LOOP
            busy := false;
            BEGIN
                SELECT * INTO step FROM %1$I.drop_partition_v1(part, 5000);
            EXCEPTION WHEN lock_not_available THEN
                busy := true;
            END;
            COMMIT;
            IF busy THEN
                RAISE NOTICE 'conveyor retention: %% is busy; it goes next time', part;
                EXIT;
            END IF;
            IF step.dropped THEN
                RAISE NOTICE 'conveyor retention: dropped %%', part;
                EXIT;
            END IF;
            IF step.copied = 0 THEN
                RAISE NOTICE 'conveyor retention: %% is gone (another retention run dropped it)', part;
                EXIT;
            END IF;
        END LOOP;
    END LOOP;
    LOOP
        more := false;
        FOR result IN SELECT * FROM %1$I.retention_batch_v1(at, 5000) LOOP
            IF result.affected > 0 THEN
                RAISE NOTICE 'conveyor retention: %%: %%', result.step, result.affected;
            END IF;
            more := more OR result.affected >= 5000;
        END LOOP;
        COMMIT;
        EXIT WHEN NOT more;
    END LOOP;
END;
$procedure$
$body$, current_schema());
END;
$create$;

DROP FUNCTION drop_partition_v2(text, integer);
DROP FUNCTION expired_partitions_v2(timestamptz);
DROP FUNCTION retention_batch_v2(timestamptz, integer);
DROP FUNCTION retention_take_v2(text, text, timestamptz, integer);
DROP FUNCTION purge_dead_v2(bigint[], text, text, interval);
DROP FUNCTION retry_dead_v3(bigint);
DROP FUNCTION metric_mark_lock_v1();
DROP FUNCTION count_metrics_v1(interval, interval);
DROP FUNCTION metric_bounds_v1();
DROP TABLE attempt_ends;
DROP TABLE metric_buckets;
DROP TABLE metric_totals;
DROP TABLE metric_mark;
