-- Leader election and the schedules the leader fires. Leadership is a lease row; firing is
-- made exactly-once by schedule_fires' unique (schedule, fire_time), not by leadership.

-- name: leader_attempt
-- Become (or stay) the leader of a role: take the lease if it is free or expired, extend it
-- if it is ours. Returns a row only if this holder leads afterwards. renewed_at records
-- every successful attempt: for the scheduler, which attempts once a tick, its last tick.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
)
INSERT INTO {schema}.leaders AS l (role, holder, hostname, pid, elected_at, expires_at, renewed_at)
SELECT %(role)s, %(holder)s, %(hostname)s, %(pid)s, clock.now, clock.now + %(ttl)s::interval, clock.now FROM clock
ON CONFLICT (role) DO UPDATE
SET holder = excluded.holder,
    hostname = excluded.hostname,
    pid = excluded.pid,
    elected_at = CASE WHEN l.holder = excluded.holder THEN l.elected_at ELSE excluded.elected_at END,
    expires_at = excluded.expires_at,
    renewed_at = excluded.renewed_at
WHERE l.holder = excluded.holder OR l.expires_at < excluded.elected_at
RETURNING l.elected_at, l.expires_at;

-- name: leader_resign
-- Give the lease up (a clean stop), so another process takes over at once.
DELETE FROM {schema}.leaders WHERE role = %(role)s AND holder = %(holder)s;

-- name: leader_current
-- Who leads a role, and until when.
SELECT holder, hostname, pid, elected_at, expires_at FROM {schema}.leaders WHERE role = %(role)s;

-- name: take_due_schedule
-- Lock the next schedule that is due (or has no next fire time yet), skipping any that
-- another scheduler holds and any this round already failed on. Run inside the
-- transaction that fires it.
SELECT name, cron, timezone, catch_up, next_fire_at, last_fire_at, resumed, defined_at,
       coalesce(%(now)s::timestamptz, now()) AS now
FROM {schema}.schedules
WHERE NOT paused AND error IS NULL AND name <> ALL (%(skip)s::text[])
  AND (next_fire_at IS NULL OR next_fire_at <= coalesce(%(now)s::timestamptz, now()))
ORDER BY next_fire_at NULLS FIRST, name
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: fire_schedule
-- One fire: its row in schedule_fires and its job. NULL when that fire time fired already.
SELECT {schema}.fire_schedule_v1(%(name)s, %(fire_time)s, %(kind)s, %(window_end)s, %(now)s::timestamptz);

-- name: advance_schedule
-- Record a schedule's next fire time (and its last, when it fired).
UPDATE {schema}.schedules
SET next_fire_at = %(next_fire_at)s, last_fire_at = coalesce(%(last_fire_at)s, last_fire_at), error = NULL,
    resumed = false
WHERE name = %(name)s;

-- name: schedule_failed
-- Stop firing a schedule whose fire times cannot be computed, and say why.
UPDATE {schema}.schedules SET error = %(error)s, updated_at = now() WHERE name = %(name)s;

-- name: next_schedule_due
-- When the scheduler has work next: now if a schedule awaits its first fire time.
SELECT bool_or(next_fire_at IS NULL), min(next_fire_at), coalesce(%(now)s::timestamptz, now())
FROM {schema}.schedules WHERE NOT paused AND error IS NULL;

-- name: sync_schedules
-- Make the schedules declared in code what the code says, keeping an operator's pause. With
-- prune, also forget code schedules this code does not declare. Returns (upserted, removed).
WITH declared AS (
    SELECT * FROM unnest(%(names)s::text[], %(crons)s::text[], %(timezones)s::text[], %(tasks)s::text[],
                         %(args)s::text[], %(queues)s::text[], %(priorities)s::smallint[],
                         %(max_attempts)s::integer[], %(catch_ups)s::text[])
         AS d (name, cron, timezone, task, args, queue, priority, max_attempts, catch_up)
), removed AS (
    DELETE FROM {schema}.schedules s
    WHERE %(prune)s AND s.declared_in_code AND s.name <> ALL (%(names)s::text[])
    RETURNING s.name
), upserted AS (
    INSERT INTO {schema}.schedules AS s
        (name, cron, timezone, task, args, queue, priority, max_attempts, catch_up, declared_in_code, defined_at)
    SELECT name, cron, timezone, task, args::jsonb, queue, priority, max_attempts, catch_up, true,
           coalesce(%(now)s::timestamptz, now())
    FROM declared
    ON CONFLICT (name) DO UPDATE
    SET cron = excluded.cron, timezone = excluded.timezone, task = excluded.task, args = excluded.args,
        queue = excluded.queue, priority = excluded.priority, max_attempts = excluded.max_attempts,
        catch_up = excluded.catch_up, declared_in_code = true, error = NULL, updated_at = now(),
        next_fire_at = CASE WHEN s.cron = excluded.cron AND s.timezone = excluded.timezone AND s.error IS NULL
                            THEN s.next_fire_at END,
        defined_at = CASE WHEN s.cron = excluded.cron AND s.timezone = excluded.timezone AND s.error IS NULL
                          THEN s.defined_at ELSE excluded.defined_at END
    RETURNING s.name
)
SELECT (SELECT count(*) FROM upserted), (SELECT count(*) FROM removed),
       pg_notify(%(channel)s, '#schedules') IS NOT NULL AS notified;

-- name: list_schedules
-- Every schedule.
SELECT name, cron, timezone, task, args, queue, priority, max_attempts, catch_up, paused,
       declared_in_code, next_fire_at, last_fire_at, error
FROM {schema}.schedules ORDER BY name;

-- name: lock_schedule
-- A schedule's definition, its row locked for the rest of the transaction (a change of some
-- fields: read, merged and redefined while no other change can come between).
SELECT cron, task, args, timezone, queue, priority, max_attempts, catch_up
FROM {schema}.schedules WHERE name = %(name)s
FOR UPDATE;

-- name: create_schedule
-- Create (or with replace, redefine) a schedule; the SQL function checks everything.
SELECT {schema}.create_schedule_v1(%(name)s, %(cron)s, %(task)s, %(args)s::jsonb, %(timezone)s, %(queue)s,
                                %(priority)s, %(max_attempts)s, %(catch_up)s, %(replace)s, %(now)s::timestamptz);

-- name: pause_schedule
-- Stop a schedule firing.
SELECT {schema}.pause_schedule_v1(%(name)s);

-- name: resume_schedule
-- Let a schedule fire again (its catch-up policy deals with what it missed).
SELECT {schema}.resume_schedule_v1(%(name)s);

-- name: trigger_schedule
-- Enqueue a schedule's job now, leaving its cadence alone; returns the job id.
SELECT {schema}.trigger_schedule_v1(%(name)s);

-- name: remove_schedule
-- Delete a schedule.
SELECT {schema}.remove_schedule_v1(%(name)s);

-- name: schedule_fires
-- The latest fires of a schedule.
SELECT fire_time, kind, window_end, job_id, fired_at
FROM {schema}.schedule_fires WHERE schedule = %(name)s
ORDER BY fired_at DESC, id DESC LIMIT %(limit)s;
