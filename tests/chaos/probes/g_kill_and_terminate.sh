#!/usr/bin/env bash
# Probe G: a drain of 600 short jobs (max_attempts 3) on two workers (--lease 3), while
#  - w1 is SIGKILLed mid-drain and started again,
#  - every 1.5 s all backends of the workers are terminated (pg_terminate_backend), 5 times.
# Expect: all 600 in history exactly once; jobs run twice only when their first run was on
# the SIGKILLed process.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_g}; newdb $DB
w1=$(start_worker w1 --lease 3 -c 20); w2=$(start_worker w2 --lease 3 -c 20)
sleep 3
enqueue_sql 600 arec '{"n":1,"sleep":0.05}'
sleep 1
kill -KILL $w1; killed=$w1; echo "killed $w1"
for i in 1 2 3 4 5; do
  q "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = current_database() and application_name like '%conveyor%' or (datname = current_database() and pid <> pg_backend_pid() and query not like '%runs%' and backend_type = 'client backend')"
  sleep 1.5
done
w1=$(start_worker w1b --lease 3 -c 20)
for i in $(seq 1 60); do left=$(q "select count(*) from conveyor.jobs"); [ "$left" = 0 ] && break; sleep 1; done
echo "left in jobs: $left"
kill -TERM $w1 $w2; wait_pid $w1 30; wait_pid $w2 30
check
echo "== jobs run twice whose earlier run was NOT on the killed pid $killed"
q "select r.job_id, array_agg(r.pid||':'||r.attempt||':'||coalesce(r.finished::time(2)::text,'-') order by r.started) from public.runs r group by r.job_id having count(*) > 1 and min(r.started) filter (where r.pid = $killed) is null limit 20"
grep -h "ERROR\|Traceback" /tmp/review_$DB.*.log | cut -c1-220 | sort | uniq -c | head -20
