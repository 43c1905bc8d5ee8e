#!/usr/bin/env bash
# Variation of probe P: the completion INSERT of one job (max_attempts 1, it succeeded) outlasts
# CONVEYOR_STATEMENT_TIMEOUT (1 s) only its first 3 times, then is fast. Expect: completed
# once, in history once, never dead, never run twice; and 30 ordinary jobs around it likewise.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_p3}; newdb $DB
q "select conveyor.create_queue('p')" >/dev/null
# a sequence is not rolled back with the cancelled statement: the first 3 inserts are slow
q "create sequence public.slow_seq"
q "create function public.slow_ack() returns trigger language plpgsql as \$\$ begin if new.args->>'n' = '777' and nextval('public.slow_seq') <= 3 then perform pg_sleep(1.5); end if; return new; end \$\$"
for p in $(q "select relname from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'conveyor.job_history'::regclass"); do
  q "create trigger slow_ack before insert on conveyor.$p for each row execute function public.slow_ack()"; done
export CONVEYOR_STATEMENT_TIMEOUT=1
w1=$(start_worker w1 --lease 5 -c 4 --queues p)
w2=$(start_worker w2 --lease 5 -c 4 --queues p)
sleep 3
q "insert into public.enqueued select conveyor.enqueue('arec1', '{\"n\":777,\"sleep\":0}', queue => 'p')"
enqueue_sql 30 arec1 '{"n":1,"sleep":0.2}'
for i in $(seq 1 40); do n=$(q "select count(*) from conveyor.jobs"); [ "$n" = 0 ] && break; sleep 1; done
echo "live jobs left: $n"
kill -TERM $w1 $w2; wait_pid $w1 30; wait_pid $w2 30
check
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log | cut -c25-200 | sort | uniq -c | head -20
