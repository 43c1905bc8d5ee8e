#!/usr/bin/env bash
# Probe R: retention run three times at once (two CALL apply_retention(), one `conveyor
# retention apply`) while two workers ack jobs. Old history: 40000 rows over two expired days,
# half in a queue keeping finished jobs 1 h. Expect: every old row in job_runs exactly once
# (or still in job_history), every new job in job_history once, no lock wait on jobs.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_r}; newdb $DB
q "select conveyor.create_queue('p'), conveyor.create_queue('short')" >/dev/null
q "select conveyor.set_retention('short', completed_keep => interval '1 hour')" >/dev/null
q "select conveyor.ensure_history_partitions(7, now() - interval '6 days')" >/dev/null
q "insert into conveyor.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, max_attempts, priority, state, queue, task, args, errors)
   select 10000000 + i, now(), now(), now(), date_trunc('day', now() - interval '3 days') - (i % 2) * interval '2 days' + (i % 80000) * interval '1 second',
          1, 1, 2, 'completed', case when i % 3 = 0 then 'short' else 'p' end, 'arec', '{}', '[]' from generate_series(1, 40000) i"
q "create table public.old_ids as select id from conveyor.job_history"
w1=$(start_worker w1 --lease 5 -c 10 --queues p); w2=$(start_worker w2 --lease 5 -c 10 --queues p)
sleep 3
( for i in $(seq 1 20); do enqueue_sql 50 arec '{"n":1,"sleep":0.01}'; sleep 0.2; done ) &
prod=$!
( for i in $(seq 1 40); do q "select now()::time(1), mode, relation::regclass from pg_locks l join pg_stat_activity a using (pid) where not granted and a.datname = current_database()" ; sleep 0.25; done ) > /tmp/review_$DB.waits &
mon=$!
psql -qX -h 127.0.0.1 -U postgres $DB -c "CALL conveyor.apply_retention()" > /tmp/review_$DB.call1 2>&1 &
c1=$!
psql -qX -h 127.0.0.1 -U postgres $DB -c "CALL conveyor.apply_retention()" > /tmp/review_$DB.call2 2>&1 &
c2=$!
DATABASE_URL=postgresql://postgres@127.0.0.1:5432/$DB $CONVEYOR retention apply > /tmp/review_$DB.cli 2>&1 &
c3=$!
wait $c1 $c2 $c3 $prod $mon
echo "call1: $(tail -3 /tmp/review_$DB.call1 | tr '\n' ' ')"; echo "call2: $(tail -3 /tmp/review_$DB.call2 | tr '\n' ' ')"; echo "cli: $(tail -3 /tmp/review_$DB.cli | tr '\n' ' ')"
for n in $(seq 1 60); do [ "$(q "select count(*) from conveyor.jobs")" = 0 ] && break; sleep 0.5; done
kill -TERM $w1 $w2; wait_pid $w1 30; wait_pid $w2 30
check
q "select 'old ids: '||count(*)||' in runs once: '||count(*) filter (where r.n = 1 and h.id is null)||', runs twice+: '||count(*) filter (where r.n > 1)||', in history still: '||count(*) filter (where h.id is not null)||', LOST: '||count(*) filter (where r.n is null and h.id is null)
   from public.old_ids o left join (select id, count(*) n from conveyor.job_runs group by id) r on r.id = o.id left join conveyor.job_history h on h.id = o.id"
echo "== lock waits seen (relation):"; sort /tmp/review_$DB.waits | awk -F'|' '{print $2, $3}' | sort | uniq -c
