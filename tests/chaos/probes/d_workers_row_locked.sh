#!/usr/bin/env bash
# Probe D: the heartbeat writes the workers row first and extends job leases only if that
# succeeded. A transaction holding the workers rows (FOR UPDATE) longer than a lease keeps
# every running job's lease from being extended: are running jobs rescued and run twice?
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_d}; newdb $DB
w1=$(start_worker w1 --lease 3 -c 4); w2=$(start_worker w2 --lease 3 -c 4)
sleep 3
enqueue_sql 6 arec '{"n":1,"sleep":14}'
sleep 1.5
psql -qX -h 127.0.0.1 -U postgres $DB -c "begin; select id from conveyor.workers for update; select pg_sleep(9); commit;" >/dev/null
sleep 18
kill -TERM $w1 $w2; wait $w1 $w2 2>/dev/null
check
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log | cut -c1-250 | head -30
