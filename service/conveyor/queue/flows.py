"""Chains and batches: "run B after A succeeds" and "run C once every job of a group ended".

Invariants (the SQL side, with the locking argument, is the header of
sql/migrations/0009_flows.up.sql; settle_v1 is the one place a job's end reaches others):

- A job enqueued with ``after=A`` is written as usual, then linked in the same transaction
  (link_jobs_v1): it is 'blocked' while A lives and marks A ``has_followers`` by updating A's
  row, which serializes with A's end. A completed: the job becomes available (or scheduled,
  by its run_at). A dead or cancelled: the job goes to job_history as 'cancelled' with an error
  entry naming A and how it ended, and so do its own followers, transitively. A already ended
  when the job is enqueued: completed -> the job runs normally; dead/cancelled -> it is
  written straight as cancelled; no job A anywhere -> refused.
- A cancelled follower stays cancelled: retrying A from the dead-letter table runs A alone.
- A batch counts its members by outcome and enqueues its callback exactly once, after the
  last member ended and the batch was sealed (pending = unfinished members + 1 until sealed).
  A member that is retried counts only at its final outcome. A member retried from the
  dead-letter table comes back outside the batch (it was counted dead already).
- The callback gets the batch's args plus ``batch={"id", "total", "completed", "dead",
  "cancelled"}``: a callback task must take a ``batch`` argument (checked when the batch is
  made, as an enqueue checks a job's arguments).
- Jobs that use none of this pay nothing: the plain enqueue statements are unchanged, and
  the finishing statements call settle_v1 only for rows that are awaited, chained or batched.
- A unique key cannot be combined with ``after`` or ``batch``: the live job holding the key
  would be linked in the new job's place.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg

from .. import jsonb
from ..db.steps import Flow, Query
from ..errors import ArgumentsError, ConveyorError, InvalidOptionError
from ..settings import MAX_ARGS_BYTES
from ..tasks import Registry, encode_args, parse_priority
from .bulk import Batch, enqueue_many
from .enqueue import MAX_META_BYTES, JobRequest, PreparedJob, TaskRef, prepare, resolve

# Bytes of a callback's args kept for the "batch" argument added when it is enqueued (the
# same room create_batch_v1 keeps), so the end of a batch's last member is never refused.
BATCH_ROOM = 1024

# What a callback's ``batch`` argument holds, for checking its signature.
SAMPLE_OUTCOME = {"id": 1, "total": 0, "completed": 0, "dead": 0, "cancelled": 0}


log = logging.getLogger("conveyor.client")

# A transaction linking jobs that meets a deadlock or a serialization failure. Conveyor's
# statements take job rows before batch rows (sql/migrations/0009_flows.up.sql), so it should
# not meet one of their making; a caller's own locks may still. On Conveyor's own connection
# the transaction was rolled back whole and is run again (up to LINK_ATTEMPTS times in all);
# on the caller's connection its transaction is aborted, and the error says so.
LINK_ATTEMPTS = 3
LINK_CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def link_conflict(exc: psycopg.Error, *, retrying: bool) -> ConveyorError | None:
    """Log a lock conflict met while writing linked jobs; None if it is to be retried, else
    the error to raise (a clear one, not the raw psycopg error)."""
    what = type(exc).__name__
    if retrying:
        log.warning(
            "enqueue with after=/batch= met a lock conflict (%s); running its transaction again", what
        )
        return None
    log.warning("enqueue with after=/batch= met a lock conflict (%s); giving up", what)
    return ConveyorError(
        f"enqueue with after= or batch= met a lock conflict ({what}: {str(exc).splitlines()[0]}); "
        "its transaction was rolled back: nothing was enqueued, run it again"
    )


# Ids are bigint: larger ones would reach PostgreSQL as numeric, and no function takes that.
MAX_ID = 2**63 - 1


def check_id(name: str, value: object) -> int:
    """A job or batch id as the client takes it: an int (not a bool) from 1 to 2**63-1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise InvalidOptionError(f"{name} must be an id, an integer from 1 to 2**63-1, got {value!r:.80}")
    return value


def check_timeout(timeout: object) -> float | None:
    """result()'s timeout: None (wait for ever) or seconds, a number >= 0 (0: check once)."""
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise InvalidOptionError(f"timeout must be None or a number of seconds >= 0, got {timeout!r:.80}")
    return float(timeout)


def check_link(after: int | None, batch: int | None, unique_keys: Sequence[str | None]) -> None:
    """Refuse links that cannot work, before anything is written."""
    if after is not None:
        check_id("after", after)
    if batch is not None:
        check_id("batch", batch)
    if (after is not None or batch is not None) and any(key is not None for key in unique_keys):
        raise InvalidOptionError(
            "unique_key cannot be combined with after= or batch=: the live job holding the key "
            "would be linked in the new job's place"
        )


