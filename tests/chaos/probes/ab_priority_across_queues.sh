#!/bin/bash
# One worker on queues a,b,c (concurrency C), every job enqueued before it starts, priorities
# and past run_ats mixed across queues. Each claim (jobs with one started_at) must be the best
# (priority, run_at, id) of what was left: no later claim holds a job that sorts before a job
# of an earlier claim.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_ab}; newdb $DB
C=${C:-5}
for qn in a b c; do q "insert into conveyor.queues(name) values ('$qn') on conflict do nothing"; done
q "insert into public.enqueued select conveyor.enqueue('arec', jsonb_build_object('n', i, 'sleep', 0.05), (array['a','b','c'])[(i*7)%3+1], (i*5)%4, now() - ((i*37)%100) * interval '1 s') from generate_series(1,120) i"
W1=$(start_worker w1 -q a,b,c -c $C --poll-interval 1s)
for i in $(seq 1 60); do n=$(q "select count(*) from conveyor.jobs"); [ "$n" = 0 ] && break; sleep 0.5; done
kill -TERM $W1; wait_pid $W1 20
check | sed -n 1,5p
echo "== claims (by started_at): how many, and inversions between claims"
q "with h as (select id, priority, run_at, started_at, dense_rank() over (order by started_at) k from conveyor.job_history)
   select count(distinct k) claims,
          (select count(*) from h x join h y on y.k > x.k and (y.priority, y.run_at, y.id) < (x.priority, x.run_at, x.id)) inverted_pairs
   from h"
echo "== first 3 claims"
q "with h as (select id, queue, priority, run_at, started_at, dense_rank() over (order by started_at) k from conveyor.job_history)
   select k, string_agg(queue||':p'||priority||':'||to_char(run_at,'MI:SS'), ' ' order by priority, run_at, id) from h where k <= 3 group by k order by k"
