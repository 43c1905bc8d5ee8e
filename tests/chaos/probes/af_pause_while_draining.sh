#!/bin/bash
# Two workers draining queues a and b (-q a,b) when `conveyor queues pause a` commits: no job
# of a may be claimed after the pause (started_at later than the pause's commit), running
# ones finish; b goes on; after resume a drains. Each job once.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_af}; newdb $DB
URL=postgresql://postgres@127.0.0.1:5432/$DB
for qn in a b; do q "insert into conveyor.queues(name) values ('$qn')"; done
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\": 0, \"sleep\": 0.05}', (array['a','b'])[i%2+1], i%4) from generate_series(1,600) i"
W1=$(start_worker w1 -q a,b -c 4); W2=$(start_worker w2 -q b,a -c 4)
sleep 3
$CONVEYOR --database-url $URL queues pause a
PAUSED=$(q "select clock_timestamp()")
sleep 3
echo "== claims of a after the pause committed (expect 0): $(q "select count(*) from (select started_at from conveyor.job_history where queue='a' union all select started_at from conveyor.jobs where queue='a' and state='running') x where started_at > '$PAUSED'")"
echo "== a left waiting: $(q "select count(*) from conveyor.jobs where queue='a'"), b left: $(q "select count(*) from conveyor.jobs where queue='b'")"
$CONVEYOR --database-url $URL queues resume a
for i in $(seq 1 60); do n=$(q "select count(*) from conveyor.jobs"); [ "$n" = 0 ] && break; sleep 1; done
kill -TERM $W1 $W2; wait_pid $W1 20; wait_pid $W2 20
check | sed -n 1,16p
