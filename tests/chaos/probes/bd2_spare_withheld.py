"""B2 at a pool bigger than one: Conveyor(pool_size=4) with 3 slow calls holding connections
(a 12 s statement each, as a large enqueue_many or a slow queue_stats under a lock would) and
2 quick enqueues at once. The first quick one gives its connection back as the spare; the
second, already waiting in the pool, is never handed it. Expect both quick ones in ms.
Run: PYTHONPATH=probes .venv/bin/python probes/bd2_spare_withheld.py $URL"""
from __future__ import annotations

import asyncio
import sys
import time

from conveyor import Conveyor

import probe_tasks  # noqa: F401

URL = sys.argv[1]


async def slow(client: Conveyor) -> None:
    async with client.db.connection() as conn:  # the path every client call borrows through
        await conn.execute("select pg_sleep(12)")


async def quick(client: Conveyor, t0: float, label: str) -> str:
    try:
        await client.enqueue("arec", {"n": 1, "sleep": 0})
        return f"{label}: ok after {time.monotonic() - t0:.2f} s"
    except Exception as exc:  # noqa: BLE001
        return f"{label}: {type(exc).__name__} after {time.monotonic() - t0:.2f} s"


async def main() -> None:
    async with Conveyor(URL, pool_size=4) as client:
        await client.enqueue("arec", {"n": 0, "sleep": 0})
        slows = [asyncio.create_task(slow(client)) for _ in range(3)]
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        print(*(await asyncio.gather(quick(client, t0, "quick 1"), quick(client, t0, "quick 2"))), sep="\n")
        await asyncio.gather(*slows)


asyncio.run(main())
