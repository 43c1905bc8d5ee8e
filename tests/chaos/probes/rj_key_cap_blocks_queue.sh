#!/bin/bash
# Variant of ra with a per-key concurrency cap: key a runs one 20 s job (key_concurrency 1)
# with a second waiting, so the claim says "held until a slot" and the worker blocks the
# whole queue; key b's job, enqueued later and announced by NOTIFY, waits for the poll (15 s).
source "$(dirname "$0")/common.sh"
DB=review3_rj; newdb $DB
q "select conveyor.set_queue_limits('p', key_concurrency => 1)" >/dev/null
W=$(start_worker w1 --queues p --poll-interval 15s)
sleep 3
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":20}', key => 'a', queue => 'p') from generate_series(1,2)" >/dev/null
sleep 2
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":2,\"sleep\":0}', key => 'b', queue => 'p')" >/dev/null
T0=$(date +%s.%N)
for i in $(seq 1 40); do
  n=$(q "select count(*) from public.runs r join conveyor.jobs j on j.id=r.job_id where j.key='b'")$(q "select count(*) from conveyor.job_history where key='b'")
  [ "$n" != "00" ] && break; sleep 0.5
done
echo "key b job started after $(echo "$(date +%s.%N) - $T0" | bc) s (expected well under 1 s: the enqueue notifies)"
kill $W; wait_pid $W 40
