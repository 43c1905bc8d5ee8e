#!/usr/bin/env bash
# Probe H2: more CLI input, with the probe tasks importable for producers.
. "$(dirname "$0")/common.sh"
DB=${DB:-review2_h}
export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/$DB CONVEYOR_TASKS=probe_tasks
run() { out=$(timeout 30 $CONVEYOR "$@" </dev/null 2>&1); rc=$?; tb=$(echo "$out" | grep -c Traceback); printf '%-3s tb=%s | %s | %s\n' "$rc" "$tb" "$*" "$(echo "$out" | grep -v '^  ' | tail -2 | tr '\n' ' ' | cut -c1-260)"; }
run enqueue --help
run enqueue arec --args '{"n":1,"sleep":0}' --delay 99999999d
run enqueue arec --args '{"n":1,"sleep":0}' --delay 999999999d
run enqueue arec --args '{"n":1,"sleep":0}' --delay 9999999999d
run enqueue arec --args '{"n":1,"sleep":0}' --delay 99999999999999999999999999s
run enqueue arec --args '{"n":1,"sleep":0}' --delay 1e5s
run enqueue arec --args '{"n":1,"sleep":0}' --delay 0.0000001s
run enqueue arec --args '{"n": 1e400, "sleep":0}'
run enqueue arec --args '{"n": NaN, "sleep":0}'
run enqueue arec --args '{"n": 1, "sleep":0, "zzz": 1}'
run enqueue arec --args '{"n": 1}'
run enqueue arec --args '{"n": "\u0000", "sleep":0}'
run enqueue arec --args '{"n": "\ud800", "sleep":0}'
run enqueue arec --args '{"n":1,"sleep":0}' --priority bogus
run enqueue arec --args '{"n":1,"sleep":0}' --priority 99
run enqueue arec --args '{"n":1,"sleep":0}' --priority -1
run enqueue arec --args '{"n":1,"sleep":0}' --queue "bad queue"
run enqueue arec --args '{"n":1,"sleep":0}' --queue nosuchqueue
run enqueue arec --args '{"n":1,"sleep":0}' --max-attempts 99999999999
run enqueue arec --args '{"n":1,"sleep":0}' --unique-key ""
run enqueue nosuch.task --args '{}'
run worker --tasks probe_tasks --lease 9999999999d
run worker --tasks probe_tasks --grace 9999999999d --lease 99999999999999999999s
run worker --tasks probe_tasks --poll-interval 99999999999999999999999s
run dlq purge --older-than 9999999999d --all --yes
run dlq purge --older-than 99999999999999999999999h --all --yes
run dlq purge --older-than 999999999999 --all --yes
run dlq retry --all --queue "bad queue"
run dlq list --queue "bad queue" --json
run dlq list --task "%" 
run retention --help
run retention set --help
run schedules add s1 --cron "* * * * *" --task arec --args '{"n":1,"sleep":0}' --timezone Bogus/Zone
run schedules add s1 --cron "99 * * * *" --task arec --args '{"n":1,"sleep":0}'
run schedules add "bad name" --cron "* * * * *" --task arec
run schedules trigger nosuch
run schedules remove nosuch
run queues create "x"
run queues create "$(printf 'a%.0s' {1..200})"
run jobs list --state dead --queue p --task arec --json
run jobs list --before 0
run status --queue nosuch
