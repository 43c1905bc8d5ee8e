#!/bin/bash
# A worker claims its limited queues first with all its free slots, then the plain ones: a
# limited queue whose limits do not bind (concurrency 50 > the worker's 2 slots) with a
# backlog of priority-3 jobs starves priority-0 jobs of an unlimited queue on the same worker.
source "$(dirname "$0")/common.sh"
DB=review3_ri; newdb $DB
q "select conveyor.create_queue('u')" >/dev/null
q "select conveyor.set_queue_limits('p', concurrency => 50)" >/dev/null
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":0.2}', queue => 'p', priority => 3) from generate_series(1,60)" >/dev/null
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":2,\"sleep\":0.2}', queue => 'u', priority => 0) from generate_series(1,5)" >/dev/null
W1=$(start_worker w1 --queues u,p -c 2)
for i in $(seq 1 40); do n=$(q "select count(*) from conveyor.jobs"); [ "$n" = 0 ] && break; sleep 1; done
echo "order of claims: u (priority 0) jobs started after how many p (priority 3) jobs:"
q "select h.queue, (select count(*) from conveyor.job_history p where p.queue='p' and p.started_at < h.started_at) from conveyor.job_history h where h.queue='u' order by h.started_at"
kill $W1; wait_pid $W1 30
