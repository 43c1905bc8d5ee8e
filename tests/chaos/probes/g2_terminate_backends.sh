#!/usr/bin/env bash
# Probe G2: 2000 jobs of 0.2 s (max_attempts 3) on two workers (--lease 3, -c 20), while every
# second for 15 s every backend of the database except this script's is terminated
# (pg_terminate_backend): claims, acks, heartbeats and LISTEN all lose their connections.
# Expect: all in history exactly once; a job runs twice only if a rescue took it (logged).
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_g2}; newdb $DB
w1=$(start_worker w1 --lease 3 -c 20); w2=$(start_worker w2 --lease 3 -c 20)
sleep 3
enqueue_sql 2000 arec '{"n":1,"sleep":0.2}'
for i in $(seq 1 15); do
  q "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend' and query not like '%public.runs%'" >/dev/null
  sleep 1
done
for n in $(seq 1 120); do [ "$(q "select count(*) from conveyor.jobs")" = 0 ] && break; sleep 1; done
echo "left in jobs: $(q "select count(*) from conveyor.jobs")"
kill -TERM $w1 $w2; wait_pid $w1 30; wait_pid $w2 30
check
echo "== rescues logged: $(grep -c 'lease expired' /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log | tr '\n' ' ')"
echo "== jobs run twice without a rescue of that job logged:"
for j in $(q "select job_id from public.runs group by job_id having count(*) > 1"); do grep -q "job $j (arec on p) attempt .*lease expired" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log || echo "  job $j"; done | head
grep -h "ERROR\|Traceback" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log | cut -c1-200 | sort | uniq -c | head
grep -h "WARN" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log | cut -c25-120 | sort | uniq -c | sort -rn | head
