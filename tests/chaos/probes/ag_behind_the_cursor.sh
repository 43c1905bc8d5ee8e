#!/bin/bash
# Jobs that land behind a busy worker's cursors: enqueued mid-drain with run_at an hour in the
# past (same queue and priority as the 3000 being drained, and in a second queue). The cursor
# contract: they wait at most the full-scan interval (20 ms .. 5 s), not until the drain ends.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_ag}; newdb $DB
for qn in a b; do q "insert into conveyor.queues(name) values ('$qn')"; done
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\": 0, \"sleep\": 0.01}', (array['a','b'])[i%2+1], 2) from generate_series(1,3000) i"
W1=$(start_worker w1 -q a,b -c 8)
sleep 3
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\": 7, \"sleep\": 0}', (array['a','b'])[i%2+1], 2, now() - interval '1 hour') from generate_series(1,10) i"
LEFT=$(q "select count(*) from conveyor.jobs")
for i in $(seq 1 60); do n=$(q "select count(*) from conveyor.jobs"); [ "$n" = 0 ] && break; sleep 1; done
kill -TERM $W1; wait_pid $W1 20
echo "jobs still live when the 10 landed: $LEFT"
echo "== the 10 behind the cursor: max wait (claim - enqueue), and how many of the drain were claimed after them"
q "select round(max(extract(epoch from started_at - enqueued_at))::numeric, 3) from conveyor.job_history where args->>'n' = '7'"
q "select count(*) from conveyor.job_history where args->>'n' = '0' and started_at > (select max(started_at) from conveyor.job_history where args->>'n' = '7')"
check | sed -n 1,6p
