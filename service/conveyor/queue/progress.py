"""Progress reports, coalesced: only the latest report of each job is written, by one writer.

A task may report progress in a tight loop (a row at a time in a large export); each report
must not become a statement of its own, or reports would crowd the pool the heartbeat and
the acks need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

from ..db.database import Database
from ..jobs import Held
from .context import ProgressSink

log = logging.getLogger("conveyor.worker")


class ProgressWriter:
    def __init__(self, db: Database, worker_id: UUID, *, interval: float = 0.25) -> None:
        self._db = db
        self._worker_id = worker_id
        self._interval = interval
        self._latest: dict[Held, tuple[int | None, str | None]] = {}
        self._ready = asyncio.Event()
        self.writes = 0

    def sink(self, held: Held) -> ProgressSink:
        """A callable a task may use from the event loop or from its own thread."""
        loop = asyncio.get_running_loop()

        def report(percent: int | None, message: str | None) -> None:
            # RuntimeError: the worker has stopped and its loop is closed; nobody will read it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._record, held, percent, message)

        return report

    def _record(self, held: Held, percent: int | None, message: str | None) -> None:
        self._latest[held] = (percent, message)
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._latest = self._latest, {}
            self.writes += 1
            try:
                await self._db.set_progress(batch, worker_id=self._worker_id)
            except Exception as exc:
                log.warning("progress of %d jobs not recorded: %s", len(batch), exc)
            await asyncio.sleep(self._interval)
