"""Waking workers after an enqueue on the client's own connection has committed.

PostgreSQL delivers a NOTIFY when its transaction commits, and to keep notifications in
commit order it takes one database-wide lock at commit and holds it until the commit is
done, disk flush included. An enqueue that notifies in its own transaction therefore
commits one at a time with every other notifying transaction: concurrent producers lose
group commit, and single-job enqueue stops scaling with producers (bench/RESULTS.md,
"Concurrent enqueue").

So the client's commonest enqueue (a job due now, on the client's own connection), when
another of the client's enqueues is in flight, does not notify in its transaction. Once it
has committed, :meth:`WakeUps.after_commit` asks for the queue to be woken; one
notification is in flight at a time per client, in a transaction of its own whose commit
does not wait for the disk (it writes nothing a crash could lose but the notification,
which the workers' poll makes good). Commits that happen while one is in flight are woken
by the next, which starts as soon as it returns. An enqueue with none other of the client's
in flight notifies in its own transaction, as before: a lone producer pays no extra
statement and its workers hear of the job at its commit.

Contract: every enqueue through :meth:`WakeUps.enqueue` either notifies in its own
transaction or, once committed, is followed by a notification for its queue sent after
that commit. Enqueues in a caller's transaction (whose commit the client does not see) and
from SQL keep notifying in their own transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

log = logging.getLogger("conveyor.client")

Send = Callable[[Sequence[str]], Awaitable[object]]


class WakeUps:
    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending: set[str] = set()
        self._sending: asyncio.Task[None] | None = None
        self._enqueues = 0  # the client's enqueues in flight

    def enqueue(self, queue: str) -> Enqueue:
        """``async with`` around one enqueue into ``queue``; gives whether it notifies in its
        own transaction. If not, the queue is woken once the block ends without an error."""
        return Enqueue(self, queue)

    def after_commit(self, queue: str) -> None:
        """A job due now in ``queue`` has committed: wake its workers."""
        self._pending.add(queue)
        if self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._send_pending())

    async def flush(self) -> None:
        """Wait until every wake-up asked for so far has been sent (or has failed)."""
        while self._sending is not None:
            await asyncio.shield(self._sending)

    async def _send_pending(self) -> None:
        try:
            while self._pending:
                queues, self._pending = sorted(self._pending), set()
                await self._send_twice(queues)
        finally:
            self._sending = None

    async def _send_twice(self, queues: Sequence[str]) -> None:
        """A wake-up that failed is sent once more (on another connection: the client's
        database replaces a failed one), since the jobs it announces were committed without
        one; a second failure leaves them to the workers' poll."""
        for attempt in (1, 2):
            try:
                await self._send(queues)
                return
            except Exception as exc:
                if attempt == 1:
                    continue
                log.warning(
                    "could not wake the workers of %s (%s); they find the jobs at their next poll",
                    ", ".join(queues),
                    exc,
                    extra={"event": "wake_up_lost", "queues": list(queues), "error": str(exc)},
                )


class Enqueue:
    """The context of :meth:`WakeUps.enqueue`. A class, not a generator-based context manager:
    it wraps every single enqueue, and a generator-based one costs several times as much."""

    __slots__ = ("_in_transaction", "_queue", "_wake_ups")

    def __init__(self, wake_ups: WakeUps, queue: str) -> None:
        self._wake_ups = wake_ups
        self._queue = queue
        self._in_transaction = True

    async def __aenter__(self) -> bool:
        wake_ups = self._wake_ups
        self._in_transaction = wake_ups._enqueues == 0
        wake_ups._enqueues += 1
        return self._in_transaction

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        wake_ups = self._wake_ups
        wake_ups._enqueues -= 1
        if exc_type is None and not self._in_transaction:
            wake_ups.after_commit(self._queue)
