#!/usr/bin/env bash
# Probe S: `conveyor retention apply` twice at once over expired days of 100000 rows each.
# Expect: both exit 0 (one may find the days busy or gone); no misleading error.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_s}; newdb $DB
q "select conveyor.create_queue('p')" >/dev/null
q "select conveyor.ensure_history_partitions(7, now() - interval '6 days')" >/dev/null
q "insert into conveyor.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, max_attempts, priority, state, queue, task, args, errors)
   select i, now(), now(), now(), date_trunc('day', now() - interval '3 days') - (i % 3) * interval '1 days' + (i % 80000) * interval '1 second',
          1, 1, 2, 'completed', 'p', 'arec', '{}', '[]' from generate_series(1, 300000) i"
export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/$DB
$CONVEYOR retention apply > /tmp/review_$DB.a 2>&1 & a=$!
$CONVEYOR retention apply > /tmp/review_$DB.b 2>&1 & b=$!
wait $a; echo "run a rc=$?: $(grep -v '^ ' /tmp/review_$DB.a | tr '\n' '|' | cut -c1-300)"
wait $b; echo "run b rc=$?: $(grep -v '^ ' /tmp/review_$DB.b | tr '\n' '|' | cut -c1-300)"
q "select count(*) as runs, count(distinct id) as distinct_ids, (select count(*) from conveyor.job_history) as history_left from conveyor.job_runs"
