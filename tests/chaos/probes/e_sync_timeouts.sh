#!/usr/bin/env bash
# Probe E: sync tasks past their 1 s timeout (they sleep 3 s), --lease 2, two workers: no
# execution of a job may overlap another of the same job; each job ends dead after 3 runs.
# Then SIGTERM one worker (--grace 1) while a timed-out thread runs, SIGKILL the other later.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_e}; newdb $DB
w1=$(start_worker w1 --lease 2 -c 2 --grace 1); w2=$(start_worker w2 --lease 2 -c 2 --grace 1)
sleep 3
enqueue_sql 4 srec '{"n":1,"sleep":3}'
enqueue_sql 4 srec '{"n":1,"sleep":0.2}'
sleep 22
echo "== phase 2: SIGTERM w1 during a timed-out thread"
enqueue_sql 2 srec '{"n":2,"sleep":4}'
sleep 2
kill -TERM $w1; t0=$(date +%s.%N); wait $w1; echo "w1 exited rc=$? after $(echo "$(date +%s.%N) - $t0" | bc) s"
sleep 25
kill -TERM $w2; wait $w2 2>/dev/null
check
q "select id, attempt, max_attempts, claims, jsonb_array_length(errors), left(errors::text, 0) from conveyor.dead_jobs order by id"
q "select job_id, attempt, pid, started::time(2), finished::time(2) from public.runs order by job_id, started"
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log | cut -c1-200 | head -40
