#!/usr/bin/env bash
# Probe H: bad input at the CLI. Each line: exit code, then the last 2 lines of output.
# Expect: "conveyor: error: ..." with exit 1, or usage errors with exit 2; never a traceback.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_h}; newdb $DB >/dev/null
export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/$DB
q "select conveyor.enqueue('arec', '{\"n\":1,\"sleep\":0}')" >/dev/null
run() { out=$(timeout 30 $CONVEYOR "$@" </dev/null 2>&1); rc=$?; tb=$(echo "$out" | grep -c Traceback); printf '%-3s tb=%s | %s | %s\n' "$rc" "$tb" "$*" "$(echo "$out" | tail -2 | tr '\n' ' ' | cut -c1-230)"; }
run jobs show abc
run jobs show -1
run jobs show 99999999999999999999999
run jobs show 9223372036854775807
run jobs show 9223372036854775808
run jobs show 1 --json
run jobs list --state bogus
run jobs list --before -1
run jobs list --before abc
run jobs list --before 99999999999999999999999
run jobs list --limit 0
run jobs list --limit -5
run jobs list --limit 100000000000
run jobs list --queue "bad queue"
run jobs list --task ""
run jobs list --since 7x
run jobs list --since -5m
run jobs list --since 99999999d
run jobs list --since 0s
run dlq list --older-than 7x
run dlq purge --older-than 7x --all --yes
run dlq purge --older-than -5m --all --yes
run dlq purge --older-than 99999999d --all --yes
run dlq purge --older-than 1e400s --all --yes
run dlq purge --older-than nans --all --yes
run dlq purge --older-than infd --all --yes
run dlq purge --all
run dlq retry 99999999999999999999999
run dlq retry -5
run dlq retry abc
run dlq retry 9223372036854775808
run dlq retry 1 1 1
run dlq retry
run dlq show abc
run dlq show 99999999999999999999999
run dlq purge 99999999999999999999999
run retention set --completed-for 7x
run retention set --completed-for 99999999d
run retention set --history-for -1d
run retention apply --budget 7x
run enqueue arec --args '{"n":1,"sleep":0}' --delay 99999999d
run enqueue arec --args '{"n":1,"sleep":0}' --delay -5m
run enqueue arec --args 'not json'
run enqueue arec --args '[1,2]'
run enqueue arec --args '{"n": 1e400}'
run enqueue arec --args '{"n": NaN}'
run enqueue arec --priority bogus
run enqueue arec --priority 99
run enqueue arec --queue "bad queue"
run enqueue arec --max-attempts 0
run enqueue arec --max-attempts 99999999999
run enqueue "" 
run --database-url 'postgresql+psycopg://postgres@127.0.0.1:5432/'$DB'?application_name=x&&&' enqueue arec --args '{"n":1,"sleep":0}'
run --database-url 'postgresql+asyncpg://postgres@127.0.0.1:5432/'$DB'?ssl=true' enqueue arec --args '{"n":1,"sleep":0}'
run --database-url 'postgresql+asyncpg://postgres@127.0.0.1:5432/'$DB'?ssl=disable' enqueue arec --args '{"n":1,"sleep":0}'
run --database-url 'postgresql+asyncpg://postgres@127.0.0.1:5432/'$DB'?prepared_statement_cache_size=0' enqueue arec --args '{"n":1,"sleep":0}'
run --database-url 'postgresql+psycopg2://postgres@127.0.0.1:5432/'$DB'?sslmode=bogus' enqueue arec --args '{"n":1,"sleep":0}'
run --database-url 'postgresql://postgres:p@ss%w0rd@127.0.0.1:5432/'$DB enqueue arec --args '{"n":1,"sleep":0}'
run --database-url 'postgresql://postgres:p%40ss@127.0.0.1:5432/'$DB enqueue arec --args '{"n":1,"sleep":0}'
run --database-url 'postgresql://postgres:%zz@127.0.0.1:5432/'$DB enqueue arec --args '{"n":1,"sleep":0}'
run --database-url 'mysql://x@y/z' enqueue arec
run --database-url 'postgresql://postgres@127.0.0.1:1/'$DB enqueue arec
run --database-url 'postgresql://postgres@127.0.0.1:5432/nonexistent_db' enqueue arec
run --database-url '' enqueue arec
run --database-url 'postgresql://postgres@127.0.0.1:5432/'$DB'?options=-c%20statement_timeout%3Dbogus' status
run --database-url 'postgresql://postgres@127.0.0.1:5432/'$DB --schema 'bad"schema' status
run --database-url 'postgresql://postgres@127.0.0.1:5432/'$DB --schema nonexistent status
run --database-url 'postgresql://postgres@127.0.0.1:5432/'$DB --schema nonexistent jobs show 1
run status --json
run queues pause "bad queue"
run schedules add x --cron "bogus" --task arec
run worker --tasks probe_tasks --lease 0s
run worker --tasks probe_tasks --lease 7x
run worker --tasks probe_tasks --concurrency 0
run worker --tasks nonexistent_module
run worker --tasks probe_tasks --queues "bad queue"
run worker --tasks probe_tasks --poll-interval 0s
