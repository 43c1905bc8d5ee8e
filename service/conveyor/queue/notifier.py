"""LISTEN on a dedicated connection and wake the worker when its queues get jobs.

Notifications carry a queue name only, never job data. With ``on_control``, the connection
also listens on "<schema>.control", whose payloads are 'abort <job id>' (stop that job if this
worker runs it) and 'rescan' (a pause ended: jobs may sit behind the claim's cursors); see
docs/job-control.md. An abort whose notification is lost arrives with the next heartbeat. They are a hint: the worker also
polls, so a lost notification (connection drop, PgBouncer in between) delays a job by at
most one poll interval. The connection is direct, not pooled (give a direct URL when the
pool goes through a pooler in transaction mode); it is re-opened with a short backoff.

A watchdog: when nothing has arrived for ``keepalive`` seconds the connection is pinged, and a
ping not answered within the deadline drops it (a link gone half-open delivers nothing and
reports no error), so LISTEN is set up again on a new connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import psycopg

from ..db.connections import connect_kwargs, deadline_of, drop
from ..db.errors import DeadlineExceeded, describe
from ..db.queries import Queries
from ..settings import Timeouts

log = logging.getLogger("conveyor.worker")

# Longest wait between attempts to listen again: work resumes within about this long of the
# server coming back (the pool's own statements do not wait on it).
MAX_RECONNECT_DELAY = 1.0


class Notifier:
    def __init__(
        self,
        conninfo: str,
        queries: Queries,
        on_notify: Callable[[str], None],
        *,
        on_connect: Callable[[], None] | None = None,
        on_control: Callable[[str], None] | None = None,
        timeouts: Timeouts | None = None,
        listen: bytes | None = None,
    ) -> None:
        """``listen``: the LISTEN statement (default: the schema's channel, queue names)."""
        self._conninfo = conninfo
        self._listen_statement = listen if listen is not None else queries["listen"]
        self._queries = queries
        self._on_notify = on_notify
        self._on_connect = on_connect
        self._on_control = on_control
        # PostgreSQL cuts channel names at 63 bytes (schema names are ASCII): so does the SQL
        # that notifies (left(current_schema() || '.control', 63)).
        self.control_channel = (queries.channel + ".control")[:63]
        self._timeouts = timeouts or Timeouts()
        self._keepalive = self._timeouts.listen_check
        self._deadline = deadline_of(self._timeouts) or self._timeouts.listen_check
        self.connects = 0
        self._lost_at: float | None = None  # when LISTEN was lost, until it is set up again
        self.listening = asyncio.Event()
        self.connection: psycopg.AsyncConnection[object] | None = None

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.listening.clear()  # cancelled or stopped: whoever reads it sees no LISTEN

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._listen()
            except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError) as exc:
                if self.listening.is_set() or self._lost_at is None:
                    self._lost_at = time.monotonic()
                log.warning(
                    "LISTEN connection lost (%s); reconnecting in %.1fs",
                    describe(exc),
                    delay,
                    extra={"event": "listen_lost", "error": str(exc)},
                )
            except Exception:
                log.exception("LISTEN failed; reconnecting in %.1fs", delay)
            if self.listening.is_set():
                delay = 0.1  # it had been working: retry quickly
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    async def _listen(self) -> None:
        kwargs = connect_kwargs(self._timeouts)
        kwargs.pop("options", None)  # the LISTEN connection runs no statement worth a timeout
        async with await psycopg.AsyncConnection.connect(self._conninfo, **kwargs) as conn:
            self.connection = conn
            await self._answered(conn, self._listen_statement)
            if self._on_control is not None:
                await self._answered(
                    conn, self._queries.compose("listen_control", control=(self.control_channel,))
                )
            self.connects += 1
            self.listening.set()
            if self._lost_at is not None:
                down = time.monotonic() - self._lost_at
                self._lost_at = None
                log.info(
                    "LISTEN set up again after %.1fs without it",
                    down,
                    extra={"event": "listen_restored", "seconds_without": round(down, 3)},
                )
            if self._on_connect is not None:
                # Anything enqueued while we were not listening was not announced to us.
                self._on_connect()
            while True:
                async for notify in conn.notifies(timeout=self._keepalive):
                    if notify.channel == self.control_channel and self._on_control is not None:
                        self._on_control(notify.payload)
                    else:
                        self._on_notify(notify.payload)
                await self._answered(conn, self._queries["ping"])

    async def _answered(self, conn: psycopg.AsyncConnection[object], query: bytes) -> None:
        """Run a statement; drop the connection if it is not answered within the deadline."""
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            drop(conn)

        timer = asyncio.get_running_loop().call_later(self._deadline, expire)
        try:
            await conn.execute(query)
        except psycopg.Error as exc:
            if expired:
                raise DeadlineExceeded(f"no answer within {self._deadline:g}s; connection dropped") from exc
            raise
        finally:
            timer.cancel()
