#!/usr/bin/env bash
# Probe J: one job with run_at '-infinity' (enqueued through SQL) claimed in the same batch as
# ten jobs of max_attempts=1. The claim commits in the database, but the worker cannot read
# its result (Python has no datetime for -infinity): every job of that batch is orphaned
# until its lease ends, then buried as "lease expired" without ever having run.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_j}; newdb $DB
q "select conveyor.create_queue('p')" >/dev/null
q "insert into public.enqueued select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":0}', queue => 'p', run_at => '-infinity')"
q "insert into public.enqueued select conveyor.enqueue('arec1', '{\"n\":1,\"sleep\":0}', queue => 'p', max_attempts => 1) from generate_series(1,10)"
w1=$(start_worker w1 --lease 3 -c 20)
sleep 12
kill -TERM $w1; wait_pid $w1 30
check
q "select count(*) as arec1_never_ran_but_dead from conveyor.dead_jobs d where d.task = 'arec1' and not exists (select 1 from public.runs r where r.job_id = d.id)"
q "select id, task, left(errors::text, 200) from conveyor.dead_jobs order by id limit 3"
grep -h "WARN\|ERROR" /tmp/review_$DB.w1.log | cut -c1-200 | head -5
