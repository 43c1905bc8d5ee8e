#!/usr/bin/env bash
# Probe A: job_history locked (ACCESS EXCLUSIVE) for 8 s while jobs of max_attempts=1 finish
# on two workers with --lease 2. Expect: every job in history once, ran once, none dead.
. "$(dirname "$0")/common.sh"
DB=review2_a; newdb $DB
w1=$(start_worker w1 --lease 2 -c 5); w2=$(start_worker w2 --lease 2 -c 5)
sleep 3
( psql -qX -h 127.0.0.1 -U postgres $DB -c "begin; lock table conveyor.job_history in access exclusive mode; select pg_sleep(8); commit;" ) &
locker=$!
sleep 0.5
enqueue_sql 30 arec1 '{"n":1,"sleep":0.3}'
wait $locker
sleep 6
kill -TERM $w1 $w2; wait $w1 $w2 2>/dev/null
check
grep -ci "lease lost\|fenced\|write_error\|recording" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log
