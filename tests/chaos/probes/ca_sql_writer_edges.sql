-- The one job writer through its SQL doors, with NULLs, unknown names and the year-1..9999 rule.
-- Run on a database made by newdb: psql -h 127.0.0.1 -U postgres review2_ca -f ca_sql_writer_edges.sql
\set ON_ERROR_STOP 0
\set VERBOSITY terse
SELECT name FROM conveyor.queues ORDER BY 1;
\echo '-- NULLs'
SELECT conveyor.enqueue(NULL);
SELECT conveyor.enqueue('arec', NULL);
SELECT conveyor.enqueue('arec', '[]');
SELECT conveyor.enqueue('arec', '{}', NULL, NULL, NULL, NULL, NULL) AS all_nulls;
SELECT conveyor.enqueue('arec', '{}', unique_key => '');
SELECT conveyor.enqueue('arec', '{}', max_attempts => 0);
SELECT conveyor.enqueue('arec', '{}', priority => 4);
\echo '-- a task never recorded, no queue: default queue?'
SELECT conveyor.enqueue('never_recorded');
\echo '-- unknown queue'
SELECT conveyor.enqueue('never_recorded', '{}', 'nope');
\echo '-- run_at edges (years 1..9999): expect accept, refuse, accept, refuse, refuse, refuse'
SELECT conveyor.enqueue('e', '{}', 'default', run_at => '0001-01-02 00:00:00+00') AS edge_low_ok;
SELECT conveyor.enqueue('e', '{}', 'default', run_at => '0001-01-01 23:59:59+00') AS edge_low_refused;
SELECT conveyor.enqueue('e', '{}', 'default', run_at => '9999-12-30 23:59:59.999999+00') AS edge_high_ok;
SELECT conveyor.enqueue('e', '{}', 'default', run_at => '9999-12-31 00:00:00+00') AS edge_high_refused;
SELECT conveyor.enqueue('e', '{}', 'default', run_at => 'infinity');
SELECT conveyor.enqueue('e', '{}', 'default', run_at => '-infinity');
\echo '-- the edge rows read back in an extreme session time zone (what a reader sees)'
SET TimeZone = 'Pacific/Kiritimati';
SELECT id, run_at, extract(year from run_at) FROM conveyor.jobs WHERE task = 'e' ORDER BY id;
SET TimeZone = 'Etc/GMT+12';
SELECT id, run_at, extract(year from run_at) FROM conveyor.jobs WHERE task = 'e' ORDER BY id;
RESET TimeZone;
\echo '-- direct insert at the domain edges (the table rule must match the function rule)'
INSERT INTO conveyor.jobs (queue, task, args, run_at) VALUES ('default', 'e2', '{}', '0001-01-01 23:59:59+00');
INSERT INTO conveyor.jobs (queue, task, args, run_at) VALUES ('default', 'e2', '{}', '9999-12-31 00:00:00+00');
INSERT INTO conveyor.jobs (queue, task, args, max_attempts, run_at) VALUES ('default', 'e2', '{}', 1, '9999-12-30 23:59:59+00') RETURNING id, state;
\echo '-- retry_dead: NULL, unknown, a dead job whose unique key a live job holds'
SELECT conveyor.retry_dead(NULL);
SELECT conveyor.retry_dead(-1);
INSERT INTO conveyor.dead_jobs (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts, priority, queue, task, unique_key, args, errors, claims)
SELECT nextval(pg_get_serial_sequence('conveyor.jobs','id')), now(), now(), now(), now(), 1, 1, 2, 'default', 'arec', 'uk-dead', '{}', '[]', 1
RETURNING id AS dead_id \gset
SELECT conveyor.enqueue('arec', '{}', 'default', unique_key => 'uk-dead') AS live_holder;
SELECT conveyor.retry_dead(:dead_id);
SELECT count(*) AS still_dead FROM conveyor.dead_jobs WHERE id = :dead_id;
\echo '-- retry_dead into a queue that no longer exists (queue row deleted) and a paused one'
DELETE FROM conveyor.jobs WHERE unique_key = 'uk-dead';
UPDATE conveyor.dead_jobs SET queue = 'gone_q' WHERE id = :dead_id;
SELECT conveyor.retry_dead(:dead_id) AS revived;
SELECT id, queue, state, attempt, claims, unique_key, max_attempts FROM conveyor.jobs WHERE id = :dead_id;
