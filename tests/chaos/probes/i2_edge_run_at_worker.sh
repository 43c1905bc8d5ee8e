#!/usr/bin/env bash
# Variation of probe I: jobs at the very edges the new rule accepts (0001-01-02 00:00 UTC, due
# long ago; 9999-12-30 23:59:59.999999 UTC, scheduled) beside ordinary jobs, with the worker's
# session in an extreme time zone (PGTZ=Pacific/Kiritimati, +14). Expect: the old one runs, the
# far one stays scheduled, the worker neither crashes nor stalls on its sleep until it is due.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_i2}; newdb $DB
export PGTZ=Pacific/Kiritimati
w1=$(start_worker w1 --lease 5 -c 4)
sleep 3
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":0}', run_at => '0001-01-02 00:00:00+00')"
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":2,\"sleep\":0}', run_at => '9999-12-30 23:59:59.999999+00')"
enqueue_sql 10 arec '{"n":3,"sleep":0}'
sleep 4
q "select id, state, run_at from conveyor.jobs"
enqueue_sql 10 arec '{"n":4,"sleep":0}'
sleep 3
echo "== CLI reads the far job (jobs show / list):"
DATABASE_URL=postgresql://postgres@127.0.0.1:5432/$DB timeout 20 $CONVEYOR jobs list 2>&1 | head -5
kill -TERM $w1; wait_pid $w1 30
check | sed -n 1,8p
grep -h "WARN\|ERROR\|Traceback" /tmp/review_$DB.w1.log | cut -c1-250 | sort | uniq -c | sort -rn | head
