#!/bin/bash
# One worker (-q hi,lo, concurrency 2) while 'hi' is fed priority-0 jobs faster than it drains
# them, and 'lo' holds 10 older priority-2 jobs. With strict priority across queues, how long
# does 'lo' wait? (Docs say "highest priority first" but nothing of starving other queues.)
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_ae}; newdb $DB
for qn in hi lo; do q "insert into conveyor.queues(name) values ('$qn')"; done
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\": 0, \"sleep\": 0.1}', 'lo', 2) from generate_series(1,10)"
W1=$(start_worker w1 -q hi,lo -c 2 --poll-interval 1s)
( for k in $(seq 1 60); do q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\": 1, \"sleep\": 0.1}', 'hi', 0) from generate_series(1,6)"; sleep 0.2; done ) &
PROD=$!
wait $PROD
echo "== during 12 s of hi load: lo jobs run, hi jobs run"
q "select h.queue, count(*) from conveyor.job_history h group by 1 order by 1"
for i in $(seq 1 40); do n=$(q "select count(*) from conveyor.jobs"); [ "$n" = 0 ] && break; sleep 1; done
kill -TERM $W1; wait_pid $W1 20
echo "== lo: first start relative to its enqueue"
q "select queue, round(min(extract(epoch from started_at - enqueued_at))::numeric, 2), round(max(extract(epoch from started_at - enqueued_at))::numeric, 2) from conveyor.job_history group by 1"
