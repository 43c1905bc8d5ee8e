#!/bin/bash
# A worker whose queue p is held back by its concurrency cap (a job of ANOTHER worker holds the
# slot) asks p again only when polled() runs, i.e. when a wait times out at exactly the poll
# interval. While another of its queues (b) is rate-blocked, every wait is cut short by b's
# timer, polled() never runs, and p stays blocked after the other worker leaves.
# Expected (docs/limits.md: "other workers look again at their poll"): p's jobs start within
# the poll interval (3 s) of W2's exit. Bug: none start while b has a backlog.
source "$(dirname "$0")/common.sh"
DB=review3_rf; newdb $DB
q "select conveyor.create_queue('b')" >/dev/null
q "select conveyor.set_queue_limits('p', concurrency => 1)" >/dev/null
q "select conveyor.set_queue_limits('b', rate_limit => 1, rate_period => '2 seconds')" >/dev/null
W2=$(start_worker w2 --queues p --poll-interval 3s)
sleep 2
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":3}', queue => 'p') from generate_series(1,5)" >/dev/null
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":2,\"sleep\":0}', queue => 'b') from generate_series(1,100)" >/dev/null
sleep 1
W1=$(start_worker w1 --queues p,b --poll-interval 3s)
sleep 2
kill -TERM $W2; wait_pid $W2 30
EXIT=$(q "select clock_timestamp()")
sleep 25
echo "p jobs claimed in the 25 s after W2 exited (3-4 waiting, cap 1, 3 s each: expect >= 3): $(q "select count(*) from (select started_at, queue from conveyor.jobs union all select started_at, queue from conveyor.job_history) x where queue='p' and started_at > '$EXIT'")"
echo "b jobs run meanwhile: $(q "select count(*) from conveyor.job_history where queue='b'")"
q "select queue, state, count(*) from conveyor.jobs group by 1,2 order by 1,2"
kill $W1; wait_pid $W1 30
