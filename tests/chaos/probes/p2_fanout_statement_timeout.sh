#!/usr/bin/env bash
# Probe P2: a job (max_attempts=1) fanning out 700000 follow-up jobs, written in its ack,
# with CONVEYOR_STATEMENT_TIMEOUT=1. The task succeeded: expect it completed, never dead.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_p2}; newdb $DB
q "select conveyor.create_queue('p'), conveyor.create_queue('kids')" >/dev/null
q "create function public.slow_ack() returns trigger language plpgsql as \$\$ begin if new.args->>'n' = '777' then perform pg_sleep(1.5); end if; return new; end \$\$"
for p in $(q "select relname from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'conveyor.job_history'::regclass"); do
  q "create trigger slow_ack before insert on conveyor.$p for each row execute function public.slow_ack()"; done
export CONVEYOR_STATEMENT_TIMEOUT=1
w1=$(start_worker w1 --lease 5 -c 4 --queues p)
w2=$(start_worker w2 --lease 5 -c 4 --queues p)
sleep 3

q "insert into public.enqueued select conveyor.enqueue('fanout', '{\"k\":700000}', queue => 'p')"
sleep 40
kill -TERM $w1 $w2; wait_pid $w1 30; wait_pid $w2 30
check
q "select id, task, left(errors::text, 300) from conveyor.dead_jobs"
q "select count(*) as kids from conveyor.jobs where queue = 'kids'"
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log | cut -c1-260 | head -20
