"""LISTEN on a dedicated connection and wake the worker when its queues get jobs.

Notifications carry a queue name only, never job data. They are a hint: the worker also
polls, so a lost notification (connection drop, PgBouncer in between) delays a job by at
most one poll interval. The connection is direct, not pooled, so it survives a pooler in
transaction mode; it is checked every ``keepalive`` seconds and re-opened with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from ..db.connections import KEEPALIVES
from ..db.queries import Queries

log = logging.getLogger("conveyor.worker")


class Notifier:
    def __init__(
        self,
        conninfo: str,
        queries: Queries,
        on_notify: Callable[[str], None],
        *,
        on_connect: Callable[[], None] | None = None,
        keepalive: float = 30.0,
    ) -> None:
        self._conninfo = conninfo
        self._queries = queries
        self._on_notify = on_notify
        self._on_connect = on_connect
        self._keepalive = keepalive
        self.listening = asyncio.Event()
        self.connection: psycopg.AsyncConnection[object] | None = None

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._listen()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay)
            except Exception:
                log.exception("LISTEN failed; reconnecting in %.1fs", delay)
            if self.listening.is_set():
                delay = 0.1  # it had been working: retry quickly
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, **KEEPALIVES
        ) as conn:
            self.connection = conn
            await conn.execute(self._queries["listen"])
            self.listening.set()
            if self._on_connect is not None:
                # Anything enqueued while we were not listening was not announced to us.
                self._on_connect()
            while True:
                async for notify in conn.notifies(timeout=self._keepalive):
                    self._on_notify(notify.payload)
                await conn.execute(self._queries["ping"])
