#!/usr/bin/env bash
# Probe Z: a batch of outcomes with completions and burials while conveyor.dead_jobs is locked
# (DDL, VACUUM FULL, LOCK TABLE) for 12 s, --lease 3. complete_jobs deletes (row-locks) the
# completed jobs, then bury_jobs waits for dead_jobs; the heartbeat's UPDATE of those rows
# waits behind them, so running jobs with higher ids get no lease extension: rescued while running?
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_z}; newdb $DB
w1=$(start_worker w1 --lease 3 -c 12); w2=$(start_worker w2 --lease 3 -c 12)
sleep 3
enqueue_sql 4 arec1 '{"n":1,"sleep":1.5}'
enqueue_sql 4 fail_after '{"sleep":1.5}'
enqueue_sql 6 arec '{"n":1,"sleep":14}'
sleep 0.5
psql -qX -h 127.0.0.1 -U postgres $DB -c "begin; lock table conveyor.dead_jobs in access exclusive mode; select pg_sleep(12); commit;" >/dev/null
sleep 12
kill -TERM $w1 $w2; wait_pid $w1 30; wait_pid $w2 30
check
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log /tmp/review_$DB.w2.log | cut -c1-200 | sort -k2 | head -20
