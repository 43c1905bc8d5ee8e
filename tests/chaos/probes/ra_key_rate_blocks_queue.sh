#!/bin/bash
# A key held back by its rate window blocks the whole queue on the worker until that key's
# window reopens: jobs of OTHER keys (and keys enqueued later) wait for it, though their own
# limits allow them now. Queue p: key_rate 1/40s. Key a: 2 jobs (second held, reopens in 40 s).
# Then key b: 1 job. Expected: b starts within ~1 s (poll 1s). Bug: b waits ~40 s.
source "$(dirname "$0")/common.sh"
DB=review3_ra; newdb $DB
q "select conveyor.set_queue_limits('p', key_rate_limit => 1, key_rate_period => '40 seconds')" >/dev/null
W=$(start_worker w1 --queues p --poll-interval 1s)
sleep 3
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":0}', key => 'a') from generate_series(1,2)" >/dev/null
sleep 2
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":2,\"sleep\":0}', key => 'b')" >/dev/null
T0=$(date +%s.%N)
for i in $(seq 1 60); do
  n=$(q "select count(*) from public.runs r join conveyor.job_history h on h.id=r.job_id where h.key='b'")
  [ "$n" = "1" ] && break; sleep 1
done
echo "key b job started after $(echo "$(date +%s.%N) - $T0" | bc) s (expected ~1 s)"
q "select j.key, r.started - j.enqueued_at as waited from public.runs r join conveyor.job_history j on j.id=r.job_id order by r.started"
kill $W; wait_pid $W 30
