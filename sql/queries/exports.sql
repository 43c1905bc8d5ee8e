-- Exports (conveyor.contrib.exports): a query's rows streamed by COPY to a file. {query} is a
-- whole SELECT declared in the application's code (register_export), or the SELECT of
-- export_relation_rows; {relation} is a quoted (schema, name). Never text from a job.

-- name: export_settings
-- The export's transaction: read only, UTF-8 out, and the export's own statement timeout.
SELECT set_config('transaction_read_only', 'on', true),
       set_config('client_encoding', 'UTF8', true),
       set_config('statement_timeout', %(statement_timeout)s, true);

-- name: export_relation_info
-- A table, view, materialized view or foreign table by name: its schema and name.
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%(relation)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f');

-- name: export_relation_rows
-- Every row of a relation, as an export's query.
SELECT * FROM {relation};

-- name: export_estimate
-- The planner's estimate of the rows a query returns (progress against it; never run).
EXPLAIN (FORMAT JSON) {query};

-- name: export_csv
-- A query's rows as CSV with a header line.
COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER);

-- name: export_jsonl
-- A query's rows as JSON objects, one a line. CSV format with a quote and a delimiter that
-- JSON text never holds raw (row_to_json escapes every control character) writes each value
-- as it is: text format would double every backslash of the JSON.
COPY (SELECT row_to_json(q) FROM ({query}) q) TO STDOUT WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02');
