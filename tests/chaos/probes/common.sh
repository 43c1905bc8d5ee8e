# Shared helpers for the probes: each makes its own database on 127.0.0.1:5432.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
CONVEYOR=$ROOT/.venv/bin/conveyor
PY=$ROOT/.venv/bin/python
export PYTHONPATH=$ROOT/tests/chaos/probes
newdb() {  # newdb NAME: fresh database, migrated, with the probe tables
  dropdb -h 127.0.0.1 -U postgres --if-exists "$1" >/dev/null 2>&1
  createdb -h 127.0.0.1 -U postgres "$1"
  $CONVEYOR --database-url "postgresql://postgres@127.0.0.1:5432/$1" migrate >/dev/null
  psql -qX -h 127.0.0.1 -U postgres "$1" -c "create table public.runs(id bigserial primary key, job_id bigint, attempt int, pid int, kind text, started timestamptz, finished timestamptz); create table public.enqueued(id bigint primary key)"
}
q() { psql -qX -h 127.0.0.1 -U postgres "$DB" -At -c "$1"; }
enqueue_sql() {  # enqueue_sql N TASK ARGS_JSON
  q "insert into public.enqueued select conveyor.enqueue('$2', '$3'::jsonb) from generate_series(1,$1)" >/dev/null
}
start_worker() {  # start_worker LOGNAME extra-args...: prints pid
  local name=$1; shift
  PROBE_URL="postgresql://postgres@127.0.0.1:5432/$DB" setsid $CONVEYOR --database-url "postgresql://postgres@127.0.0.1:5432/$DB" worker --tasks probe_tasks "$@" > /tmp/review_$DB.$name.log 2>&1 &
  echo $!
}
check() { psql -qX -h 127.0.0.1 -U postgres "$DB" -f $ROOT/tests/chaos/probes/check.sql; }
wait_pid() {  # wait_pid PID TIMEOUT: waits for a non-child to exit; prints seconds waited
  local t0=$(date +%s.%N) n=0
  while kill -0 "$1" 2>/dev/null && [ $n -lt $(( $2 * 10 )) ]; do sleep 0.1; n=$((n+1)); done
  if kill -0 "$1" 2>/dev/null; then echo "pid $1 STILL RUNNING after $2 s"; else echo "pid $1 exited after $(echo "$(date +%s.%N) - $t0" | bc) s"; fi
}
