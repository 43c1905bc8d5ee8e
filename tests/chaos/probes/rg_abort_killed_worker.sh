#!/bin/bash
# Abort of a job whose worker was SIGKILLed: (1) asked before its lease ran out ('aborting'),
# (2) asked after ('cancelled' at once). Neither may run again; a second worker does maintenance.
source "$(dirname "$0")/common.sh"
DB=review3_rg; newdb $DB
q "select conveyor.set_queue_limits('p', concurrency => 2)" >/dev/null
W1=$(start_worker w1 --queues p --lease 3s -c 2)
sleep 2
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":30}', queue => 'p') from generate_series(1,2)" >/dev/null
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":2,\"sleep\":0.1}', queue => 'p') from generate_series(1,5)" >/dev/null
sleep 2
IDS=$(q "select id from conveyor.jobs where state='running' order by id")
A=$(echo $IDS | cut -d' ' -f1); B=$(echo $IDS | cut -d' ' -f2); echo "running: $A $B"
kill -9 $W1
echo "abort $A at once: $(q "select conveyor.abort_job($A, 'probe')")"
sleep 4
echo "abort $B after its lease: $(q "select conveyor.abort_job($B, 'probe')")"
W2=$(start_worker w2 --queues p --lease 3s -c 2)
for i in $(seq 1 30); do n=$(q "select count(*) from conveyor.jobs"); [ "$n" = 0 ] && break; sleep 1; done
echo "live left: $n"
q "select id, state, attempt, left(errors::text, 300) from conveyor.job_history where id in ($A, $B)"
echo "executions of $A/$B: $(q "select count(*) from public.runs where job_id in ($A,$B)") (2 expected)"
kill $W2; wait_pid $W2 30
check | head -12
