"""procrastinate, as its users run it: an `App` on a `PsycopgConnector`, its schema installed
with `schema_manager.apply_schema_async()`, jobs deferred with `defer_async` (one) and
`batch_defer_async` (bulk, one `procrastinate_defer_jobs_v1` call), a worker per process with
`run_worker_async(concurrency=..., queues=["bench"])`. LISTEN/NOTIFY on, finished jobs kept
(its default, `delete_jobs="never"`). See NOTES.md for the settings."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import procrastinate

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.common import Adapter, Recorder, main, table_sizes

_record: Recorder | None = None


async def noop(i: int, t: float) -> None:
    if _record is not None:
        _record({"i": i, "t": t})


def make_app(url: str, **pool: Any) -> tuple[procrastinate.App, Any]:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, **pool))
    task = app.task(name="noop", queue="bench")(noop)
    return app, task


# procrastinate's docs ("Mind the size of your PostgreSQL pool"): for short jobs the pool
# should hold as many connections as the concurrency, plus one. The server here allows 100
# connections in all and other benchmarks share it, so the worker's pool is capped.
POOL_CAP = 20


class ProcrastinateAdapter(Adapter):
    name = "procrastinate"
    concurrency = 10

    async def setup(self) -> None:
        app, _ = make_app(self.url, min_size=1, max_size=1)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def open(self) -> None:
        self.app, self.task = make_app(self.url, min_size=1, max_size=4)
        await self.app.open_async()

    async def close(self) -> None:
        await self.app.close_async()

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        await self.task.defer_async(**payload)

    async def enqueue_many(self, payloads: Sequence[dict[str, Any]], *, delay: float = 0.0) -> None:
        deferrer = self.task.configure(schedule_in={"seconds": delay}) if delay > 0 else self.task.configure()
        await deferrer.batch_defer_async(*payloads)

    async def run_worker(self, concurrency: int, record: Recorder) -> None:
        global _record
        _record = record
        size = min(concurrency + 1, POOL_CAP)
        app, _ = make_app(self.url, min_size=size, max_size=size)
        async with app.open_async():
            # install_signal_handlers=False: the harness owns SIGTERM (it flushes the record).
            await app.run_worker_async(
                concurrency=concurrency, queues=["bench"], install_signal_handlers=False
            )

    async def sizes(self) -> dict[str, int]:
        return await table_sizes(self.url, "procrastinate")


if __name__ == "__main__":
    main(ProcrastinateAdapter, __file__)
