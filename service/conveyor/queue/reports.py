"""What a worker tells its users about jobs that did not simply complete: one structured log
line per event, a counter, and the user's hooks.

Events (the ``event`` field of each ``conveyor.worker`` record): ``retry`` (an attempt
failed and the job will run again; WARNING), ``dead`` (moved to the dead-letter table;
ERROR), ``rescued`` (its lease ran out, this worker put it back or buried it; WARNING),
``handed_back`` (unfinished at shutdown; WARNING), ``aborted`` (stopped by an abort and
recorded as cancelled; WARNING). The traceback of a failed attempt follows
at DEBUG. Hooks are called on the event loop: ``on_failure(job, failure)`` for every failed
attempt, ``on_dead(job, failure)`` when a job goes to the dead-letter table. A hook that
raises is logged and never stops the worker; one that blocks stalls it, so hand slow work
(an HTTP call) to a thread or a job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..jobs import ClaimedJob, JobFailure

log = logging.getLogger("conveyor.worker")

Hook = Callable[[ClaimedJob, JobFailure], None]


@dataclass
class WorkerStats:
    """Counters since the worker started, for metrics."""

    completed: int = 0
    retried: int = 0
    buried: int = 0  # moved to the dead-letter table by this worker (rescues included)
    rescued: int = 0  # expired leases this worker's maintenance rescued (any worker's jobs)
    handed_back: int = 0
    aborted: int = 0  # stopped by an abort, recorded as cancelled
    write_errors: int = 0  # failed attempts to write a batch of outcomes (each retried or given up)
    hook_errors: int = 0
    # Claims of a limited queue that a limit held back (jobs waited): counted, not logged.
    limited_claims: int = 0
    # Claims of a limited queue that failed (logged): that queue is asked again a poll later.
    limited_claim_errors: int = 0


def job_fields(job: ClaimedJob) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "task": job.task,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
    }


def _describe(job: ClaimedJob) -> str:
    return f"job {job.id} ({job.task} on {job.queue}) attempt {job.attempt} of {job.max_attempts}"


class Reporter:
    def __init__(
        self, stats: WorkerStats, *, on_failure: Hook | None = None, on_dead: Hook | None = None
    ) -> None:
        self.stats = stats
        self._on_failure = on_failure
        self._on_dead = on_dead

    def retried(self, job: ClaimedJob, failure: JobFailure) -> None:
        self.stats.retried += 1
        log.warning(
            "%s failed: %s; next attempt in %.3g s",
            _describe(job),
            failure.error,
            failure.retry_in,
            extra={**job_fields(job), "event": "retry", "error": failure.error, "retry_in": failure.retry_in},
        )
        self._traceback(job, failure)
        self._call(self._on_failure, "on_failure", job, failure)

    def buried(self, job: ClaimedJob, failure: JobFailure, *, failed: bool = True) -> None:
        """Moved to the dead-letter table; ``failed``: by a failed attempt (else by a hand-back)."""
        self.stats.buried += 1
        log.error(
            "%s failed: %s; moved to the dead-letter table",
            _describe(job),
            failure.error,
            extra={**job_fields(job), "event": "dead", "error": failure.error},
        )
        self._traceback(job, failure)
        if failed:
            self._call(self._on_failure, "on_failure", job, failure)
        self._call(self._on_dead, "on_dead", job, failure)

    def rescued(self, job: ClaimedJob, failure: JobFailure) -> None:
        self.stats.rescued += 1
        where = "back in the queue" if failure.retry_in is not None else "moved to the dead-letter table"
        log.warning(
            "%s: %s; %s",
            _describe(job),
            failure.error,
            where,
            extra={
                **job_fields(job),
                "event": "rescued",
                "error": failure.error,
                "dead": failure.retry_in is None,
            },
        )
        self._call(self._on_failure, "on_failure", job, failure)
        if failure.retry_in is None:
            self.stats.buried += 1
            self._call(self._on_dead, "on_dead", job, failure)

    def handed_back(self, job: ClaimedJob) -> None:
        self.stats.handed_back += 1
        log.warning(
            "%s: unfinished when the worker stopped; handed back to the queue",
            _describe(job),
            extra={**job_fields(job), "event": "handed_back"},
        )

    def aborted(self, job: ClaimedJob) -> None:
        self.stats.aborted += 1
        log.warning(
            "%s: aborted; recorded as cancelled",
            _describe(job),
            extra={**job_fields(job), "event": "aborted"},
        )

    def _traceback(self, job: ClaimedJob, failure: JobFailure) -> None:
        exc = failure.exception
        if exc is not None and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "job %d attempt %d: traceback",
                job.id,
                job.attempt,
                exc_info=(type(exc), exc, exc.__traceback__),
                extra={**job_fields(job), "event": "traceback"},
            )

    def _call(self, hook: Hook | None, name: str, job: ClaimedJob, failure: JobFailure) -> None:
        if hook is None:
            return
        try:
            hook(job, failure)
        except Exception:
            self.stats.hook_errors += 1
            log.exception("the worker's %s hook raised for job %d (ignored)", name, job.id)
