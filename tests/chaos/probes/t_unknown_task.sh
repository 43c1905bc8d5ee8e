#!/usr/bin/env bash
# Probe T: a job whose task no worker knows ('ghost', max_attempts 2) on a served queue; and a
# worker started where no task module can be imported.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_t}; newdb $DB
q "select conveyor.create_queue('p')" >/dev/null
q "insert into public.enqueued select conveyor.enqueue('ghost', '{}', queue => 'p', max_attempts => 2)"
w1=$(start_worker w1 --lease 3 -c 2 --queues p)
sleep 4
q "select 'after 1st: state='||state||' attempt='||attempt||' due in '||(run_at - now())::interval(0)||' errors='||left(errors::text, 160) from conveyor.jobs"
q "update conveyor.jobs set run_at = now() where state = 'scheduled'" >/dev/null
sleep 3
q "select 'after 2nd: live='||(select count(*) from conveyor.jobs)||' dead='||(select count(*) from conveyor.dead_jobs)"
kill -TERM $w1; wait_pid $w1 30 >/dev/null
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log | cut -c1-230
echo "== worker started in /tmp with the default --tasks (no module 'tasks' there):"
(cd /tmp && env -u PYTHONPATH timeout 10 $CONVEYOR --database-url postgresql://postgres@127.0.0.1:5432/$DB worker; echo "rc=$?") 2>&1 | tail -3
echo "== worker with --tasks '' :"
(cd /tmp && env -u PYTHONPATH timeout 10 $CONVEYOR --database-url postgresql://postgres@127.0.0.1:5432/$DB worker --tasks ''; echo "rc=$?") 2>&1 | tail -3
echo "== worker with --tasks ',' :"
(cd /tmp && env -u PYTHONPATH timeout 10 $CONVEYOR --database-url postgresql://postgres@127.0.0.1:5432/$DB worker --tasks ','; echo "rc=$?") 2>&1 | tail -3
echo "== worker with a module that imports but registers nothing (json):"
(cd /tmp && env -u PYTHONPATH timeout 10 $CONVEYOR --database-url postgresql://postgres@127.0.0.1:5432/$DB worker --tasks json; echo "rc=$?") 2>&1 | tail -3
