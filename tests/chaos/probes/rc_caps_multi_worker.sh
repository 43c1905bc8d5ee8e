#!/bin/bash
# Concurrency caps (queue and per key) and a rate limit across 3 worker processes, while the
# limits change at run time and one worker is SIGKILLed holding limited jobs (lease 3s).
# Checks: max overlap of executions in the queue and per key, per phase; starts per rate
# window (claim stamps, job_history.started_at); lost / duplicated jobs.
source "$(dirname "$0")/common.sh"
DB=review3_rc; newdb $DB
q "select conveyor.set_queue_limits('p', concurrency => 4, key_concurrency => 1)" >/dev/null
q "insert into public.enqueued select conveyor.enqueue('arec', json_build_object('n', i, 'sleep', 0.3)::jsonb, key => 'k' || (i % 6), queue => 'p') from generate_series(1,240) i" >/dev/null
W1=$(start_worker w1 --queues p --lease 3s -c 5)
W2=$(start_worker w2 --queues p --lease 3s -c 5)
W3=$(start_worker w3 --queues p --lease 3s -c 5)
sleep 5
T1=$(q "select clock_timestamp()")
q "select conveyor.set_queue_limits('p', concurrency => 2, key_concurrency => 1, rate_limit => 5, rate_period => '1 second')" >/dev/null
sleep 4
KILLED_AT=$(q "select clock_timestamp()"); kill -9 $W1
sleep 6
T2=$(q "select clock_timestamp()")
q "select conveyor.set_queue_limits('p')" >/dev/null   # cleared while workers run
for i in $(seq 1 60); do n=$(q "select count(*) from conveyor.jobs where queue='p'"); [ "$n" = 0 ] && break; sleep 1; done
echo "left in queue: $n; T1=$T1 kill=$KILLED_AT T2=$T2"
q "create table ph as select r.*, coalesce(r.finished, case when r.pid=$W1 or true then '$KILLED_AT'::timestamptz end) fin, h.key,
   case when r.started < '$T1' then 1 when r.started < '$T2' then 2 else 3 end phase from public.runs r join conveyor.job_history h on h.id=r.job_id and h.attempt=r.attempt" 2>/dev/null
echo "phase|max overlap in queue (cap: 1=4, 2=2, 3=none)"
q "select a.phase, max((select count(*) from ph b where b.started <= a.started and b.fin > a.started)) from ph a group by 1 order by 1"
echo "phase|max overlap per key (cap 1 in phases 1,2)"
q "select a.phase, max((select count(*) from ph b where b.key=a.key and b.started <= a.started and b.fin > a.started)) from ph a group by 1 order by 1"
echo "max claim starts in any 1 s window in phase 2 (limit 5), claim stamps"
q "select max((select count(*) from conveyor.job_history b where b.started_at > a.started_at - interval '1 second' and b.started_at <= a.started_at and b.started_at > '$T1' and b.started_at < '$T2')) from conveyor.job_history a where a.started_at > '$T1' and a.started_at < '$T2'"
q "select count(*) from ph where phase=2" | sed 's/^/runs started in phase 2: /'
kill $W2 $W3; wait_pid $W2 30; wait_pid $W3 30
check
