#!/usr/bin/env bash
# Probe V: SIGTERM while a finished job's write waits on a lock of job_history (held 30 s).
# The stopping worker gives up writing after 10 s and exits; the job (max_attempts 1) that
# succeeded is then rescued by another worker when its lease ends.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_v}; newdb $DB
w1=$(start_worker w1 --lease 3 -c 2); sleep 3
( psql -qX -h 127.0.0.1 -U postgres $DB -c "begin; lock table conveyor.job_history in access exclusive mode; select pg_sleep(30); commit;" >/dev/null ) &
locker=$!
sleep 0.5
enqueue_sql 1 arec1 '{"n":1,"sleep":0.2}'
sleep 2
kill -TERM $w1; wait_pid $w1 40
w2=$(start_worker w2 --lease 3 -c 2)
wait $locker; sleep 5
kill -TERM $w2; wait_pid $w2 30 >/dev/null
check
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log | cut -c1-220