def linked(
    written: Flow[list[int]], *, after: int | None, batch: int | None, now: datetime | None
) -> Flow[list[int]]:
    """Write jobs (``written``), then link them to ``after`` and/or ``batch``; run atomically."""
    ids = yield from written
    if ids and (after is not None or batch is not None):
        yield Query("link_jobs", {"ids": ids, "after_id": after, "batch_id": batch, "now": now})
    return ids


def one(flow: Flow[int]) -> Flow[list[int]]:
    """A flow that writes one job, as one that writes a list of them."""
    return [(yield from flow)]


def chain_flow(steps: Sequence[Flow[int]], *, after: int | None, now: datetime | None) -> Flow[list[int]]:
    """Write jobs each of which runs after the one before (the first after ``after``)."""
    ids: list[int] = []
    previous = after
    for step in steps:
        job_id = yield from step
        if previous is not None:
            yield Query("link_jobs", {"ids": [job_id], "after_id": previous, "batch_id": None, "now": now})
        ids.append(job_id)
        previous = job_id
    return ids


def check_batch_meta(meta: Mapping[str, Any] | None) -> str | None:
    """A batch's meta as JSON: an object of at most MAX_META_BYTES, as a job's meta."""
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        raise InvalidOptionError(f"a batch's meta must be a JSON object, got {type(meta).__name__}")
    try:
        meta_json, size = jsonb.dumps_sized(meta if type(meta) is dict else dict(meta))
    except (TypeError, ValueError) as exc:
        raise InvalidOptionError(f"a batch's meta is not JSON: {exc}") from None
    if size > MAX_META_BYTES:
        raise InvalidOptionError(
            f"a batch's meta takes {size} bytes as JSON, more than the {MAX_META_BYTES} byte limit"
        )
    return meta_json


def check_callback(
    registry: Registry,
    task: TaskRef | None,
    args: Mapping[str, Any] | None,
    priority: int | str | None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters of create_batch, checked as far as this process can (SQL's
    create_batch_v1 cannot check the callback's signature: this is where it is checked)."""
    checked_priority = None if priority is None else parse_priority(priority)
    meta_json = check_batch_meta(meta)
    if args is not None and not isinstance(args, Mapping):
        raise ArgumentsError(f"a batch callback's args must be a mapping, got {type(args).__name__}")
    args = dict(args or {})
    if "batch" in args:
        raise ArgumentsError(
            "a batch callback's args may not hold 'batch': the callback gets the batch's counts there"
        )
    if task is None:
        if args:
            raise InvalidOptionError("callback args without a callback task")
        return {"task": None, "args": "{}", "queue": None, "priority": checked_priority, "meta": meta_json}
    known = resolve(registry, task)
    known.check_args({**args, "batch": SAMPLE_OUTCOME})
    name, queue = known.name, known.queue
    args_json = encode_args(name, args)
    if len(args_json.encode()) > MAX_ARGS_BYTES - BATCH_ROOM:
        raise ArgumentsError(
            f"batch callback {name!r}: its args take {len(args_json.encode())} bytes as JSON, more than the "
            f"{MAX_ARGS_BYTES} byte limit less {BATCH_ROOM} kept for its 'batch' argument"
        )
    return {"task": name, "args": args_json, "queue": queue, "priority": checked_priority, "meta": meta_json}


class ChildBatch:
    """A batch a running job makes (``ctx.batch(...)``): written with the job's ack, in the
    transaction that records it as completed (created, members written and linked, sealed),
    like ``ctx.enqueue``'s follow-up jobs; nothing is written if the job does not complete."""

    def __init__(self, registry: Registry, callback: dict[str, Any]) -> None:
        self._registry = registry
        self.callback = callback
        self.jobs: list[PreparedJob] = []

    def enqueue(self, task: TaskRef, args: Mapping[str, Any] | None = None, **options: Any) -> None:
        """Add a member (checked now; options as for ``ctx.enqueue``, without unique_key)."""
        if options.get("unique_key") is not None:
            check_link(None, 1, [options["unique_key"]])
        self.jobs.append(prepare(self._registry, JobRequest(task, args or {}, **options)))


def write_child_batch(group: ChildBatch, *, channel: str, jobs_table: str, now: datetime | None) -> Flow[int]:
    """Create the batch, write and link its members, seal it; returns its id."""
    rows = yield Query("create_batch", group.callback)
    batch_id = int(rows[0][0])
    if group.jobs:
        written = enqueue_many(Batch.of(group.jobs), channel=channel, jobs_table=jobs_table, now=now)
        yield from linked(written, after=None, batch=batch_id, now=now)
    yield Query("seal_batch", {"id": batch_id, "now": now})
    return batch_id
