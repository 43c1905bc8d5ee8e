"""PgQueuer, as its docs run it: schema from ``Queries.install()`` (what ``pgq install`` runs)
plus ``Queries.optimize_autovacuum()`` (``pgq autovac``, on the docs' production checklist);
enqueue through ``Queries.enqueue`` (scalar form for one job, list form for bulk, one
``unnest`` INSERT); a ``QueueManager`` per worker process on its own asyncpg connection
(``AsyncpgDriver``), on uvloop as ``pgq run`` does, with one entrypoint.

The worker's batch size and its per-process cap (``max_concurrent_tasks``) are set below;
``--concurrency`` is the cap. ``PGQ_BATCH_SIZE`` overrides the batch size (for tuning)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.common import Adapter, Recorder, main, table_sizes
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

ENTRYPOINT = "bench"
BATCH_SIZE = 1000  # jobs per dequeue statement; see NOTES.md for the sweep

if sys.argv[1:2] == ["worker"]:
    # `pgq run` (pgqueuer.adapters.cli.cli.asyncio_run) runs its workers on uvloop, which
    # pgqueuer depends on; common.py calls asyncio.run, so switch its loop policy here.
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class PgQueuerAdapter(Adapter):
    name = "pgqueuer"
    concurrency = 2 * BATCH_SIZE  # max_concurrent_tasks; PgQueuer requires >= 2 x batch_size

    async def setup(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            queries = Queries(AsyncpgDriver(conn))
            await queries.install()
            await queries.optimize_autovacuum()
        finally:
            await conn.close()

    async def open(self) -> None:
        self.conn = await asyncpg.connect(self.url)
        self.queries = Queries(AsyncpgDriver(self.conn))

    async def close(self) -> None:
        await self.conn.close()

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        await self.queries.enqueue(ENTRYPOINT, json.dumps(payload).encode())

    async def enqueue_many(self, payloads: Sequence[dict[str, Any]], *, delay: float = 0.0) -> None:
        n = len(payloads)
        await self.queries.enqueue(
            [ENTRYPOINT] * n,
            [json.dumps(p).encode() for p in payloads],
            [0] * n,
            [timedelta(seconds=delay)] * n if delay > 0 else None,
        )

    async def run_worker(self, concurrency: int, record: Recorder) -> None:
        batch_size = int(os.environ.get("PGQ_BATCH_SIZE", BATCH_SIZE))
        if concurrency > 0:
            batch_size = max(1, min(batch_size, concurrency // 2))  # PgQueuer requires cap >= 2 x batch
        if os.environ.get("PGQ_DRIVER") == "psycopg":  # tuning only: the docs' slower driver
            from pgqueuer import PsycopgDriver

            driver: Any = PsycopgDriver(await psycopg.AsyncConnection.connect(self.url, autocommit=True))
        else:
            driver = AsyncpgDriver(await asyncpg.connect(self.url))
        qm = QueueManager(Queries(driver))

        @qm.entrypoint(ENTRYPOINT)
        async def bench(job: Job) -> None:
            record(json.loads(job.payload or b"{}"))

        # concurrency 0 is not reachable from the command line (common.py treats it as unset);
        # a negative value means no per-process cap (PgQueuer's default).
        await qm.run(batch_size=batch_size, max_concurrent_tasks=concurrency if concurrency > 0 else None)

    async def sizes(self) -> dict[str, int]:
        return await table_sizes(self.url, "pgqueuer")


if __name__ == "__main__":
    main(PgQueuerAdapter, __file__)
