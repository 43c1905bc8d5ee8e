"""What a running job can see and do: its identity, follow-up jobs, progress."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

import psycopg

from ..jobs import ClaimedJob, Held
from ..tasks import Registry
from .enqueue import JobRequest, PreparedJob, TaskRef, prepare
from .flows import ChildBatch, check_callback

ProgressSink = Callable[[int | None, str | None], None]
Connect = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]


class JobContext:
    """Passed to a task that asks for it (a parameter annotated ``JobContext`` or named ``ctx``)."""

    def __init__(
        self,
        job: ClaimedJob,
        registry: Registry,
        progress: ProgressSink,
        connect: Connect | None = None,
        schema: str = "conveyor",
        aborted: Container[Held] = frozenset(),
    ) -> None:
        self.job_id = job.id
        self.task = job.task
        self.queue = job.queue
        self.attempt = job.attempt
        self.max_attempts = job.max_attempts
        self.enqueued_at = job.enqueued_at
        self._registry = registry
        self._progress = progress
        self._connect = connect
        self.schema = schema  # Conveyor's schema in the database ctx.connection() reaches
        self._children: list[PreparedJob] = []
        self._held = Held.of(job)
        self._aborted = aborted
        self._batches: list[ChildBatch] = []

    @property
    def aborted(self) -> bool:
        """Whether an abort of this job was asked for (docs/job-control.md). An async task is
        cancelled as well; a sync task should poll this and stop (return, or raise anything:
        an attempt of an aborted job that raises ends as cancelled, not retried; one that
        returns is recorded as completed)."""
        return self._held in self._aborted

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def enqueue(
        self,
        task: TaskRef,
        args: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | str | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        max_attempts: int | None = None,
        key: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Enqueue a follow-up job when this one completes.

        The job is checked now (bad arguments raise here) and written in the same
        transaction that records this job as completed: if this job fails, or its lease
        was lost to another worker, the follow-up is not enqueued.
        """
        request = JobRequest(
            task, args or {}, queue, priority, delay, run_at, unique_key, max_attempts, key, meta
        )
        self._children.append(prepare(self._registry, request))

    def batch(
        self,
        callback: TaskRef | None = None,
        args: Mapping[str, Any] | None = None,
        *,
        priority: int | str | None = None,
    ) -> ChildBatch:
        """A batch of follow-up jobs (``batch.enqueue(task, args, ...)``), written with this
        job's completion like :meth:`enqueue`'s jobs, then sealed: ``callback`` runs once
        after the last member ended, with ``args`` plus ``batch={"id", "total", "completed",
        "dead", "cancelled"}`` (see ``queue.flows``)."""
        group = ChildBatch(self._registry, check_callback(self._registry, callback, args, priority))
        self._batches.append(group)
        return group

    def batches(self) -> list[ChildBatch]:
        return list(self._batches)

    def progress(self, percent: int | None, message: str | None = None) -> None:
        """Record progress (0-100) and a message; written in the background, never blocks."""
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError(f"progress must be between 0 and 100, got {percent}")
        self._progress(percent, message)

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """A connection from the worker's pool to Conveyor's database, for async tasks:
        ``async with ctx.connection() as conn: ...`` (autocommit; open a transaction with
        ``conn.transaction()``). It is not the transaction that records the job."""
        if self._connect is None:
            raise RuntimeError("this job context has no database connection to lend")
        return self._connect()

    def children(self) -> list[PreparedJob]:
        return list(self._children)
