"""Awaiting a job's end: ``await conveyor.result(job_id, timeout=...)``.

Contract (see sql/migrations/0009_flows.up.sql, "awaited"):

- One LISTEN connection per client on the channel ``<schema>.done``, shared by every waiter
  of the client and dispatched by job id (the payload is the id alone). It is opened at the
  first wait and reconnected with a short backoff when it drops; every waiter re-checks its
  job when LISTEN is set up again, since notifications sent meanwhile were lost.
- Order of a wait: the job is read at once, whether LISTEN is up yet or not (a job that
  ended long ago is found without a LISTEN connection; ``timeout=0`` checks once). Each
  check is ``UPDATE jobs SET awaited = true`` (autocommit); then,
  if no live row was marked, the job has ended (or never existed) and its outcome is read in
  a new statement (a new snapshot: a row deleted while the UPDATE waited for it has its
  history row committed by then). A live row marked before its end makes that end notify;
  the notification arrives if LISTEN was up before the mark, and otherwise LISTEN coming up
  re-checks every waiter. While LISTEN cannot be set up (a wrong listen URL, a pooler in
  transaction mode), waiters fall back to the slow re-check below.
- Woken by the notification; a slow re-check (SAFETY_RECHECK) covers a notification lost
  without a reconnect (a half-open link the watchdog has not yet caught).
- Outcomes: completed -> the stored result (decoded JSON, None when the task returned
  None); dead -> JobFailed with the last error entry; cancelled -> JobCancelled with the
  entry saying why; no such job -> NotFoundError; the timeout passes -> TimeoutError.
  A job retried from the dead-letter table while waited for is live again: the wait goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..db.database import Database
from ..errors import JobCancelled, JobFailed, NotFoundError
from ..settings import Settings
from .notifier import Notifier

log = logging.getLogger("conveyor.client")

# A waiter re-reads its job this often even without a notification (a lost one is rare: it
# needs a link that drops silently; a reconnect re-checks every waiter at once).
SAFETY_RECHECK = 5.0


class ResultWaiters:
    """The client's waiters and the one LISTEN connection they share."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._waiters: dict[int, set[asyncio.Event]] = {}
        queries = db.queries
        listen = queries.compose("listen_done", channel=(done_channel(settings.schema),))
        self.notifier = Notifier(
            settings.listen_url or settings.database_url or db.conninfo,
            queries,
            self._on_done,
            on_connect=self._recheck_all,
            timeouts=settings.timeouts,
            listen=listen,
        )
        self._task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for events in self._waiters.values():
            for event in events:
                event.set()

    def _on_done(self, payload: str) -> None:
        try:
            job_id = int(payload)
        except ValueError:
            log.warning("ignored a notification on the results channel that is not a job id: %r", payload)
            return
        for event in self._waiters.get(job_id, ()):
            event.set()

    def _recheck_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def wait(self, job_id: int, timeout: float | None) -> Any:  # noqa: ASYNC109 - a deadline read between steps
        """The job's result once it ends (see the module's contract)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self.notifier.run(), name="conveyor-results-listen")
            while True:
                # The job is read first, LISTEN up or not: a job that ended is found at once
                # (timeout=0 checks once). Marked while LISTEN is down, its end's
                # notification may be lost: LISTEN coming up re-checks every waiter
                # (on_connect sets the events), and until then the slow re-check stands in.
                event.clear()
                ended = await self._check(job_id)
                if ended is not None:
                    return ended.value()
                wait_for = SAFETY_RECHECK
                left = _left(deadline, loop.time())
                if left is not None:
                    if left <= 0:
                        raise TimeoutError
                    wait_for = min(wait_for, left)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), wait_for)
        except TimeoutError:
            raise TimeoutError(f"job {job_id} did not end within {timeout:g} s") from None
        finally:
            events = self._waiters.get(job_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[job_id]

    async def _check(self, job_id: int) -> Ended | None:
        """Mark the job awaited; if it is no longer live, how it ended."""
        if await self._db.fetch("mark_awaited", {"id": job_id}):
            return None
        rows = await self._db.fetch("job_outcome", {"id": job_id})
        if not rows:
            raise NotFoundError(f"no job with id {job_id} (never enqueued, or removed by retention)")
        state, result, last_error = rows[0]
        if state in ("completed", "dead", "cancelled"):
            return Ended(job_id, state, result, last_error)
        return None  # live again (retried from the dead-letter table): marked on the next round


class Ended:
    """A job's end as read from job_history or dead_jobs."""

    def __init__(self, job_id: int, state: str, result: Any, last_error: Any) -> None:
        self.job_id = job_id
        self.state = state
        self.result = result
        self.last_error = last_error if isinstance(last_error, dict) else None

    def value(self) -> Any:
        if self.state == "completed":
            return self.result
        if self.state == "dead":
            raise JobFailed(self.job_id, self.last_error)
        raise JobCancelled(self.job_id, self.last_error)


def done_channel(schema: str) -> str:
    """The channel awaited jobs of ``schema`` announce their end on: at most 63 bytes, as
    settle_v1 makes it (the schema's first 58 characters and ".done")."""
    return f"{schema[:58]}.done"


def _left(deadline: float | None, now: float) -> float | None:
    return None if deadline is None else max(deadline - now, 0.0)
