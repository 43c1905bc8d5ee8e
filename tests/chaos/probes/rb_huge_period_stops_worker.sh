#!/bin/bash
# set_queue_limits accepts a rate period of 100000 years; every claim of that queue then fails
# with "timestamp out of range" (window_push_v1: clock - period), and since the limited
# queues are claimed first in one try block, the worker claims nothing from its OTHER queues.
source "$(dirname "$0")/common.sh"
DB=review3_rb2; newdb $DB
q "select conveyor.set_queue_limits('y', rate_limit => 5, rate_period => '100000 years')" && echo "accepted 100000 years"
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":0}', queue => 'y')" >/dev/null
enqueue_sql 5 arec '{"n":1,"sleep":0}'
W=$(start_worker w1 --queues y,p --poll-interval 1s)
sleep 8
echo "jobs run in 8 s (6 enqueued, 5 of them in unlimited queue p): $(q 'select count(*) from public.runs')"
kill $W; wait_pid $W 30
echo "worker log lines: $(wc -l < /tmp/review_$DB.w1.log)"; grep -i "range\|error\|fail" /tmp/review_$DB.w1.log | head -3 | cut -c1-300
check
