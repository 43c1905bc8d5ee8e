"""Reads with a deadline, for callers that must answer on time whatever the database does
(``/health`` and ``/metrics``).

Contract: :class:`Deadline` bounds a whole read, from waiting for a connection to the last
row. When the time passes, the connection in use is cut at its socket (so whatever waits on
it fails at once, and psycopg does not ask a server that stopped answering to cancel the
statement, waiting seconds for that), and the read raises :class:`DeadlinePassed`. A
connection cut so is broken: a pool discards it, a connection of the caller's own is closed
by the caller as usual.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import psycopg

from ..db.connections import drop

# How long after the deadline the read's task is cancelled, should cutting the connection
# not end it (no connection yet: waiting for the pool, or connecting).
CANCEL_MARGIN = 0.25


class DeadlinePassed(Exception):
    """The database did not answer within the deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"the database did not answer within {seconds:g} s")


class Deadline:
    """``async with Deadline(seconds) as deadline:`` then ``deadline.watch(conn)`` for the
    connection the read uses."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> Deadline:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.seconds, self._expire)
        self._timeout = asyncio.timeout(self.seconds + CANCEL_MARGIN)
        await self._timeout.__aenter__()
        return self

    def watch(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Cut ``conn`` when the deadline passes (at once if it has passed already)."""
        self._conn = conn
        if self.expired:
            drop(conn)

    def _expire(self) -> None:
        self.expired = True
        if self._conn is not None:
            drop(self._conn)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        assert self._timeout is not None
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            raise DeadlinePassed(self.seconds) from None
        if self.expired and isinstance(exc, psycopg.Error):
            raise DeadlinePassed(self.seconds) from exc
