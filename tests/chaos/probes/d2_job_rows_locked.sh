#!/usr/bin/env bash
# Variation of probe D: instead of the workers rows, a transaction holds the running jobs'
# rows (FOR NO KEY UPDATE, as a careless report or admin UPDATE would) for 3 leases. Heartbeat
# and rescue both wait on the same rows; when the lock goes, is any job run twice?
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_d2}; newdb $DB
w1=$(start_worker w1 --lease 3 -c 4); w2=$(start_worker w2 --lease 3 -c 4)
sleep 3
enqueue_sql 6 arec '{"n":1,"sleep":14}'
sleep 1.5
psql -qX -h 127.0.0.1 -U postgres $DB -c "begin; select id from conveyor.jobs where state = 'running' for no key update; select pg_sleep(9); commit;" >/dev/null
sleep 18
kill -TERM $w1 $w2; wait $w1 $w2 2>/dev/null
check
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log | cut -c1-200 | sort | uniq -c | head -20
