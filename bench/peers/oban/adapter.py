"""Oban for Python (oban-py), as its docs run it: schema from ``oban.schema.install`` (what
``oban install`` runs); a client-mode ``Oban`` on a pool from ``Oban.create_pool`` to enqueue
(``enqueue`` for one job, ``enqueue_many`` for bulk; ``scheduled_in`` for delays); per worker
process a server-mode ``Oban`` with one queue whose limit is ``--concurrency``, on uvloop with
orjson for JSON as ``oban start`` sets them up. Leadership, stager, lifeline, pruner and
refresher are on, as by default.

Not taken from ``oban start``: its telemetry logger (one log line per job, to stderr, which
the harness pipes and reads only at the end)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.common import Adapter, Recorder, main, table_sizes
from oban import Job, Oban, worker
from oban.schema import install

QUEUE = "bench"
_record: Recorder | None = None

if sys.argv[1:2] == ["worker"]:
    # `oban start` (oban.cli) runs on uvloop and sets psycopg's JSON to orjson; common.py calls
    # asyncio.run, so switch its loop policy here.
    import orjson
    import uvloop
    from psycopg.types.json import set_json_dumps, set_json_loads

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    set_json_dumps(orjson.dumps)
    set_json_loads(orjson.loads)


@worker(queue=QUEUE)
class Noop:
    async def process(self, job: Job) -> None:
        if _record is not None:
            _record(job.args)


class ObanAdapter(Adapter):
    name = "oban-py"
    concurrency = 1000  # the queue's limit; see NOTES.md for the sweep

    async def setup(self) -> None:
        pool = await Oban.create_pool(self.url)
        try:
            await install(pool)
        finally:
            await pool.close()

    async def open(self) -> None:
        self.pool = await Oban.create_pool(self.url)
        self.oban = await Oban(pool=self.pool).start()  # client mode: no queues

    async def close(self) -> None:
        await self.oban.stop()
        await self.pool.close()

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        await self.oban.enqueue(Noop.new(payload))

    async def enqueue_many(self, payloads: Sequence[dict[str, Any]], *, delay: float = 0.0) -> None:
        if delay > 0:
            await self.oban.enqueue_many([Noop.new(p, scheduled_in=delay) for p in payloads])
        else:
            await self.oban.enqueue_many([Noop.new(p) for p in payloads])

    async def run_worker(self, concurrency: int, record: Recorder) -> None:
        global _record
        _record = record
        pool = await Oban.create_pool(self.url)
        async with Oban(pool=pool, queues={QUEUE: concurrency}):
            await asyncio.Event().wait()  # until SIGTERM

    async def sizes(self) -> dict[str, int]:
        return await table_sizes(self.url, "oban")


if __name__ == "__main__":
    main(ObanAdapter, __file__)
