#!/usr/bin/env bash
# Probe B: as A, but long jobs (8 s, lease 2 s) run beside short ones whose writes wait on a
# lock of job_history held 15 s. The completer's DELETE holds row locks on jobs the heartbeat
# also extends: does the heartbeat stall long enough for a rescue to take a running job?
. "$(dirname "$0")/common.sh"
DB=review2_b; newdb $DB
w1=$(start_worker w1 --lease 2 -c 6); w2=$(start_worker w2 --lease 2 -c 6)
sleep 3
enqueue_sql 6 arec1 '{"n":1,"sleep":8}'
sleep 0.5
( psql -qX -h 127.0.0.1 -U postgres $DB -c "begin; lock table conveyor.job_history in access exclusive mode; select pg_sleep(15); commit;" >/dev/null ) &
locker=$!
sleep 0.3
enqueue_sql 6 arec1 '{"n":1,"sleep":0.1}'
wait $locker
sleep 10
kill -TERM $w1 $w2; wait $w1 $w2 2>/dev/null
check
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log | cut -c1-220 | sort | uniq -c | sort -rn | head -30
