#!/bin/bash
# Three workers with overlapping queue sets (a,b / b,c / c,d,a), mixed priorities and run_at,
# queue d paused for the first 5 s, more jobs arriving while they drain. Invariants: every
# job ran exactly once, none ran in d while paused, no queue waited much longer than others.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_aa}; newdb $DB
for qn in a b c d; do q "insert into conveyor.queues(name) values ('$qn') on conflict do nothing"; done
URL=postgresql://postgres@127.0.0.1:5432/$DB
$CONVEYOR --database-url $URL queues pause d
# 400 jobs up front: queue by i%4, priority by (i/4)%4, a third due 0-3 s later
q "insert into public.enqueued select conveyor.enqueue('arec', jsonb_build_object('n', i, 'sleep', 0.02), (array['a','b','c','d'])[i%4+1], (i/4)%4, case when i%3=0 then now() + (i%30)*interval '100 ms' end) from generate_series(1,400) i" 
W1=$(start_worker w1 -q a,b -c 4 --poll-interval 1s)
W2=$(start_worker w2 -q b,c -c 4 --poll-interval 1s)
W3=$(start_worker w3 -q c,d,a -c 4 --poll-interval 1s)
T0=$(q "select clock_timestamp()")
# producers while draining: 300 more over ~3 s, one per statement
( for k in $(seq 1 30); do q "insert into public.enqueued select conveyor.enqueue('arec', jsonb_build_object('n', 1000+i, 'sleep', 0.01), (array['a','b','c','d'])[i%4+1], i%4) from generate_series(1,10) i" ; sleep 0.1; done ) &
PROD=$!
sleep 5
RESUMED=$(q "select clock_timestamp()")
$CONVEYOR --database-url $URL queues resume d
wait $PROD
for i in $(seq 1 60); do n=$(q "select count(*) from conveyor.jobs"); [ "$n" = 0 ] && break; sleep 1; done
echo "live jobs left: $n"
kill -TERM $W1 $W2 $W3; for p in $W1 $W2 $W3; do wait_pid $p 20; done
check
echo "== jobs of paused queue d started before resume ($RESUMED):"
q "select count(*) from public.runs r join conveyor.job_history h on h.id = r.job_id where h.queue = 'd' and r.started < '$RESUMED'"
echo "== wait per queue (started - run_at), excluding d's pause: queue, jobs, avg, max"
q "select h.queue, count(*), round(avg(extract(epoch from h.started_at - greatest(h.run_at, case when h.queue='d' then '$RESUMED'::timestamptz else h.run_at end)))::numeric,3), round(max(extract(epoch from h.started_at - greatest(h.run_at, case when h.queue='d' then '$RESUMED'::timestamptz else h.run_at end)))::numeric,3) from conveyor.job_history h group by 1 order by 1"
echo "== which worker served which queue (runs per pid, queue)"
q "select r.pid, h.queue, count(*) from public.runs r join conveyor.job_history h on h.id=r.job_id group by 1,2 order by 1,2"
grep -h "WARN\|ERROR\|Traceback" /tmp/review_$DB.w*.log | cut -c1-200 | sort | uniq -c | head
