#!/usr/bin/env bash
# Probe I: a job with a run_at Python's datetime cannot hold (before year 1, '-infinity'),
# enqueued through the SQL function, in a queue with ordinary jobs. Does the worker still
# drain the ordinary jobs?
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_i}; newdb $DB
w1=$(start_worker w1 --lease 5 -c 4)
sleep 3
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":0}', run_at => '-infinity')"
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":2,\"sleep\":0}', run_at => '0044-03-15 BC')"
enqueue_sql 20 arec '{"n":1,"sleep":0}'
sleep 8
q "select state, count(*) from conveyor.jobs group by 1"
kill -TERM $w1; wait_pid $w1 30
check
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log | cut -c1-250 | sort | uniq -c | sort -rn | head
