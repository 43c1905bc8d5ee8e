"""BullMQ for Python (PyPI `bullmq`) on its PostgreSQL backend, as its users run it: a `Queue`
and a `Worker` with opts {"backend": "postgres", "connection": URL} (schema `bullmq`, its
default); the schema comes from the backend's own migrations (`waitUntilReady`). Enqueue is
`Queue.add`, bulk is `Queue.addBulk` (one `add_jobs_bulk` statement), delay is the `delay` job
option in ms. Finished jobs are trimmed as BullMQ's "Auto-removal of jobs" guide advises:
removeOnComplete {count: 1000}, removeOnFail {count: 5000}."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.common import Adapter, Recorder, main
from bullmq import Queue, Worker

QUEUE = "bench"
SCHEMA = "bullmq"  # the backend's default schema
KEEP = {"removeOnComplete": {"count": 1000}, "removeOnFail": {"count": 5000}}


class BullMQPostgres(Adapter):
    name = "bullmq-py (PostgreSQL)"
    concurrency = 50

    def _opts(self) -> dict[str, Any]:
        return {"backend": "postgres", "connection": self.url, "schema": SCHEMA}

    async def setup(self) -> None:
        queue = Queue(QUEUE, self._opts())
        try:
            await queue.backend.waitUntilReady()  # runs the bundled migrations
        finally:
            await queue.close()

    async def open(self) -> None:
        self.queue = Queue(QUEUE, self._opts())

    async def close(self) -> None:
        await self.queue.close()

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        await self.queue.add("noop", payload)

    async def enqueue_many(self, payloads: Sequence[dict[str, Any]], *, delay: float = 0.0) -> None:
        opts = {"delay": int(delay * 1000)} if delay > 0 else {}
        await self.queue.addBulk([{"name": "noop", "data": p, "opts": opts} for p in payloads])

    async def run_worker(self, concurrency: int, record: Recorder) -> None:
        async def process(job: Any, token: str) -> None:
            record(job.data)

        worker = Worker(
            QUEUE, process, {**self._opts(), "concurrency": concurrency, "autorun": False, **KEEP}
        )
        await worker.run()

    async def sizes(self) -> dict[str, int]:
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            rows = await (
                await conn.execute(
                    "SELECT c.relname, pg_total_relation_size(c.oid)::bigint FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                    [SCHEMA],
                )
            ).fetchall()
        return {name: int(size) for name, size in rows if size}


if __name__ == "__main__":
    main(BullMQPostgres, __file__)
