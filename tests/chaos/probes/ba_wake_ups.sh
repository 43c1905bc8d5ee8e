#!/bin/bash
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_ba}; newdb $DB
URL=postgresql://postgres@127.0.0.1:5432/$DB
W1=$(start_worker w1 -q p -c 20 --poll-interval 30s)
sleep 2
PROBE_URL=$URL timeout 200 $PY $ROOT/tests/chaos/probes/ba_wake_ups.py $URL
kill -TERM $W1; wait_pid $W1 20
check | sed -n 1,8p
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log | cut -c1-200 | sort | uniq -c | head
