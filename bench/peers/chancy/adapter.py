"""Chancy, as its users run it: a `Chancy` app, its schema installed with `migrate()`, a
queue declared with the `AsyncExecutor` (Chancy's executor for async jobs), jobs pushed with
`push` (one) and `push_many` (bulk), a `Worker` per process with its default plugins
(leadership, pruner, recovery, metrics, workflows) and LISTEN/NOTIFY on. See NOTES.md for
the settings."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chancy import Chancy, Job, Queue, Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.common import Adapter, Recorder, main, table_sizes

_record: Recorder | None = None


async def noop(i: int, t: float) -> None:
    if _record is not None:
        _record({"i": i, "t": t})


# Chancy stores the job's function as an import path. Every process of the benchmark runs
# this file as __main__ (the worker too), so that is where the worker finds `noop`.
FUNC = "__main__.noop"
QUEUE = "bench"

# Chancy's default logger prints an INFO line per job pulled ("Pulled ..."). The harness
# pipes a worker's stderr and reads it only when the worker ends, so it would fill the pipe
# and stall the worker; and a production deployment logs jobs at WARNING or sends them to
# its metrics, not to a console. Warnings and errors still show.
_log = logging.getLogger("chancy.bench")
_log.setLevel(logging.WARNING)
_log.addHandler(logging.StreamHandler())
_log.propagate = False


def queue(concurrency: int) -> Queue:
    # eager_polling: poll again as soon as a job finishes instead of waiting for the
    # polling interval or a push notification; see NOTES.md.
    return Queue(name=QUEUE, concurrency=concurrency, executor=Chancy.Executor.Async, eager_polling=True)


class ChancyAdapter(Adapter):
    name = "chancy"
    concurrency = 500

    async def setup(self) -> None:
        async with Chancy(self.url, log=_log) as chancy:
            await chancy.migrate()
            # A Worker declares a "default" queue on start (process executor). The benchmark
            # never uses it: declared first with no tags it is left unassigned, so no worker
            # starts a process pool for it. (Those pool processes also outlive a worker that
            # the harness ends with os._exit and keep its stderr pipe open, which hangs the
            # harness when it stops the worker.)
            await chancy.declare(Queue(name="default", tags=set()), upsert=True)
            await chancy.declare(queue(self.concurrency), upsert=True)

    async def open(self) -> None:
        self.chancy = Chancy(self.url, log=_log)
        await self.chancy.__aenter__()

    async def close(self) -> None:
        await self.chancy.__aexit__(None, None, None)

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        await self.chancy.push(Job(func=FUNC, queue=QUEUE, kwargs=payload))

    async def enqueue_many(self, payloads: Sequence[dict[str, Any]], *, delay: float = 0.0) -> None:
        at = datetime.now(tz=UTC) + timedelta(seconds=delay)
        jobs = [Job(func=FUNC, queue=QUEUE, kwargs=p, scheduled_at=at) for p in payloads]
        async for _ in self.chancy.push_many(jobs):
            pass

    async def run_worker(self, concurrency: int, record: Recorder) -> None:
        global _record
        _record = record
        async with Chancy(self.url, log=_log) as chancy:
            # Concurrency is a property of the queue (per worker process) kept in the database.
            await chancy.declare(queue(concurrency), upsert=True)
            # register_signal_handlers=False: the harness owns SIGTERM (it flushes the record).
            worker = Worker(chancy, register_signal_handlers=False)
            await worker.start()
            await worker.wait_for_shutdown()

    async def sizes(self) -> dict[str, int]:
        return await table_sizes(self.url, "chancy")


if __name__ == "__main__":
    main(ChancyAdapter, __file__)
