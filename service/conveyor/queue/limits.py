"""Queue limits on the worker's side: which of its queues are limited, and when to claim
each of them again.

Design (the database's side, with its invariants I1-I6, is written at the top of
sql/queries/limits.sql)
--------------------------------------------------------------------------------------
Limits live on the queue's row (rate_limit per rate_period, concurrency, and the same per
key) and are enforced by the database for every worker at once: the plain claims skip
limited queues, and a limited queue is claimed by ``claim_limited_v1``, one statement that
locks the queue's row, counts what runs and what started within each sliding window, takes
what the limits allow (per key from the head of each key's own range, merged in priority
order) and charges the windows for the jobs it took. A job held back stays waiting: it
neither fails nor uses an attempt.

A worker claims its limited queues first, each with one ``claim_limited`` statement (its
free slots, at most the claim batch), then its other queues with the plain claim, so a
limited queue is never starved by a busy unlimited one and the plain claim is unchanged.

Contracts of :class:`LimitedQueues`
-----------------------------------
1. It is a cache for liveness, never for correctness (I6): a queue wrongly believed
   unlimited yields nothing to the plain claim; one wrongly believed limited is claimed by
   claim_limited_v1, which claims it like any other. It is read at start, on every poll, and
   when ``set_queue_limits`` announces a change (notification ``#limits``).
2. A claim held back by a rate window (``next_at``) leaves the queue *blocked* until then:
   it is not asked again before (every ask takes the queue's row lock), and the worker
   wakes at that instant, so waiting jobs start when the window reopens, not at the next
   poll. The delay is measured by the database's clock (``next_at - checked_at``) and
   waited out on the worker's monotonic clock.
3. A claim held back by a concurrency cap leaves the queue blocked until a job of that
   queue this worker ran has its outcome written (that frees a start, and this worker
   claims again at once), or until the next poll (another worker's job ended).
4. Being held back is counted (``WorkerStats.limited_claims``), never logged per claim.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ..jobs import HeldBack

UNTIL_A_SLOT = math.inf


class LimitedQueues:
    def __init__(self, queues: Sequence[str]) -> None:
        self._queues = list(queues)
        self.limited: frozenset[str] = frozenset()
        self.stale = True  # read which queues are limited before the next claim
        self._blocked: dict[str, float] = {}  # queue -> monotonic time it may be asked again

    def update(self, limited: Iterable[str]) -> None:
        self.limited = frozenset(limited) & frozenset(self._queues)
        self.stale = False
        for queue in list(self._blocked):
            if queue not in self.limited:
                del self._blocked[queue]

    def plain(self) -> list[str]:
        """The queues the plain claim asks, in the worker's order."""
        if not self.limited:
            return self._queues
        return [q for q in self._queues if q not in self.limited]

    def due(self, now: float) -> list[str]:
        """The limited queues to ask now: those not blocked (contracts 2 and 3)."""
        return [q for q in self._queues if q in self.limited and self._blocked.get(q, 0.0) <= now]

    def held_back(self, held: HeldBack, now: float) -> None:
        if held.next_at is None:
            self._blocked[held.queue] = UNTIL_A_SLOT
        else:
            wait = (held.next_at - held.checked_at).total_seconds()
            self._blocked[held.queue] = now + max(0.0, wait)

    def claimed(self, queue: str) -> None:
        """A claim of the queue was not held back: nothing blocks it."""
        self._blocked.pop(queue, None)

    def slots_freed(self, queues: Iterable[str]) -> bool:
        """Outcomes of jobs of these queues were written; True if that unblocked a queue."""
        freed = False
        for queue in queues:
            if self._blocked.get(queue) == UNTIL_A_SLOT:
                del self._blocked[queue]
                freed = True
        return freed

    def polled(self) -> None:
        """A poll: read the limited set again, and ask queues waiting for a slot again."""
        self.stale = True
        for queue, until in list(self._blocked.items()):
            if until == UNTIL_A_SLOT:
                del self._blocked[queue]

    def next_due(self) -> float | None:
        """The earliest time a rate-blocked queue may be asked again (monotonic), if any."""
        times = [t for t in self._blocked.values() if t != UNTIL_A_SLOT]
        return min(times) if times else None
