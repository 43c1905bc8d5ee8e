#!/bin/bash
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_cb}; newdb $DB
URL=postgresql://postgres@127.0.0.1:5432/$DB
W1=$(start_worker w1 -q p -c 4 --poll-interval 1s)
W2=$(start_worker w2 -q p -c 4 --poll-interval 1s)
sleep 2
PROBE_URL=$URL timeout 120 $PY $ROOT/tests/chaos/probes/cb_unique_key_churn.py $URL ${SECONDS_:-20}
kill -TERM $W1 $W2; wait_pid $W1 20; wait_pid $W2 20
echo "== overlapping executions / twice"; psql -qX -h 127.0.0.1 -U postgres $DB -f $ROOT/tests/chaos/probes/check.sql | sed -n '/overlapping/,/ran more/p' | head -8
grep -h "WARN\|ERROR" /tmp/review_$DB.w*.log | cut -c1-200 | sort | uniq -c | head
