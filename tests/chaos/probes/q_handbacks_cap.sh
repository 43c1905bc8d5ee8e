#!/usr/bin/env bash
# Probe Q: one job (max_attempts 3) longer than the grace period, its worker SIGTERMed 9 times
# (a deploy each time). Expect: 5 free hand-backs, then hand-backs count; on the last attempt
# it goes to the dead-letter table (8 claims), with the error saying so; never runs twice at once.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_q}; newdb $DB
q "select conveyor.create_queue('p')" >/dev/null
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":60}', queue => 'p')"
for i in $(seq 1 9); do
  w=$(start_worker w$i --lease 5 -c 2 --grace 0.5s --queues p)
  for n in $(seq 1 100); do [ "$(q "select count(*) from public.runs")" -ge "$i" ] && break; sleep 0.1; done
  kill -TERM $w; wait_pid $w 30 >/dev/null
  echo "round $i: $(q "select coalesce((select 'live state='||state||' attempt='||attempt||' handbacks='||handbacks||' claims='||claims from conveyor.jobs where id=1), (select 'DEAD attempt='||attempt||' claims='||claims from conveyor.dead_jobs where id=1))") runs=$(q "select count(*) from public.runs")"
  [ "$(q "select count(*) from conveyor.dead_jobs")" = 1 ] && break
done
q "select e->>'attempt', e->>'counted', left(e->>'error', 110) from conveyor.dead_jobs d, jsonb_array_elements(d.errors) e"
check
