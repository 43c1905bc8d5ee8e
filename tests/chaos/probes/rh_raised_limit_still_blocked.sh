#!/bin/bash
# (1) Window reopen with a 60 s poll: starts of a 3/4s queue must follow each reopen closely.
# (2) Raising the rate at run time (3/4s -> 3/1h -> 1000/1s): docs/limits.md says "Workers
#     pick up every change at once"; a worker blocked until the old window's reopen keeps
#     waiting for it (LimitedQueues.update keeps the block of a queue still limited).
source "$(dirname "$0")/common.sh"
DB=review3_rh; newdb $DB
q "select conveyor.set_queue_limits('p', rate_limit => 3, rate_period => '4 seconds')" >/dev/null
W1=$(start_worker w1 --queues p --poll-interval 60s)
W2=$(start_worker w2 --queues p --poll-interval 60s)
sleep 2
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":0}', queue => 'p') from generate_series(1,12)" >/dev/null
sleep 13
echo "(1) starts (claim stamps) and gaps:"; q "select started_at, started_at - lag(started_at) over (order by started_at) from conveyor.job_history where queue='p' order by 1"
q "select conveyor.set_queue_limits('p', rate_limit => 3, rate_period => '1 hour')" >/dev/null
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":2,\"sleep\":0}', queue => 'p') from generate_series(1,10)" >/dev/null
sleep 3
R=$(q "select conveyor.set_queue_limits('p', rate_limit => 1000, rate_period => '1 second'); select clock_timestamp()")
sleep 15
echo "(2) of 10 waiting, started in the 15 s after the rate was raised to 1000/1s: $(q "select count(*) from conveyor.job_history where started_at > '$R'") (expect 10, at once)"
q "select min(started_at) - '$R' from conveyor.job_history where started_at > '$R'"
kill $W1 $W2; wait_pid $W1 30; wait_pid $W2 30
