#!/usr/bin/env bash
# Probe Y: a task raising an exception whose __str__ raises (max_attempts 2), and a task
# returning a non-JSON object whose __repr__ raises (max_attempts 1, it succeeded).
# Expect: the first fails, is retried once and goes dead with a readable error; the second
# completes (result stored as unstorable) and runs once.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_y}; newdb $DB
w1=$(start_worker w1 --lease 2 -c 4); sleep 3
enqueue_sql 1 raises_badstr '{}'
enqueue_sql 1 returns_badrepr '{}'
sleep 10
kill -TERM $w1; wait_pid $w1 30
check
q "select id, task, left(errors::text, 250) from conveyor.dead_jobs"
q "select job_id, kind, attempt, started::time(2) from public.runs order by 1, 4"
grep -h "WARN\|ERROR\|Traceback\|exception" /tmp/review_$DB.w1.log | cut -c1-200 | head -8
