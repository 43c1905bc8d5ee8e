#!/usr/bin/env bash
# Probe X: CONVEYOR_STATEMENT_TIMEOUT / CONVEYOR_LOCK_TIMEOUT set very small (0.0001 and 0.001 s).
# Expect: refused at start with one line, or a worker that still does its work.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_x}; newdb $DB
q "select conveyor.create_queue('p')" >/dev/null
for v in 0.0001 0.001; do
  q "truncate public.enqueued"
  w=$(CONVEYOR_STATEMENT_TIMEOUT=$v start_worker st$v --lease 3 -c 4 --queues p); sleep 3
  enqueue_sql 20 arec '{"n":1,"sleep":0}'; sleep 5
  echo "STATEMENT_TIMEOUT=$v: left in jobs $(q "select count(*) from conveyor.jobs"), in history $(q "select count(*) from conveyor.job_history h join public.enqueued e using (id)"); statement_timeout seen by server: $(q "select string_agg(distinct s.setting, ',') from pg_stat_activity a, lateral (select 1) x, pg_settings s where false")"
  kill -TERM $w; wait_pid $w 30
  grep -h "WARN\|ERROR" /tmp/review_$DB.st$v.log | cut -c25-200 | sort | uniq -c | sort -rn | head -4
done
