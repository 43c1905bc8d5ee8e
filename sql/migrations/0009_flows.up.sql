-- Conveyor schema: results, chains and batches (the functions; the columns and the batches
-- table came with version 7). Python's side: conveyor.queue.flows; docs/results-and-flows.md.
--
-- One place where a job's end reaches others: settle_v1(outcome, followed, batch_ids,
-- awaited, at). Every statement that ends jobs (complete_jobs: 'completed'; bury_jobs,
-- release_jobs' buried branch, rescue_expired_jobs' dead branch: 'dead'; a cancel:
-- 'cancelled') calls it once, with arrays built from the rows it ended, and only for rows
-- with has_followers, a batch_id or awaited: an aggregate over the ended rows filtered so,
-- with the call made only when one array is not NULL. A statement ending plain jobs never
-- calls it. The arrays are passed in because rows the calling statement deleted are not
-- visible to a function it calls (same command).
--
-- Invariants.
--   awaited   a job with awaited = true sends pg_notify('<schema>.done', id) when it ends (the
--             schema's first 58 characters: a channel name holds 63 bytes), in
--             the transaction that ends it (delivered at its commit). A waiter LISTENs before it
--             sets awaited, so it either sees the row gone (and reads the outcome) or gets the
--             notification.
--   chains    a job whose after_id is X is 'blocked' while X lives. Its enqueue set X's
--             has_followers with an UPDATE of X's row, so it serializes with X's end: either
--             X's end sees has_followers (and settles the follower, which committed first) or
--             the enqueue finds X gone and reads X's outcome. X completed: followers become
--             available (or scheduled, if their run_at is later) with run_at no earlier than
--             the release, and a wake-up on the schema's channel.
--             X died or was cancelled: followers move to job_history as 'cancelled' with an
--             error entry naming X and how it ended, and so do theirs, one generation at a
--             time in a loop (stack depth does not grow with the chain), so A -> B -> C with
--             B dead cancels C; the batches and waiters of all of them are settled once after. A follower cancelled stays cancelled: retrying
--             X from the dead-letter table runs X alone (has_followers is not carried back).
--   batches   batches.pending = members not yet ended + 1 until sealed; it only goes down
--             once sealed, so it reaches 0 once. Members' ends lock the batch rows (in id
--             order: no deadlock between two statements ending members of the same batches),
--             so two members ending at once are counted one after the other, and exactly one
--             of them sees pending reach 0 and enqueues the callback (finish_batch_v1, through
--             insert_job_v2), recording callback_job_id and finished_at. A member retried
--             (retry_jobs, a hand-back, a lease rescue with attempts left) has not ended and
--             is not counted; only its final outcome is. A member retried from the
--             dead-letter table comes back without its batch_id: it was counted dead once.
--   callback  the callback task gets its args with one more key, "batch":
--             {"id", "total", "completed", "dead", "cancelled"}; "batch" is reserved in them.

-- == Ends ==================================================================================

CREATE FUNCTION finish_batch_v1(batch_id bigint, at timestamptz) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    b batches%ROWTYPE;
    callback bigint;
BEGIN
    -- The caller holds the batch row's lock and saw pending reach 0.
    SELECT * INTO b FROM batches WHERE id = finish_batch_v1.batch_id;
    IF NOT FOUND OR b.finished_at IS NOT NULL THEN
        RETURN b.callback_job_id;
    END IF;
    IF b.callback_task IS NOT NULL THEN
        callback := insert_job_v2(
            b.callback_task,
            b.callback_args || jsonb_build_object('batch', jsonb_build_object(
                'id', b.id, 'total', b.total, 'completed', b.completed, 'dead', b.dead,
                'cancelled', b.cancelled)),
            b.callback_queue, b.callback_priority, NULL, NULL, NULL, finish_batch_v1.at, true);
    END IF;
    UPDATE batches SET finished_at = finish_batch_v1.at, callback_job_id = callback
    WHERE id = finish_batch_v1.batch_id;
    RETURN callback;
END;
$$;
COMMENT ON FUNCTION finish_batch_v1(bigint, timestamptz) IS
    'A batch whose pending reached 0: enqueue its callback once, record it and the finish time.';

