#!/bin/bash
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_bb}; newdb $DB
URL=postgresql://postgres@127.0.0.1:5432/$DB
W1=$(start_worker w1 -q p -c 20 --poll-interval 30s)
sleep 2
PROBE_URL=$URL timeout 360 $PY $ROOT/tests/chaos/probes/bb_wake_up_lost.py $URL 2>&1 | grep -v discarding
kill -TERM $W1; wait_pid $W1 20
