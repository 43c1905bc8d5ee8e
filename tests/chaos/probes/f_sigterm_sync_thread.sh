#!/usr/bin/env bash
# Probe F: SIGTERM (--grace 1) while sync tasks are past their timeout in their threads.
# Expect: exit within grace + bounded time; jobs not handed back; rescued after the lease by
# a second worker, attempt counted; no overlap with the first run (that process is gone).
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_f}; newdb $DB
w1=$(start_worker w1 --lease 3 -c 2 --grace 1)
sleep 3
enqueue_sql 2 srec '{"n":1,"sleep":8}'
sleep 2.5
kill -TERM $w1; wait_pid $w1 30
w2=$(start_worker w2 --lease 3 -c 2 --grace 1)
sleep 30
kill -TERM $w2; wait_pid $w2 30
check
q "select job_id, attempt, pid, started::time(2), finished::time(2) from public.runs order by job_id, started"
q "select id, attempt, claims, handbacks, errors::text from conveyor.jobs union all select id, attempt, claims, null, left(errors::text, 600) from conveyor.dead_jobs"
grep -h "WARN\|ERROR\|INFO" /tmp/review_$DB.w1.log | cut -c1-220 | head -20
