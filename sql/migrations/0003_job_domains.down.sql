-- Undo 0003: the jobs table's CHECK constraints of version 1 again, and no domains.

CREATE TEMPORARY TABLE conveyor_saved_views ON COMMIT DROP AS
SELECT c.relname AS name, pg_get_viewdef(c.oid) AS definition, obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'v'
  AND c.relname IN ('queue_stats', 'job_list');

DROP VIEW queue_stats;
DROP VIEW job_list;

ALTER TABLE jobs
    ALTER COLUMN state TYPE text,
    ALTER COLUMN priority TYPE smallint,
    ALTER COLUMN max_attempts TYPE integer,
    ALTER COLUMN progress TYPE smallint,
    ALTER COLUMN task TYPE text,
    ALTER COLUMN args TYPE jsonb,
    ALTER COLUMN args SET DEFAULT jsonb_build_object(),
    ALTER COLUMN errors SET DEFAULT jsonb_build_array(),
    ALTER COLUMN run_at DROP DEFAULT,
    ALTER COLUMN enqueued_at DROP DEFAULT,
    ALTER COLUMN state DROP DEFAULT,
    ADD CONSTRAINT max_attempts_positive CHECK (max_attempts >= 1),
    ADD CONSTRAINT priority_range CHECK (priority BETWEEN 0 AND 3),
    ADD CONSTRAINT progress_range CHECK (progress BETWEEN 0 AND 100),
    ADD CONSTRAINT live_state CHECK (state IN ('available', 'scheduled', 'running')),
    ADD CONSTRAINT task_named CHECK (task <> ''),
    ADD CONSTRAINT args_object CHECK (jsonb_typeof(args) = 'object');

DO $$
DECLARE
    saved record;
BEGIN
    FOR saved IN SELECT * FROM conveyor_saved_views ORDER BY name LOOP
        EXECUTE format('CREATE VIEW %I AS %s', saved.name, saved.definition);
        EXECUTE format('COMMENT ON VIEW %I IS %L', saved.name, saved.comment);
    END LOOP;
END;
$$;

DROP DOMAIN job_args;
DROP DOMAIN job_task;
DROP DOMAIN job_progress;
DROP DOMAIN job_max_attempts;
DROP DOMAIN job_priority;
DROP DOMAIN job_state;