CREATE FUNCTION settle_v1(
    outcome    text,
    followed   bigint[],
    batch_ids  bigint[],
    awaited    bigint[],
    at         timestamptz
) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    released integer;
    frontier bigint[];
    ended_as text;
    next_followed bigint[];
    next_batches bigint[];
    next_awaited bigint[];
    all_batches bigint[];
    all_awaited bigint[];
    member record;
BEGIN
    IF settle_v1.outcome IS NULL OR settle_v1.outcome NOT IN ('completed', 'dead', 'cancelled') THEN
        RAISE EXCEPTION 'conveyor.settle: outcome must be completed, dead or cancelled, got %', settle_v1.outcome
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- (a) Callers awaiting these jobs (Conveyor.result): the payload is the job id only.
    IF settle_v1.awaited IS NOT NULL THEN
        -- A channel name holds at most 63 bytes: the schema's first 58 characters (a schema
        -- name is ASCII) and '.done'. Two schemas alike in those only share wake-ups, which
        -- a waiter re-checks.
        PERFORM pg_notify(left(current_schema(), 58) || '.done', a::text) FROM unnest(settle_v1.awaited) AS a;
    END IF;

    -- (b) Jobs waiting for these ones.
    IF settle_v1.followed IS NOT NULL THEN
        IF settle_v1.outcome = 'completed' THEN
            -- Due from their release at the earliest: a worker's claim cursors (conveyor.queue.
            -- cursors) have passed the enqueue time long ago, and FIFO order is release order.
            WITH freed AS (
                UPDATE jobs j
                SET state = job_state_v1(greatest(j.run_at, settle_v1.at), settle_v1.at),
                    run_at = greatest(j.run_at, settle_v1.at)
                WHERE j.after_id = ANY (settle_v1.followed) AND j.state = 'blocked'
                RETURNING j.queue, j.state
            )
            SELECT count(pg_notify(current_schema(), q.queue)) INTO released
            FROM (SELECT DISTINCT queue FROM freed WHERE state = 'available') AS q;
        ELSE
            -- One generation of followers at a time (not a recursion per link, whose stack
            -- depth would grow with the chain: a chain of hundreds would overflow
            -- max_stack_depth and fail the statement ending its head). Each generation's
            -- batches and waiters are gathered and settled once, after the loop.
            frontier := settle_v1.followed;
            ended_as := settle_v1.outcome;
            WHILE frontier IS NOT NULL LOOP
                WITH gone AS (
                    DELETE FROM jobs j
                    WHERE j.after_id = ANY (frontier) AND j.state = 'blocked'
                    RETURNING j.*
                ), moved AS (
                    INSERT INTO job_history
                        (id, run_at, enqueued_at, started_at, finished_at, worker_id, attempt, max_attempts, priority,
                         state, queue, task, unique_key, args, result, errors, key, meta, after_id, batch_id)
                    SELECT g.id, g.run_at, g.enqueued_at, g.started_at, settle_v1.at, NULL, g.attempt, g.max_attempts,
                           g.priority, 'cancelled', g.queue, g.task, g.unique_key, g.args, NULL,
                           append_error_v1(g.errors, jsonb_build_object(
                               'attempt', g.attempt, 'at', settle_v1.at, 'cancelled', true, 'after', g.after_id,
                               'error', format('cancelled: job %s, which this job was to run after, %s',
                                               g.after_id,
                                               CASE ended_as WHEN 'dead' THEN 'died'
                                                    ELSE 'was cancelled' END))),
                           g.key, g.meta, g.after_id, g.batch_id
                    FROM gone g
                    RETURNING 1
                )
                SELECT array_agg(g.id) FILTER (WHERE g.has_followers),
                       array_agg(g.batch_id) FILTER (WHERE g.batch_id IS NOT NULL),
                       array_agg(g.id) FILTER (WHERE g.awaited)
                INTO next_followed, next_batches, next_awaited
                FROM gone g;
                all_batches := all_batches || next_batches;
                all_awaited := all_awaited || next_awaited;
                frontier := next_followed;
                ended_as := 'cancelled';
            END LOOP;
            -- The cancelled followers end too: their batches and waiters (one call, one level
            -- deep: it has no followers to cancel).
            IF all_batches IS NOT NULL OR all_awaited IS NOT NULL THEN
                PERFORM settle_v1('cancelled', NULL, all_batches, all_awaited, settle_v1.at);
            END IF;
        END IF;
    END IF;

    -- (c) Batches: count the members by outcome; the one that brings pending to 0 finishes it.
    IF settle_v1.batch_ids IS NOT NULL THEN
        PERFORM 1 FROM batches b WHERE b.id = ANY (settle_v1.batch_ids) ORDER BY b.id FOR UPDATE;
        FOR member IN
            WITH counts AS (
                SELECT m AS id, count(*)::integer AS n FROM unnest(settle_v1.batch_ids) AS m GROUP BY m
            )
            UPDATE batches b
            SET pending = b.pending - c.n,
                completed = b.completed + CASE WHEN settle_v1.outcome = 'completed' THEN c.n ELSE 0 END,
                dead = b.dead + CASE WHEN settle_v1.outcome = 'dead' THEN c.n ELSE 0 END,
                cancelled = b.cancelled + CASE WHEN settle_v1.outcome = 'cancelled' THEN c.n ELSE 0 END
            FROM counts c
            WHERE b.id = c.id
            RETURNING b.id, b.pending, b.finished_at
        LOOP
            IF member.pending <= 0 AND member.finished_at IS NULL THEN
                PERFORM finish_batch_v1(member.id, settle_v1.at);
            END IF;
        END LOOP;
    END IF;
