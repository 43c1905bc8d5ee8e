"""durable=False is SET LOCAL for the enqueue's transaction only: on the same pooled
connection (pool of 1, and the spare), synchronous_commit must read 'on' afterwards, for each
enqueue path: due now (fast path), unknown queue first time, delay, run_at, unique key,
enqueue_many, and a client made with durable_enqueue=False. Also: the caller's connection
(conn=) keeps its own setting.
Run: .venv/bin/python probes/bc_durable_false_scope.py $URL"""
from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta, timezone

import psycopg

from conveyor import Conveyor, JobRequest

import probe_tasks  # noqa: F401  (registers the tasks)

URL = sys.argv[1]


async def show(client: Conveyor) -> str:
    async with client.db.connection() as conn:
        cur = await conn.execute("select current_setting('synchronous_commit'), pg_backend_pid(), now() = statement_timestamp()")
        row = await cur.fetchone()
    return f"{row[0]} (pid {row[1]})"


async def main() -> None:
    async with Conveyor(URL, pool_size=1) as client:
        print("before:", await show(client))
        await client.enqueue("arec", {"n": 0, "sleep": 0}, queue="fresh_q" if False else None, durable=False)
        print("first enqueue (queue learnt):", await show(client))
        await client.enqueue("arec", {"n": 1, "sleep": 0}, durable=False)
        print("due-now fast path:", await show(client))
        await client.enqueue("arec", {"n": 2, "sleep": 0}, delay=5, durable=False)
        print("delay:", await show(client))
        await client.enqueue("arec", {"n": 3, "sleep": 0}, run_at=datetime.now(timezone.utc) + timedelta(seconds=5), durable=False)
        print("run_at:", await show(client))
        await client.enqueue("arec", {"n": 4, "sleep": 0}, unique_key="k1", durable=False)
        await client.enqueue("arec", {"n": 5, "sleep": 0}, unique_key="k1", durable=False)
        print("unique key (twice):", await show(client))
        # (concurrent enqueues on a pool of one fail: see bd_pool_of_one.py)
        await client.enqueue_many([JobRequest("arec", {"n": 99, "sleep": 0})])
        print("enqueue_many:", await show(client))
    async with Conveyor(URL, pool_size=1, durable_enqueue=False) as client:
        await client.enqueue("arec", {"n": 6, "sleep": 0})
        await client.enqueue("arec", {"n": 7, "sleep": 0}, unique_key="k2")
        print("client durable_enqueue=False:", await show(client))
        async with await psycopg.AsyncConnection.connect(URL) as conn:
            async with conn.transaction():
                await client.enqueue("arec", {"n": 8, "sleep": 0}, conn=conn, durable=False)
                cur = await conn.execute("show synchronous_commit")
                print("caller's transaction after enqueue(conn=, durable=False):", (await cur.fetchone())[0])
    with psycopg.connect(URL, autocommit=True) as c:
        print("jobs written:", c.execute("select count(*) from conveyor.jobs").fetchone()[0])


asyncio.run(main())
