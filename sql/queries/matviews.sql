-- The built-in materialized-view refresh. {view} is the view's quoted (schema, name).

-- name: matview_info
-- A materialized view by name: its oid, schema and name, whether it holds data, and
-- whether it has a unique index REFRESH ... CONCURRENTLY can use (plain columns, no WHERE).
SELECT c.oid::integer, n.nspname, c.relname, c.relispopulated,
       EXISTS (SELECT FROM pg_index i
               WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                 AND i.indpred IS NULL AND i.indexprs IS NULL) AS has_unique_index
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%(view)s) AND c.relkind = 'm';

-- name: matview_try_lock
-- One refresh of a view at a time, across every worker: a transaction lock keyed by its oid
-- (released with the transaction, so nothing is left behind on a pooled or pgbouncer'd
-- connection).
SELECT pg_try_advisory_xact_lock(hashtext('conveyor refresh'), %(oid)s);

-- name: refresh_matview_concurrently
-- Refresh without blocking readers (needs a unique index and data already there).
REFRESH MATERIALIZED VIEW CONCURRENTLY {view};

-- name: refresh_matview
-- Refresh, blocking readers meanwhile.
REFRESH MATERIALIZED VIEW {view};

-- name: matview_rows
-- How many rows the view holds.
SELECT count(*) FROM {view};
