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

A worker claims its limited queues with one ``claim_limited`` statement each, and its other
queues with the plain claim, unchanged. A worker with nothing limited to ask (the common
case) runs the plain claim alone, with all its free slots.

Contracts of :class:`LimitedQueues`
-----------------------------------
1. It is a cache for liveness, never for correctness (I6): a queue wrongly believed
   unlimited yields nothing to the plain claim; one wrongly believed limited is claimed by
   claim_limited_v1, which claims it like any other. It is read at start, at least once per
   poll interval, and when ``set_queue_limits`` announces a change (notification
   ``#limits``).
2. A claim held back by a rate window (``next_at``: the earliest instant anything held
   back may start, over the queue's window and every held key's) leaves the queue
   *blocked* until then: the worker wakes at that instant, so waiting jobs start when the
   window reopens, not at the next poll. The delay is measured by the database's clock
   (``next_at - checked_at``) and waited out on the worker's monotonic clock.
3. A claim held back by a concurrency cap leaves the queue blocked until a job of that
   queue this worker ran has its outcome written (that frees a start), or for at most one
   poll interval (another worker's job ended), measured by elapsed time whatever else
   wakes the worker.
4. A block is a hint to save claims, never a hold on jobs the database would start. It is
   lifted early by what may let a held job start: a wake-up for the queue (a job was
   enqueued) lifts a hold by per-key limits only (the new job may be of a free key); the
   end of one of the queue's jobs here lifts that and a hold by the queue's cap; a change
   of limits (``#limits``) lifts every block. An event that comes while the queue's claim
   is in flight lifts the hold that claim returns likewise (its snapshot may predate it).
   The database decides what may start.
5. Being held back is counted (``WorkerStats.limited_claims``), never logged per claim. A
   limited claim that fails (say, a limit the database cannot compute with) is logged,
   counted (``WorkerStats.limited_claim_errors``) and blocks that queue for a poll
   interval; the worker's other queues are claimed as usual.
6. When both limited queues (not blocked) and plain queues are to be asked, they share the
   claim's slots: the side that goes first, in turn from one claim to the next, takes at
   most half, the other side what is left (and the next claim follows at once when the
   first side filled its half). So neither a limited queue's backlog nor a busy plain queue
   takes every slot; priority orders the jobs within each side's claim, not across sides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ..jobs import HeldBack

# What blocks a queue, and the events that lift each block early (contract 4).
RATE = "rate"  # the queue's own window: only its reopen (or a change of limits)
SLOT = "slot"  # the queue's own cap: a job's end here, a poll interval
KEYS = "keys"  # per-key limits only: a new job (maybe of a free key), a job's end, the time
FAILED = "failed"  # the claim failed: a poll interval
ENQUEUED = "enqueued"
ENDED = "ended"
CHANGED = "changed"
LIFTS: dict[str, frozenset[str]] = {
    ENQUEUED: frozenset({KEYS}),
    ENDED: frozenset({SLOT, KEYS}),
    CHANGED: frozenset({RATE, SLOT, KEYS, FAILED}),
}


class LimitedQueues:
    def __init__(self, queues: Sequence[str], poll_interval: float) -> None:
        self._queues = list(queues)
        self._poll_interval = poll_interval
        self.limited: frozenset[str] = frozenset()
        self._read_at = -math.inf  # monotonic time the limited set was last read
        self._stale = True  # read which queues are limited before the next claim
        # queue -> (monotonic time it may be asked again, what blocks it)
        self._blocked: dict[str, tuple[float, str]] = {}
        # Queues with a claim in flight -> the events since it began: its snapshot may predate
        # them, so a hold they would lift does not block the queue (it is asked again).
        self._in_flight: dict[str, set[str]] = {}

    def stale(self, now: float) -> bool:
        """Whether to read the limited set before claiming (contract 1)."""
        return self._stale or now - self._read_at >= self._poll_interval

    def update(self, limited: Iterable[str], now: float) -> None:
        self.limited = frozenset(limited) & frozenset(self._queues)
        self._stale = False
        self._read_at = now
        for queue in list(self._blocked):
            if queue not in self.limited:
                del self._blocked[queue]

    def changed(self) -> None:
        """Limits changed (``#limits``): read the set again, and every block goes (contract 4)."""
        self._stale = True
        for queue in self._queues:
            self._event(queue, CHANGED)

    def plain(self) -> list[str]:
        """The queues the plain claim asks, in the worker's order."""
        if not self.limited:
            return self._queues
        return [q for q in self._queues if q not in self.limited]

    def due(self, now: float) -> list[str]:
        """The limited queues to ask now: those not blocked (contracts 2 and 3)."""
        blocked = self._blocked
        return [q for q in self._queues if q in self.limited and (q not in blocked or blocked[q][0] <= now)]

    def asking(self, queue: str) -> None:
        """A claim of the queue begins."""
        self._in_flight[queue] = set()

    def held_back(self, held: HeldBack, now: float) -> None:
        kind = KEYS if not held.by_queue else SLOT if held.next_at is None else RATE
        events = self._in_flight.pop(held.queue, set())
        if any(kind in LIFTS[event] for event in events):
            return  # lifted while this claim ran: ask again rather than trust its hold
        if held.next_at is None:  # until a slot frees: a job's end here, or a poll interval
            until = now + self._poll_interval
        else:
            until = now + max(0.0, (held.next_at - held.checked_at).total_seconds())
        self._blocked[held.queue] = (until, kind)

    def failed(self, queue: str, now: float) -> None:
        """A claim of the queue failed: ask it again after a poll interval (contract 5)."""
        self._in_flight.pop(queue, None)
        self._blocked[queue] = (now + self._poll_interval, FAILED)

    def claimed(self, queue: str) -> None:
        """A claim of the queue was not held back: nothing blocks it."""
        self._in_flight.pop(queue, None)
        self._blocked.pop(queue, None)

    def woken(self, queue: str) -> bool:
        """A job was enqueued into the queue (its wake-up): True if that lifted a block or may
        lift the hold of a claim in flight (contract 4)."""
        return self._event(queue, ENQUEUED)

    def slots_freed(self, queues: Iterable[str]) -> bool:
        """Outcomes of jobs of these queues were written; True if that lifted a block (a
        start may be free: claim again) or may lift the hold of a claim in flight."""
        lifted = False
        for queue in queues:
            lifted = self._event(queue, ENDED) or lifted
        return lifted

    def next_due(self) -> float | None:
        """The earliest time a blocked queue may be asked again (monotonic), if any."""
        return min(until for until, _ in self._blocked.values()) if self._blocked else None

    def _event(self, queue: str, event: str) -> bool:
        in_flight = self._in_flight.get(queue)
        if in_flight is not None:
            in_flight.add(event)
        block = self._blocked.get(queue)
        if block is not None and block[1] in LIFTS[event]:
            del self._blocked[queue]
            return True
        return in_flight is not None
