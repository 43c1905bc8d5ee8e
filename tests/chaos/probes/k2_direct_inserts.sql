\set VERBOSITY terse
-- Probe K2: direct INSERTs with max_attempts given, and the 1 MiB boundary through each door.
INSERT INTO conveyor.jobs (queue, task, args, max_attempts) VALUES ('p', 'arec', jsonb_build_object('s', repeat('a', 1048576 - 8)), 1) RETURNING id AS direct_at_compact_limit;
SELECT conveyor.enqueue('arec', jsonb_build_object('s', repeat('a', 1048576 - 8)), 'p') AS sql_enqueue_at_compact_limit;
INSERT INTO conveyor.jobs (queue, task, args, max_attempts, state) VALUES ('p', 'arec', '{}', 1, 'running') RETURNING id;
INSERT INTO conveyor.jobs (queue, task, args, max_attempts, state, worker_id, lease_expires_at) VALUES ('p', 'arec', '{}', 1, 'running', gen_random_uuid(), now()) RETURNING id AS running_row_inserted;
INSERT INTO conveyor.jobs (queue, task, args, max_attempts) VALUES ('nosuchqueue', 'arec', '{}', 1) RETURNING id AS unknown_queue_row;
INSERT INTO conveyor.jobs (queue, task, args, attempt, max_attempts) VALUES ('p', 'arec', '{}', 10, 1) RETURNING id AS attempt_past_max;
INSERT INTO conveyor.jobs (queue, task, args, max_attempts, errors) VALUES ('p', 'arec', '{}', 1, '"not an array"') RETURNING id AS errors_not_array;
INSERT INTO conveyor.jobs (queue, task, args, max_attempts, run_at) VALUES ('p', 'arec', '{}', 1, '-infinity') RETURNING id AS minus_infinity;
INSERT INTO conveyor.jobs (queue, task, args, max_attempts, claims) VALUES ('p', 'arec', '{}', 1, -5) RETURNING id AS negative_claims;
INSERT INTO conveyor.jobs (queue, task, args, max_attempts, handbacks) VALUES ('p', 'arec', '{}', 1, -5) RETURNING id AS negative_handbacks;
