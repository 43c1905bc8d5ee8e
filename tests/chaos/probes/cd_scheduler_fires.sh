#!/bin/bash
# fire_schedule_v1 through a running `conveyor scheduler`: schedules defined 3 minutes ago
# (so fires are owed) for a task no worker ever recorded (no queue given), for a queue that
# does not exist, and for a paused queue. Expect one job per owed fire (catch-up once), in
# 'default', in the new queue (created), and in the paused queue (kept there, not run).
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_cd}; newdb $DB
URL=postgresql://postgres@127.0.0.1:5432/$DB
q "select conveyor.pause_queue('pq')"
q "select conveyor.create_schedule('s_unknown_task', '* * * * *', 'never_recorded', at => now() - interval '3 minutes')"
q "select conveyor.create_schedule('s_new_queue', '* * * * *', 'never_recorded', queue => 'brand_new', at => now() - interval '3 minutes')"
q "select conveyor.create_schedule('s_paused_queue', '* * * * *', 'arec', '{\"n\": 1, \"sleep\": 0}', queue => 'pq', at => now() - interval '3 minutes')"
cd /tmp && DATABASE_URL=$URL PYTHONPATH=$ROOT/tests/chaos/probes setsid timeout 12 $CONVEYOR scheduler --tasks probe_tasks --tick 1s > /tmp/review_$DB.sched.log 2>&1 &
sleep 9
echo "== fires"; q "select schedule, kind, fire_time::time(0), job_id is not null from conveyor.schedule_fires order by 1, 3"
echo "== jobs"; q "select id, queue, task, state, priority, max_attempts, run_at::time(0) from conveyor.jobs order by id"
echo "== queues"; q "select name, paused from conveyor.queues order by 1"
wait
grep -h "WARN\|ERROR\|Traceback" /tmp/review_$DB.sched.log | cut -c1-220 | head
