#!/bin/bash
# Abort/cancel racing claim, completion, retry, a worker's SIGTERM and a SIGKILL (lease 3s).
source "$(dirname "$0")/common.sh"
DB=review3_re; newdb $DB
q "select conveyor.set_queue_limits('p', concurrency => 6)" >/dev/null
W1=$(start_worker w1 --queues p --lease 3s -c 4 --grace 1s)
W2=$(start_worker w2 --queues p --lease 3s -c 4 --grace 1s)
W3=$(start_worker w3 --queues p --lease 3s -c 4 --grace 1s)
$PY re_abort_races.py "postgresql://postgres@127.0.0.1:5432/$DB" &
PYPID=$!
sleep 8; kill -TERM $W1; sleep 5; kill -9 $W2; W4=$(start_worker w4 --queues p --lease 3s -c 4)
wait $PYPID
for i in $(seq 1 60); do n=$(q "select count(*) from conveyor.jobs"); [ "$n" = 0 ] && break; sleep 1; done
echo "live left: $n"; q "select state, abort_requested_at is not null, count(*) from conveyor.jobs group by 1,2"
echo "== answers"; q "select what, split_part(answer, ':', 1), count(*) from public.acts group by 1,2 order by 1,2"
echo "== cancelled 'before it ran' but an execution exists"
q "select h.id, left(h.errors::text, 200) from conveyor.job_history h where h.state='cancelled' and h.errors::text like '%before it ran%' and exists (select 1 from public.runs r where r.job_id=h.id and r.attempt = h.attempt)" 
echo "== executions started after an abort/cancel answered 'cancelled' or 'aborting' (claim after the stop)"
q "select a.job_id, a.what, a.answer, a.at, r.started, r.attempt, r.pid from public.acts a join public.runs r on r.job_id=a.job_id where a.answer in ('cancelled','aborting') and r.started > a.at + interval '50 ms' limit 10"
echo "== aborted jobs by outcome"
q "select coalesce(h.state, 'dead:'||(d.id is not null)), count(*) from public.acts a left join conveyor.job_history h on h.id=a.job_id left join conveyor.dead_jobs d on d.id=a.job_id where a.answer='aborting' group by 1"
kill $W3 $W4; wait_pid $W3 30; wait_pid $W4 30
check
