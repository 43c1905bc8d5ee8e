"""Conveyor(pool_size=N) with more concurrent callers than N: the connection given back last
is kept aside as the 'spare' for the next borrower, while callers already waiting in the pool
are not handed it. With pool_size=1, do concurrent enqueues finish, and how long do they take?
Run: PYTHONPATH=probes .venv/bin/python probes/bd_pool_of_one.py $URL"""
from __future__ import annotations

import asyncio
import sys
import time

from conveyor import Conveyor

import probe_tasks  # noqa: F401  (registers the tasks)

URL = sys.argv[1]


async def trial(pool_size: int, callers: int, what: str) -> None:
    async with Conveyor(URL, pool_size=pool_size) as client:
        await client.enqueue("arec", {"n": 0, "sleep": 0})  # learn the queue
        t0 = time.monotonic()
        if what == "enqueue":
            calls = [client.enqueue("arec", {"n": i, "sleep": 0}) for i in range(callers)]
        else:
            calls = [client.queue_stats() for _ in range(callers)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        errors = [type(r).__name__ for r in results if isinstance(r, BaseException)]
        print(f"pool_size={pool_size} {callers} concurrent {what}: {time.monotonic() - t0:.2f} s, errors: {errors or 'none'}", flush=True)


async def main() -> None:
    await trial(1, 3, "queue_stats")
    await trial(1, 3, "enqueue")
    await trial(2, 6, "enqueue")
    await trial(4, 40, "enqueue")


asyncio.run(main())
