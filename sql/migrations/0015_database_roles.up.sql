-- Conveyor schema, version 15: least-privilege database roles (docs/security.md).
--
-- The schema's owner (the role that runs `conveyor migrate`) keeps every DDL right. Workers,
-- schedulers, the API and the dashboard may run as roles that only read and write rows,
-- granted by grant_access_v1 (`conveyor grant`). Two engine steps are DDL, which PostgreSQL
-- allows only to a table's owner: making the daily partitions of job_history and job_runs
-- ahead of time (every worker, at start and hourly) and dropping an expired day (retention,
-- run by the scheduler). Those two functions now run with their owner's rights (SECURITY
-- DEFINER), with search_path pinned to this schema and pg_temp last, so no object a caller
-- makes can stand in for the ones they name; only past daily partitions of those two tables
-- can be dropped (drop_partition_v1 checks), and only those two tables get partitions.
-- Every other function stays SECURITY INVOKER: it runs with the caller's privileges.

DO $definer$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION %1$I.ensure_history_partitions_v1(integer, timestamptz) '
        'SECURITY DEFINER SET search_path = %1$I, pg_temp', current_schema());
    EXECUTE format(
        'ALTER FUNCTION %1$I.drop_partition_v1(text, integer) '
        'SECURITY DEFINER SET search_path = %1$I, pg_temp', current_schema());
END;
$definer$;

-- Only the roles granted access may call them (grant_access_v1 grants EXECUTE).
REVOKE EXECUTE ON FUNCTION ensure_history_partitions_v1(integer, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION drop_partition_v1(text, integer) FROM PUBLIC;

-- grant_access_v1(grantee, access): make a role's privileges on this schema exactly those
-- of `access`, revoking whatever else it held on the schema's objects. Returns the
-- statements run, in order. Run it as the schema's owner (or a superuser), and again after
-- every `conveyor migrate` (a new table is granted to nobody until then).
--
--   'worker': for `conveyor worker` and `conveyor scheduler` (and an application that only
--             enqueues): read and write the rows of every Conveyor table except api_keys
--             (no access at all) and imported_jobs (none); read alembic_version (the health
--             check) and the views.
--   'api':    for `conveyor api` and the dashboard: the same, and on api_keys read every
--             column and write last_used_at only (keys are created and revoked with
--             `conveyor keys`, by the owner).
--
-- Both also get USAGE on the schema (never CREATE), USAGE and SELECT on its sequences,
-- EXECUTE on the two partition functions above, and, when the caller may grant it, the
-- predefined role pg_read_all_stats: the metrics' counting step reads the start of every
-- open transaction in pg_stat_activity, which PostgreSQL shows a role only for its own
-- sessions otherwise (a finish stamped by another role's open transaction could then be
-- counted late or missed). Never TRUNCATE, REFERENCES, TRIGGER, or ownership.
--
-- Refused for a superuser or a role that owns the schema or any of its tables: revoking
-- would strip the owner's own rights, and such a role needs no grant.
CREATE FUNCTION grant_access_v1(grantee name, access text) RETURNS SETOF text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    schema_name text := current_schema();
    schema_oid oid := (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = current_schema());
    target record;
    statement text;
    rights text;
BEGIN
    IF access IS NULL OR access NOT IN ('worker', 'api') THEN
        RAISE EXCEPTION 'conveyor.grant_access_v1: access must be ''worker'' or ''api'', not %',
            coalesce(quote_literal(access), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = grantee) THEN
        RAISE EXCEPTION 'conveyor.grant_access_v1: there is no role %', quote_ident(grantee)
            USING ERRCODE = 'undefined_object', HINT = 'CREATE ROLE it first.';
    END IF;
    IF grantee LIKE 'pg\_%' THEN
        -- A predefined role (pg_monitor, pg_database_owner, ...): granting to it would give
        -- Conveyor's rows to every role that is a member of it.
        RAISE EXCEPTION 'conveyor.grant_access_v1: % is a role PostgreSQL predefines; grant to a role of its own',
            quote_ident(grantee) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = grantee AND r.rolsuper)
       OR EXISTS (SELECT FROM pg_catalog.pg_namespace n
                  WHERE n.oid = schema_oid AND pg_catalog.pg_has_role(grantee, n.nspowner, 'USAGE'))
       OR EXISTS (SELECT FROM pg_catalog.pg_class c
                  WHERE c.relnamespace = schema_oid
                    AND pg_catalog.pg_has_role(grantee, c.relowner, 'USAGE')) THEN
        RAISE EXCEPTION 'conveyor.grant_access_v1: % is a superuser or owns (part of) schema %; grant to a role of its own',
            quote_ident(grantee), quote_ident(schema_name) USING ERRCODE = 'invalid_parameter_value';
    END IF;

    FOREACH statement IN ARRAY ARRAY[
        format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', schema_name, grantee),
        format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I', schema_name, grantee),
        format('REVOKE ALL ON ALL ROUTINES IN SCHEMA %I FROM %I', schema_name, grantee),
        format('REVOKE ALL ON SCHEMA %I FROM %I', schema_name, grantee),
        format('GRANT USAGE ON SCHEMA %I TO %I', schema_name, grantee)
    ] LOOP
        EXECUTE statement;
        RETURN NEXT statement;
    END LOOP;

    -- Tables, partitioned tables and views. The daily partitions are reached through their
    -- parent (or by the owner's functions above); the default partitions are read and
    -- emptied by retention (retention_take_v1) by name.
    FOR target IN
        SELECT c.relname, c.relkind FROM pg_catalog.pg_class c
        WHERE c.relnamespace = schema_oid AND c.relkind IN ('r', 'p', 'v', 'm')
          AND (NOT c.relispartition OR c.relname IN ('job_history_default', 'job_runs_default'))
        ORDER BY c.relname
    LOOP
        rights := CASE
            WHEN target.relkind IN ('v', 'm') OR target.relname = 'alembic_version' THEN 'SELECT'
            WHEN target.relname = 'imported_jobs' THEN NULL
            WHEN target.relname = 'api_keys' THEN
                CASE access WHEN 'api' THEN 'SELECT, UPDATE (last_used_at)' END
            ELSE 'SELECT, INSERT, UPDATE, DELETE'
        END;
        CONTINUE WHEN rights IS NULL;
        statement := format('GRANT %s ON %I.%I TO %I', rights, schema_name, target.relname, grantee);
        EXECUTE statement;
        RETURN NEXT statement;
    END LOOP;

    FOREACH statement IN ARRAY ARRAY[
        format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', schema_name, grantee),
        format('GRANT EXECUTE ON FUNCTION %I.ensure_history_partitions_v1(integer, timestamptz) TO %I',
               schema_name, grantee),
        format('GRANT EXECUTE ON FUNCTION %I.drop_partition_v1(text, integer) TO %I', schema_name, grantee)
    ] LOOP
        EXECUTE statement;
        RETURN NEXT statement;
    END LOOP;

    statement := format('GRANT pg_read_all_stats TO %I', grantee);
    BEGIN
        EXECUTE statement;
        RETURN NEXT statement;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'conveyor.grant_access_v1: % not run: %', statement, SQLERRM
            USING HINT = 'A superuser should run it: without it the metrics count finishes of other roles'' '
                         'open transactions late or not at all.';
        RETURN NEXT '-- not granted (needs a superuser): ' || statement;
    END;
END;
$$;
-- Run by the schema's owner only: nobody else could grant anyway.
REVOKE EXECUTE ON FUNCTION grant_access_v1(name, text) FROM PUBLIC;
