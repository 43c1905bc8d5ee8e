-- Probe K: the SQL functions and direct INSERTs with odd input. Run with psql -v ON_ERROR_STOP=0.
\set VERBOSITY terse
SELECT conveyor.create_queue('p');
SELECT conveyor.enqueue(NULL);
SELECT conveyor.enqueue('arec', NULL);
SELECT conveyor.enqueue('arec', '{}', NULL, NULL, NULL, NULL, NULL);
SELECT conveyor.enqueue('arec', '{}', 'p', 7);
SELECT conveyor.enqueue('arec', '{}', 'p', -1);
SELECT conveyor.enqueue('arec', '{}', 'p', NULL, NULL, '', NULL);
SELECT conveyor.enqueue('arec', '{}', 'p', NULL, NULL, repeat('k', 10000), NULL);
SELECT conveyor.enqueue('arec', '{}', 'p', NULL, NULL, NULL, 0);
SELECT conveyor.enqueue('arec', '{}', 'p', NULL, 'infinity', NULL, NULL);
SELECT conveyor.enqueue(repeat('t', 100000), '{}', 'p');
SELECT conveyor.enqueue(E'bad\ttask', '{}', 'p');
SELECT conveyor.enqueue('arec', '"str"', 'p');
-- the 1 MiB boundary: compact JSON of {"s":"..."} is 8 + len bytes
SELECT conveyor.enqueue('arec', jsonb_build_object('s', repeat('a', 1048576 - 8)), 'p') AS at_limit;
SELECT conveyor.enqueue('arec', jsonb_build_object('s', repeat('a', 1048576 - 7)), 'p') AS over_limit;
-- jsonb text is longer than compact JSON: many small members pass at the limit?
SELECT octet_length(v::text) AS jsonb_text, conveyor.compact_json_octets_v1(v) AS compact FROM (SELECT jsonb_object_agg('k' || i, i) v FROM generate_series(1, 100000) i) x;
-- numbers: numeric text of 1e300 is 301 digits, Python writes 1e+300 (6 bytes)
SELECT conveyor.compact_json_octets_v1('{"x": 1e300}'::jsonb) AS compact_of_1e300;
SELECT conveyor.enqueue('arec', (SELECT jsonb_build_object('x', jsonb_agg('1e300'::jsonb)) FROM generate_series(1, 4000)), 'p') AS floats_4000;
-- strings with escapes: jsonb writes \" and \\ and \n as Python does?
SELECT conveyor.compact_json_octets_v1(jsonb_build_object('s', E'a"b\\c\nd\u0001é')) AS compact_escapes;
-- direct INSERTs
INSERT INTO conveyor.jobs (queue, task, args) VALUES ('p', 'arec', jsonb_build_object('s', repeat('a', 2000000))) RETURNING id;
INSERT INTO conveyor.jobs (queue, task, args) VALUES ('p', 'arec', '{}') RETURNING id, state, run_at, max_attempts, priority;
INSERT INTO conveyor.jobs (queue, task, args, state) VALUES ('p', 'arec', '{}', 'running') RETURNING id;
INSERT INTO conveyor.jobs (queue, task, args, state, worker_id, lease_expires_at) VALUES ('p', 'arec', '{}', 'running', gen_random_uuid(), now()) RETURNING id;
INSERT INTO conveyor.jobs (queue, task, args) VALUES ('nosuchqueue', 'arec', '{}') RETURNING id;
INSERT INTO conveyor.jobs (queue, task, args, attempt, max_attempts) VALUES ('p', 'arec', '{}', 10, 1) RETURNING id;
INSERT INTO conveyor.jobs (queue, task, args, errors) VALUES ('p', 'arec', '{}', '"not an array"') RETURNING id;
-- append_error_v1 with odd input
SELECT conveyor.append_error_v1(NULL, NULL);
SELECT conveyor.append_error_v1('"str"', '{"a":1}');
SELECT conveyor.append_error_v1('{"obj":1}', '{"a":1}');
SELECT jsonb_array_length(conveyor.append_error_v1((SELECT jsonb_agg(jsonb_build_object('attempt', i)) FROM generate_series(1, 20) i), '{"attempt": 21}')) AS len_after_20;
SELECT conveyor.append_error_v1((SELECT jsonb_agg(to_jsonb(i)) FROM generate_series(1, 12) i), '13') AS scalars;
SELECT conveyor.append_error_v1('[1,2,3,"dropped",5,6,7,8,9,10,11]', '12') AS string_dropped_at_3;
SELECT conveyor.append_error_v1('[1,2,3,{"dropped":"x"},5,6,7,8,9,10,11]', '12') AS nonnumeric_dropped;
SELECT conveyor.append_error_v1('[1,2,3,{"dropped":-5},5,6,7,8,9,10,11]', '12') AS negative_dropped;
-- retry_dead / purge_dead odd ids
SELECT conveyor.retry_dead(NULL);
SELECT conveyor.retry_dead(-1);
SELECT * FROM conveyor.purge_dead(NULL, NULL, NULL);
