"""What the engine says about jobs: pure types, shared by the database seam and the engine.

Nothing here touches the database; ``conveyor.db`` builds these from rows and the queue
engine passes them around.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple


class ClaimedJob(NamedTuple):
    """A job as a claim returned it. A tuple, not a dataclass: a draining worker makes one per
    job, and this is the cheapest record to make (bench/RESULTS.md, "Why the code is shaped
    so")."""

    id: int
    claim: int  # the job's claim count when this worker claimed it: the fencing token
    queue: str
    task: str
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    priority: int
    enqueued_at: datetime
    run_at: datetime  # with priority and id: where the claim index had it


# Where a claim reads a queue's priority level from: (queue, priority) -> (run_at, id).
Cursors = Mapping[tuple[str, int], tuple[datetime, int]]


class HeldBack(NamedTuple):
    """A limited queue's claim came back short because a limit held jobs back.

    ``next_at``: the earliest time one of them may start (a rate window reopens), by the
    database's clock; None when only a running job's end frees a start. ``checked_at``: the
    clock the claim used. ``by_queue``: the queue's own limits held (no new job may start
    either); False: only per-key limits did (a new job of another key may start at once)."""

    queue: str
    next_at: datetime | None
    checked_at: datetime
    by_queue: bool = False


class Held(NamedTuple):
    """A claim: the fencing token every write to a running job must present."""

    id: int
    claim: int

    @classmethod
    def of(cls, job: ClaimedJob) -> Held:
        return cls(job.id, job.claim)


@dataclass(frozen=True)
class Outcomes:
    """What a batch of finished executions did, as written by record_outcomes."""

    completed: Sequence[tuple[int, int, str | None]] = ()  # id, claim, result JSON
    retried: Sequence[tuple[int, int, float, str]] = ()  # id, claim, delay s, error JSON
    buried: Sequence[tuple[int, int, str]] = ()  # id, claim, error JSON
    aborted: Sequence[tuple[int, int]] = ()  # id, claim: stopped by an abort, end as cancelled


@dataclass(frozen=True)
class Recorded:
    completed: frozenset[int]
    retried: frozenset[int]
    buried: frozenset[int]
    aborted: frozenset[int] = frozenset()


class Extended(NamedTuple):
    """What a heartbeat found: the ids whose lease it extended, and those of them whose abort
    was asked for (docs/job-control.md)."""

    kept: set[int]
    aborted: set[int]


class JobFailure(NamedTuple):
    """Why an attempt failed, as given to a worker's ``on_failure`` and ``on_dead`` hooks."""

    error: str  # the message recorded in the job's errors
    exception: BaseException | None  # what the task raised, when it raised
    retry_in: float | None  # seconds until the next attempt; None: the job went to the dead-letter table
