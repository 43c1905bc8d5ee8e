"""Where a worker's claim starts reading the claim index: cursors, and full scans.

The claim index orders a queue's available jobs by (priority, run_at, id). A claimed job's
entry stays in the index, dead, until vacuum removes it; while a transaction holds the
database's xmin back (a long report, a forgotten psql session, a replica's feedback),
vacuum can remove none. A claim that reads from the start of the index walks every one of
them, and a fast drain leaves tens of thousands a second: the claim slows down the longer
the queue is busy. So a worker remembers, per queue and priority level, the key of the last
job it claimed there (its cursor) and reads each level from there.

Invariants
----------
1. A cursor is a hint, never a promise. When it was set, every job before it had been
   claimed; but a job can land behind it later: one enqueued in a transaction that began
   before jobs this worker has claimed since (run_at is the transaction's start), a
   scheduled job promoted after its due time, a job given a run_at in the past, a job
   another worker's aborted claim gave back.
2. So the worker also claims from the start of every level (a full scan) at least every
   ``interval``, and after a claim from cursors comes back short it waits no longer than
   until the next full scan is due. A job behind a cursor waits at most ``interval``.
3. ``interval`` is ``FACTOR`` times what the last full scan cost beyond a claim from the
   cursors (its duration less the last such claim's), between ``MIN_INTERVAL`` and
   ``MAX_INTERVAL``: walking the dead entries takes about 1/FACTOR of the worker's time
   however many there are. In a healthy database the two claims cost the same and a job
   behind a cursor waits ``MIN_INTERVAL`` at most; when the xmin is held and full scans
   slow down, they become rarer instead of taking the worker over.
4. A worker's cursors are its own: another worker's claims lie past them, and reading them
   is the work SKIP LOCKED does anyway. Cursors never leave the process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from ..jobs import ClaimedJob, Cursors

FACTOR = 20
MIN_INTERVAL = 0.02
MAX_INTERVAL = 5.0


class ClaimCursors:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._cursors: dict[tuple[str, int], tuple[datetime, int]] = {}
        self._last_full = -float("inf")
        self._interval = MIN_INTERVAL
        self._cursor_claim_seconds = 0.0

    @property
    def interval(self) -> float:
        return self._interval

    def for_next_claim(self) -> Cursors:
        """The cursors the next claim reads from; empty when a full scan is due."""
        if self.full_scan_due_in() <= 0:
            return {}
        return dict(self._cursors)

    def full_scan_due_in(self) -> float:
        """Seconds until the next full scan is due (0 or less: due now)."""
        return self._last_full + self._interval - self._monotonic()

    def rescan(self) -> None:
        """Make the next claim a full scan (something may have landed behind the cursors)."""
        self._last_full = -float("inf")

    def claimed(self, jobs: Sequence[ClaimedJob], *, full_scan: bool, started: float) -> None:
        """Move the cursors past what a claim took; ``started``: its monotonic start."""
        now = self._monotonic()
        if full_scan:
            excess = now - started - self._cursor_claim_seconds
            self._last_full = now
            self._interval = min(MAX_INTERVAL, max(MIN_INTERVAL, FACTOR * excess))
        else:
            self._cursor_claim_seconds = now - started
        for job in jobs:
            level = (job.queue, job.priority)
            key = (job.run_at, job.id)
            current = self._cursors.get(level)
            if current is None or key > current:
                self._cursors[level] = key