END;
$$;
COMMENT ON FUNCTION settle_v1(text, bigint[], bigint[], bigint[], timestamptz) IS
    'What the end of jobs does to others: notify waiters, release or cancel followers, count '
    'batch members and enqueue a finished batch''s callback. Called by every statement that ends jobs.';

-- == Batches and links =====================================================================

CREATE FUNCTION create_batch_v1(
    callback_task      text DEFAULT NULL,
    callback_args      jsonb DEFAULT '{}',
    callback_queue     text DEFAULT NULL,
    callback_priority  integer DEFAULT NULL,
    meta               jsonb DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    IF create_batch_v1.callback_task = '' THEN
        RAISE EXCEPTION 'conveyor.create_batch: callback task name is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF create_batch_v1.callback_args IS NULL OR jsonb_typeof(create_batch_v1.callback_args) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.create_batch: callback args must be a JSON object, got %',
            coalesce(jsonb_typeof(create_batch_v1.callback_args), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF create_batch_v1.callback_args ? 'batch' THEN
        RAISE EXCEPTION 'conveyor.create_batch: callback args may not hold "batch": the callback gets the batch''s counts there'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The callback's args gain "batch" when it is enqueued: room is kept for it, so that the
    -- end of the last member (which enqueues it) can never be refused by the args limit.
    IF compact_json_octets_v1(create_batch_v1.callback_args) > 1048576 - 1024 THEN
        RAISE EXCEPTION 'conveyor.create_batch: callback args take % bytes as JSON, more than the 1 MiB limit less 1 KiB kept for "batch"',
            compact_json_octets_v1(create_batch_v1.callback_args)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF create_batch_v1.callback_priority IS NOT NULL AND create_batch_v1.callback_priority NOT BETWEEN 0 AND 3 THEN
        RAISE EXCEPTION 'conveyor.create_batch: priority % is out of range', create_batch_v1.callback_priority
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 0 (critical), 1 (high), 2 (normal) or 3 (low).';
    END IF;
    IF create_batch_v1.meta IS NOT NULL AND jsonb_typeof(create_batch_v1.meta) <> 'object' THEN
        RAISE EXCEPTION 'conveyor.create_batch: meta must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The same limit as a job's meta (the job_meta domain).
    IF compact_json_octets_v1(create_batch_v1.meta) > 65536 THEN
        RAISE EXCEPTION 'conveyor.create_batch: meta takes % bytes as JSON, more than the 64 KiB limit',
            compact_json_octets_v1(create_batch_v1.meta)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF create_batch_v1.callback_task IS NULL AND create_batch_v1.callback_queue IS NOT NULL THEN
        RAISE EXCEPTION 'conveyor.create_batch: a callback queue without a callback task'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO batches (callback_task, callback_args, callback_queue, callback_priority, meta)
    VALUES (create_batch_v1.callback_task, create_batch_v1.callback_args, create_batch_v1.callback_queue,
            create_batch_v1.callback_priority, create_batch_v1.meta)
    RETURNING id INTO new_id;
    RETURN new_id;
END;
$$;
COMMENT ON FUNCTION create_batch_v1(text, jsonb, text, integer, jsonb) IS
    'Version 1 of create_batch (see conveyor.create_batch). It cannot check that the callback task '
    'takes a "batch" argument (the Python client checks it against the task''s signature).';

CREATE FUNCTION seal_batch_v1(batch_id bigint, at timestamptz DEFAULT now()) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    b batches%ROWTYPE;
BEGIN
    UPDATE batches SET pending = pending - 1, sealed_at = seal_batch_v1.at
    WHERE id = seal_batch_v1.batch_id AND sealed_at IS NULL
    RETURNING * INTO b;
    IF NOT FOUND THEN
        PERFORM 1 FROM batches WHERE id = seal_batch_v1.batch_id;
        IF FOUND THEN
            RAISE EXCEPTION 'conveyor.seal_batch: batch % is sealed already', seal_batch_v1.batch_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RAISE EXCEPTION 'conveyor.seal_batch: no batch with id %', seal_batch_v1.batch_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF b.pending <= 0 THEN
        RETURN finish_batch_v1(b.id, seal_batch_v1.at);
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION seal_batch_v1(bigint, timestamptz) IS
    'Version 1 of seal_batch (see conveyor.seal_batch): no more members; returns the callback''s '
    'job id when every member had ended already.';

-- Link jobs just written (in this transaction) to a job they run after and/or a batch.
-- Internal: it cannot tell an older waiting job from one just written (see its comment).
CREATE FUNCTION link_jobs_v1(job_ids bigint[], after_id bigint, batch_id bigint, at timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    parent text;
    linked integer;
    wanted integer := coalesce(cardinality(link_jobs_v1.job_ids), 0);
BEGIN
    IF wanted = 0 OR (link_jobs_v1.after_id IS NULL AND link_jobs_v1.batch_id IS NULL) THEN
        RETURN;
    END IF;
    IF link_jobs_v1.after_id = ANY (link_jobs_v1.job_ids) THEN
        RAISE EXCEPTION 'conveyor.enqueue: job % cannot run after itself', link_jobs_v1.after_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF link_jobs_v1.after_id IS NOT NULL THEN
        -- The parent's row first. Serializes with the parent's end (see the header): it sees
        -- has_followers, or we see it gone.
        UPDATE jobs SET has_followers = true WHERE id = link_jobs_v1.after_id;
        IF FOUND THEN
            parent := 'live';
        ELSE
            SELECT h.state INTO parent FROM job_history h WHERE h.id = link_jobs_v1.after_id
            ORDER BY h.finished_at DESC LIMIT 1;
            IF parent IS NULL THEN
                PERFORM 1 FROM dead_jobs d WHERE d.id = link_jobs_v1.after_id;
                IF FOUND THEN
                    parent := 'dead';
                ELSE
                    RAISE EXCEPTION 'conveyor.enqueue: no job with id % to run after', link_jobs_v1.after_id
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
            END IF;
        END IF;
    END IF;
    -- Then the batch row: its lock orders this join against members ending meanwhile. Lock
    -- order is job rows before batch rows, as in every statement ending jobs (the DELETE of
    -- the job, then settle_v1's batch locks): the parent's row is locked above, so a parent
    -- in the batch completing meanwhile cannot deadlock with this join.
    IF link_jobs_v1.batch_id IS NOT NULL THEN
        UPDATE batches SET total = total + wanted, pending = pending + wanted
        WHERE id = link_jobs_v1.batch_id AND sealed_at IS NULL;
        IF NOT FOUND THEN
            PERFORM 1 FROM batches WHERE id = link_jobs_v1.batch_id;
            IF FOUND THEN
                RAISE EXCEPTION 'conveyor.enqueue: batch % is sealed: it takes no more jobs', link_jobs_v1.batch_id
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            RAISE EXCEPTION 'conveyor.enqueue: no batch with id %', link_jobs_v1.batch_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    UPDATE jobs j
    SET after_id = link_jobs_v1.after_id,
        batch_id = link_jobs_v1.batch_id,
        state = CASE WHEN parent IS NULL OR parent = 'completed' THEN j.state ELSE 'blocked' END
    WHERE j.id = ANY (link_jobs_v1.job_ids) AND j.after_id IS NULL AND j.batch_id IS NULL
      AND j.state IN ('available', 'scheduled');
    GET DIAGNOSTICS linked = ROW_COUNT;
    IF linked <> wanted THEN
        RAISE EXCEPTION 'conveyor.enqueue: % of % jobs could not be linked (not new, or linked already)',
            wanted - linked, wanted USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF parent IN ('dead', 'cancelled') THEN
        -- The parent ended badly before these jobs existed: they are cancelled at once, as they
        -- would have been at its end.
        PERFORM settle_v1(parent, ARRAY[link_jobs_v1.after_id], NULL, NULL, link_jobs_v1.at);
    END IF;
END;
$$;
COMMENT ON FUNCTION link_jobs_v1(bigint[], bigint, bigint, timestamptz) IS
    'Internal (no unversioned name; enqueue_flow and the clients call it): make jobs written in '
    'this transaction run after a job and/or join a batch. It refuses jobs already linked, '
    'blocked, running or gone, but cannot tell an older waiting job from one just written: '
    'call it only with the ids the same transaction has just enqueued.';

CREATE FUNCTION enqueue_flow_v1(
    task          text,
    args          jsonb DEFAULT '{}',
    queue         text DEFAULT NULL,
    priority      integer DEFAULT NULL,
    run_at        timestamptz DEFAULT NULL,
    max_attempts  integer DEFAULT NULL,
    after_id      bigint DEFAULT NULL,
    batch_id      bigint DEFAULT NULL,
    key           text DEFAULT NULL,
    meta          jsonb DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    job_id bigint;
BEGIN
    job_id := enqueue_v2(enqueue_flow_v1.task, enqueue_flow_v1.args, enqueue_flow_v1.queue,
                         enqueue_flow_v1.priority, enqueue_flow_v1.run_at, NULL, enqueue_flow_v1.max_attempts,
                         enqueue_flow_v1.key, enqueue_flow_v1.meta);
    PERFORM link_jobs_v1(ARRAY[job_id], enqueue_flow_v1.after_id, enqueue_flow_v1.batch_id, now());
    RETURN job_id;
END;
$$;
COMMENT ON FUNCTION enqueue_flow_v1(text, jsonb, text, integer, timestamptz, integer, bigint, bigint, text, jsonb) IS
    'Version 1 of enqueue_flow (see conveyor.enqueue_flow).';

-- == The names without a version =========================================================

DO $wrappers$
BEGIN
    EXECUTE format($sql$
CREATE OR REPLACE FUNCTION %1$I.create_batch(
    callback_task      text DEFAULT NULL,
    callback_args      jsonb DEFAULT '{}',
    callback_queue     text DEFAULT NULL,
    callback_priority  integer DEFAULT NULL,
    meta               jsonb DEFAULT NULL
) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.create_batch_v1(create_batch.callback_task, create_batch.callback_args,
                                create_batch.callback_queue, create_batch.callback_priority, create_batch.meta);
$body$;

CREATE OR REPLACE FUNCTION %1$I.seal_batch(batch_id bigint) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.seal_batch_v1(seal_batch.batch_id, now());
$body$;

CREATE OR REPLACE FUNCTION %1$I.enqueue_flow(
    task          text,
    args          jsonb DEFAULT '{}',
    queue         text DEFAULT NULL,
    priority      integer DEFAULT NULL,
    run_at        timestamptz DEFAULT NULL,
    max_attempts  integer DEFAULT NULL,
    after_id      bigint DEFAULT NULL,
    batch_id      bigint DEFAULT NULL,
    key           text DEFAULT NULL,
    meta          jsonb DEFAULT NULL
) RETURNS bigint
LANGUAGE sql
AS $body$
    SELECT %1$I.enqueue_flow_v1(enqueue_flow.task, enqueue_flow.args, enqueue_flow.queue, enqueue_flow.priority,
                                enqueue_flow.run_at, enqueue_flow.max_attempts, enqueue_flow.after_id,
                                enqueue_flow.batch_id, enqueue_flow.key, enqueue_flow.meta);
$body$;
$sql$, current_schema());
END;
$wrappers$;
