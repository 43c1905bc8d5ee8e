-- Housekeeping (conveyor.contrib.housekeeping): old rows of an application's table deleted in
-- batches. {table} is a quoted (schema, name), {column} a quoted column name.

-- name: housekeeping_table_info
-- A table by name (plain or partitioned): its schema and name.
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%(table)s) AND c.relkind IN ('r', 'p');

-- name: housekeeping_column_type
-- The type of a table's column (by the table's schema and name), if it has one of that name.
SELECT format_type(a.atttypid, a.atttypmod), t.typname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attname = %(column)s
  AND a.attnum > 0 AND NOT a.attisdropped;

-- name: housekeeping_cutoff
-- The cut-off time, by the database's clock: rows older than this go.
SELECT now() - %(older_than)s::interval;

-- name: housekeeping_batch_timeout
-- One batch's statement timeout (its own transaction).
SELECT set_config('statement_timeout', %(statement_timeout)s, true);

-- name: housekeeping_delete_batch
-- At most about %(batch)s rows older than the cut-off, found by their physical address and
-- deleted in one statement. The cut-off is checked again on each row deleted: a row updated
-- meanwhile to a newer time stays, and where ctids repeat across partitions only rows past
-- the cut-off can match.
DELETE FROM {table}
WHERE ctid = ANY (ARRAY (SELECT ctid FROM {table} WHERE {column} < %(cutoff)s LIMIT %(batch)s))
  AND {column} < %(cutoff)s;
