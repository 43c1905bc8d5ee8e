-- Queue limits: rate limits, concurrency caps, and both per key inside a queue, enforced by
-- the database for every worker at once (docs/limits.md; functions in
-- sql/migrations/0008_limits.up.sql).
--
-- Design
-- ------
-- A queue with any limit set is *limited* (queues.limited, a generated column). The plain
-- claims (claim_jobs, claim_jobs_across_queues) skip limited queues: one more test on the
-- queue row they already read, and nothing else on the hot path. A limited queue is claimed
-- by claim_limited_v1, one statement, which:
--   1. locks the queue's row (FOR UPDATE): the claims of that queue run one at a time, so
--      what it counts stays true until it commits; other queues are not touched;
--   2. reads its clock after that lock (the injected one, else clock_timestamp()), so the
--      claims of a queue see ever later clocks and every window stays ordered. Windows are
--      judged at that reading; the jobs taken are stamped (and windows charged) at a second
--      reading taken after every count, so no start is stamped before the end of a job it
--      replaced (judging at the earlier time is conservative: starts only leave a window
--      between the two readings, none enter while the lock is held);
--   3. computes the queue's allowance: min(asked, concurrency - running, rate_limit - starts
--      in the window). Running jobs are counted through jobs_leases (the running set is
--      bounded by the workers' slots). A queue without per-key limits is then read level by
--      level from the worker's cursors, as claim_jobs reads a queue (dead index entries
--      before a cursor are not walked again);
--   4. for keyed limits, walks the keys that have waiting jobs with a loose index scan of
--      jobs_key_claim (one probe per key, however long its backlog: a saturated key is
--      skipped in one step, so it cannot block the keys behind it; a key with no share is
--      not read further), gives each key
--      min(key_concurrency - its running jobs, key_rate_limit - its window) jobs from the
--      head of its own range, and merges them across keys in (priority, run_at, id) order up
--      to the allowance. Jobs without a key count against the queue's limits only;
--   5. locks the rows taken (FOR UPDATE SKIP LOCKED) and marks them running as claim_jobs
--      does (same columns, same RETURNING shape);
--   6. appends the taken jobs' start times to the windows (queue: key '', each key: its own),
--      keeping only starts within the period and at most the limit's count. A window is
--      run-length encoded (rate_windows.counts: one entry per claim, with its job count), so
--      its size is the number of claims within the period, not the limit;
--   7. when a limit (not a lack of jobs) held jobs back and the claim is short, returns one
--      more row with a NULL id: next_at, the earliest time anything held back may start (the
--      queue's window reopens, else the first held key's; the worker sets a timer and claims
--      again then), or NULL when only a running job's end frees a start (the worker that ran
--      it claims again when its outcome is written; the others within a poll interval); and
--      held_by, 'queue' when the queue's own limits held (no new job may start either) or
--      'keys' when only per-key limits did (a new job of another key may: the worker claims
--      again when told of one).
--
-- Invariants
-- ----------
-- I1 (rate) For a limit N per period P, a job starts at time t only if fewer than N recorded
--    starts lie in (t - P, t]: exact for every span, not per fixed bucket. A window holds
--    the newest N starts within P; a start that left P is dropped.
-- I2 (concurrency) A claim never makes more than `concurrency` jobs of the queue (or
--    `key_concurrency` of a key) running: it counts running rows under the queue's lock, and
--    a job runs (state 'running') from its claim until its outcome is written.
-- I3 (charge) Tokens are charged only for jobs a claim took and marked running; jobs held
--    back stay 'available' with their attempt untouched: a limit never fails a job nor
--    burns an attempt.
-- I4 (no head-of-line blocking) A key over its limits costs one index probe per claim;
--    the keys after it are read from their own ranges.
-- I5 (unlimited queues pay nothing) A queue without limits is claimed exactly as before;
--    the only change to the plain claims is `q.limited IS NOT TRUE` on the queues row.
-- I6 (correctness in the database) Which queues a worker believes limited is a cache for
--    liveness only: the plain claim skips limited queues whatever the worker believes, and
--    claim_limited_v1 on a queue whose limits were cleared claims it like any other.
--
-- Limitations: in a key-limited queue, jobs without a key are looked for among the first 256
-- waiting jobs of the queue (give every job of such a queue a key); the key walk costs one
-- probe per distinct key with waiting jobs, and reads each key from the head of its range
-- (no cursors: while vacuum is held back, the dead entries of a key's claimed jobs are
-- walked again by each claim of that queue).

-- name: claim_limited
-- Claim up to %(limit)s jobs from one limited queue within its limits, reading its levels
-- from the worker's cursors (after_*); a last row with a NULL id says a limit held jobs back
-- (next_at: when one may start; NULL: at a job's end; held_by: 'queue' or only 'keys').
SELECT id, claims, queue, task, args, attempt, max_attempts, priority, enqueued_at, run_at, next_at, checked_at,
       held_by
FROM {schema}.claim_limited_v1(%(queue)s, %(limit)s, %(worker_id)s, %(lease)s::interval,
                               %(now)s::timestamptz, %(after_priorities)s::smallint[],
                               %(after_run_ats)s::timestamptz[], %(after_ids)s::bigint[]);

-- name: limited_queues
-- Which of these queues have limits (a worker's cache of whom to claim with claim_limited).
SELECT name FROM {schema}.queues WHERE limited AND name = ANY (%(queues)s::text[]);

-- name: set_queue_limits
-- Set (NULL: clear) a queue's limits; creates the queue if missing, wakes the workers.
SELECT {schema}.set_queue_limits_v1(%(queue)s, %(rate_limit)s::integer, %(rate_period)s::interval,
                                    %(concurrency)s::integer, %(key_rate_limit)s::integer,
                                    %(key_rate_period)s::interval, %(key_concurrency)s::integer);

-- name: queue_limits
-- Every queue's limits and their current use: running jobs, starts within the rate window,
-- keys with a window: why a queue is not draining.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
)
SELECT q.name, q.rate_limit, q.rate_period, q.concurrency, q.key_rate_limit, q.key_rate_period,
       q.key_concurrency,
       (SELECT count(*) FROM {schema}.jobs j WHERE j.state = 'running' AND j.queue = q.name) AS running,
       coalesce((SELECT {schema}.window_used_v1(w.starts, w.counts, clock.now, q.rate_period)
                 FROM {schema}.rate_windows w WHERE w.queue = q.name AND w.key = ''), 0) AS window_starts,
       (SELECT count(*) FROM {schema}.rate_windows w
        WHERE w.queue = q.name AND w.key <> ''
          AND w.starts[cardinality(w.starts)] > clock.now - q.key_rate_period) AS keys_in_window
FROM {schema}.queues q, clock
WHERE q.limited AND (%(queue)s::text IS NULL OR q.name = %(queue)s)
ORDER BY q.name;

-- name: prune_rate_windows
-- Drop windows whose newest start has left the period, or whose limit or queue is gone.
DELETE FROM {schema}.rate_windows w
WHERE NOT EXISTS (
    SELECT 1 FROM {schema}.queues q
    WHERE q.name = w.queue
      AND w.starts[cardinality(w.starts)] > coalesce(%(now)s::timestamptz, now())
          - (CASE WHEN w.key = '' THEN q.rate_period ELSE q.key_rate_period END)
);
