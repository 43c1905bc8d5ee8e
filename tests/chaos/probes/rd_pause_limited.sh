#!/bin/bash
# pause_all, then pause_task, while 2 workers drain a limited queue (p: concurrency 3,
# key_concurrency 1, rate 30/1s) and an unlimited one (u). Claims stamped after a pause
# committed are violations; after each resume everything must drain.
source "$(dirname "$0")/common.sh"
DB=review3_rd; newdb $DB
q "select conveyor.create_queue('u')" >/dev/null
q "select conveyor.set_queue_limits('p', concurrency => 3, key_concurrency => 1, rate_limit => 30, rate_period => '1 second')" >/dev/null
q "insert into public.enqueued select conveyor.enqueue('arec', json_build_object('n', i, 'sleep', 0.2)::jsonb, key => 'k' || (i % 5), queue => 'p') from generate_series(1,150) i" >/dev/null
q "insert into public.enqueued select conveyor.enqueue('arec', json_build_object('n', i, 'sleep', 0.2)::jsonb, queue => 'u') from generate_series(1,300) i" >/dev/null
W1=$(start_worker w1 --queues p,u -c 4 --poll-interval 5s)
W2=$(start_worker w2 --queues u,p -c 4 --poll-interval 5s)
sleep 3
P1=$(q "select conveyor.pause_all(); select clock_timestamp()")
sleep 3
echo "claims after pause_all: $(q "select count(*) from (select started_at from conveyor.jobs union all select started_at from conveyor.job_history) x where started_at > '$P1'")"
R1=$(q "select conveyor.resume_all(); select clock_timestamp()")
sleep 2
P2=$(q "select conveyor.pause_task('arec'); select clock_timestamp()")
sleep 3
echo "claims after pause_task: $(q "select count(*) from (select started_at from conveyor.jobs union all select started_at from conveyor.job_history) x where started_at > '$P2'")"
R2=$(q "select conveyor.resume_task('arec'); select clock_timestamp()")
T0=$(date +%s)
for i in $(seq 1 90); do n=$(q "select count(*) from conveyor.jobs"); [ "$n" = 0 ] && break; sleep 1; done
echo "left after resume: $n (after $(( $(date +%s) - T0 )) s); first claim after resume_all: $(q "select min(started_at) - '$R1' from conveyor.job_history where started_at > '$R1'"), after resume_task: $(q "select min(started_at) - '$R2' from conveyor.job_history where started_at > '$R2'")"
q "select queue, state, count(*) from conveyor.jobs group by 1,2"
kill $W1 $W2; wait_pid $W1 30; wait_pid $W2 30
check | head -8
