#!/usr/bin/env bash
# A row written to conveyor.jobs directly with run_at an hour ahead and no state: the state
# default is 'available' and the claim reads state only, so does it run at once?
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_k3}; newdb $DB
q "select conveyor.create_queue('p')" >/dev/null
w1=$(start_worker w1 -c 2 --queues p); sleep 3
q "with x as (insert into conveyor.jobs (queue, task, args, max_attempts, run_at) values ('p', 'arec', '{\"n\":1,\"sleep\":0}', 1, now() + interval '1 hour') returning id) insert into public.enqueued select id from x"
sleep 3
echo "== runs of the job due in an hour (expect none):"
q "select r.job_id, r.started, h.run_at from public.runs r left join conveyor.job_history h on h.id = r.job_id"
kill -TERM $w1; wait_pid $w1 20
