#!/bin/bash
# Jobs in every table (available, scheduled, unique key, history, dead, a schedule), then
# migrate --downgrade 0003_job_domains and back to head: are the rows intact (a fingerprint
# of each table before and after), and does a worker then run every job once?
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_cc}; newdb $DB
URL=postgresql://postgres@127.0.0.1:5432/$DB
q "insert into public.enqueued select conveyor.enqueue('arec', jsonb_build_object('n', i, 'sleep', 0), 'p', i%4, case when i%5=0 then now() + interval '3 s' end, case when i%7=0 then 'u'||i end) from generate_series(1,200) i" >/dev/null 2>&1 || q "insert into conveyor.queues(name) values ('p')"
q "insert into public.enqueued select conveyor.enqueue('arec', jsonb_build_object('n', i, 'sleep', 0), 'p', i%4, case when i%5=0 then now() + interval '3 s' end, case when i%7=0 then 'u'||i end) from generate_series(1,200) i" >/dev/null
# some history and dead rows: run 50 fail_after jobs (max_attempts 1 -> dead) and 50 arec
q "insert into public.enqueued select conveyor.enqueue('fail_after', '{\"sleep\": 0}', 'p') from generate_series(1,20)" >/dev/null
W=$(start_worker w0 -q p -c 8); sleep 4; kill -TERM $W; wait_pid $W 20
# live jobs across the downgrade: due, scheduled (+8 s), unique keys, all priorities
q "insert into public.enqueued select conveyor.enqueue('arec', jsonb_build_object('n', i, 'sleep', 0), 'p', i%4, case when i%3=0 then now() + interval '8 s' end, case when i%5=0 then 'live'||i end) from generate_series(1,100) i" >/dev/null
q "select conveyor.create_schedule('every_min', '* * * * *', 'arec', '{\"n\": 0, \"sleep\": 0}')" >/dev/null 2>&1 || echo "(create_schedule signature differs)"
fp() { q "select 'jobs', count(*), md5(string_agg(row(id,queue,task,args,state,priority,run_at,max_attempts,unique_key,attempt,claims,errors)::text, ',' order by id)) from conveyor.jobs
          union all select 'history', count(*), md5(string_agg(row(id,queue,task,args,state,attempt,result,errors)::text, ',' order by id)) from conveyor.job_history
          union all select 'dead', count(*), md5(string_agg(row(id,queue,task,args,attempt,claims,errors)::text, ',' order by id)) from conveyor.dead_jobs
          union all select 'schedules', count(*), md5(string_agg(row(name,task,args)::text, ',' order by name)) from conveyor.schedules"; }
echo "== before"; fp | tee /tmp/review2_cc.before
$CONVEYOR --database-url $URL migrate --downgrade 0003_job_domains; echo "downgrade rc=$?"
$CONVEYOR --database-url $URL migrate --show
echo "== at 0003"; fp | tee /tmp/review2_cc.mid
echo "== a head worker against the 0003 schema (should refuse, not bury jobs):"
W=$(start_worker w1 -q p -c 4); sleep 4; kill -TERM $W 2>/dev/null; wait_pid $W 10; head -c 600 /tmp/review_$DB.w1.log; echo
echo "== SQL enqueue at 0003:"; q "select conveyor.enqueue('arec', '{\"n\": 9, \"sleep\": 0}', 'p')" 2>&1 | head -2
$CONVEYOR --database-url $URL migrate; echo "upgrade rc=$?"; $CONVEYOR --database-url $URL migrate --show
echo "== after"; fp | tee /tmp/review2_cc.after
diff /tmp/review2_cc.before /tmp/review2_cc.after && echo "IDENTICAL fingerprints"
W=$(start_worker w2 -q p -c 8); for i in $(seq 1 30); do n=$(q "select count(*) from conveyor.jobs"); [ "$n" = 0 ] && break; sleep 1; done
kill -TERM $W; wait_pid $W 20
echo "live jobs left: $n"
check | sed -n 1,12p
grep -h "WARN\|ERROR" /tmp/review_$DB.w2.log | cut -c1-200 | sort | uniq -c | head
