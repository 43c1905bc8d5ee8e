#!/usr/bin/env bash
# Probe L: a job whose errors array holds an entry append_error_v1 cannot sum ({"dropped": "x"}
# at position 3, written by hand) and whose lease has expired, beside an ordinary expired job.
# rescue_expired_jobs rescues both in one statement: does the odd row block the other's rescue?
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_l}; newdb $DB
q "select conveyor.create_queue('p')" >/dev/null
q "insert into conveyor.jobs (queue, task, args, max_attempts, state, worker_id, lease_expires_at, attempt, claims, errors)
   values ('p', 'arec', '{\"n\":1,\"sleep\":0}', 3, 'running', gen_random_uuid(), now() - interval '1 hour', 1, 1,
           '[1,2,3,{\"dropped\":\"x\"},5,6,7,8,9,10,11]') returning id" 
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":2,\"sleep\":0}', queue => 'p')"
q "update conveyor.jobs set state='running', worker_id=gen_random_uuid(), lease_expires_at=now() - interval '1 minute', attempt=1, claims=1 where id = 2"
w1=$(start_worker w1 --lease 3 -c 4)
sleep 8
q "select id, state, attempt, lease_expires_at < now() as expired from conveyor.jobs order by id"
kill -TERM $w1; wait_pid $w1 30
check
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log | cut -c1-250 | sort | uniq -c | head
