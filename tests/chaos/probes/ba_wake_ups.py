"""Wake-ups after commit: one Conveyor client, many producers, one idle worker with a 30 s poll.
Every job should start within a fraction of a second of its enqueue (never wait for the poll).
Phases: (1) 40 producers x 10 jobs; (2) same while the client's backends are terminated
repeatedly; (3) 20 enqueues then close() at once; (4) a lone enqueue after all that.
Run: PYTHONPATH=probes PROBE_URL=$URL .venv/bin/python probes/ba_wake_ups.py $URL  (worker started by ba_wake_ups.sh)"""
from __future__ import annotations

import asyncio
import sys
import time

import psycopg

from conveyor import Conveyor

URL = sys.argv[1]


def latencies(ids: list[int], label: str) -> None:
    with psycopg.connect(URL, autocommit=True) as c:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            done = c.execute("select count(*) from public.runs where job_id = any(%s)", (ids,)).fetchone()[0]
            if done >= len(ids):
                break
            time.sleep(0.2)
        rows = c.execute(
            """select count(r.job_id), max(extract(epoch from r.started - j.enqueued_at)),
                      percentile_cont(0.5) within group (order by extract(epoch from r.started - j.enqueued_at)),
                      count(*) filter (where extract(epoch from r.started - j.enqueued_at) > 2)
               from (select id, enqueued_at from conveyor.job_history union all select id, enqueued_at from conveyor.jobs) j
               left join public.runs r on r.job_id = j.id where j.id = any(%s)""",
            (ids,),
        ).fetchone()
        claim = c.execute(
            "select max(extract(epoch from started_at - enqueued_at)) from conveyor.job_history where id = any(%s)", (ids,)
        ).fetchone()[0]
        print(f"{label}: jobs {len(ids)} started {rows[0]} median {rows[2] and round(rows[2],3)} s max {rows[1] and round(rows[1],3)} s; >2 s: {rows[3]}; slowest claim (started_at - enqueued_at) {claim and round(float(claim),3)} s")


async def produce(client: Conveyor, n: int, ids: list[int], pause: float = 0.0) -> None:
    for i in range(n):
        ids.append(await client.enqueue("arec", {"n": i, "sleep": 0}))
        if pause:
            await asyncio.sleep(pause)


async def killer(stop: asyncio.Event) -> int:
    killed = 0
    async with await psycopg.AsyncConnection.connect(URL, autocommit=True, application_name="probe-killer") as c:
        while not stop.is_set():
            cur = await c.execute(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = 'probe-client' or (datname = current_database() and pid <> pg_backend_pid() and query like '%%pg_notify%%' and backend_type = 'client backend' and state = 'active')"
            )
            killed += (await cur.fetchone())[0]
            await asyncio.sleep(0.03)
    return killed


async def main() -> None:
    import os
    os.environ["PGAPPNAME"] = "probe-client"
    async with Conveyor(URL, pool_size=4) as client:
        await client.enqueue("arec", {"n": -1, "sleep": 0})  # learn the queue
        await asyncio.sleep(1)
        ids: list[int] = []
        await asyncio.gather(*(produce(client, 10, ids, 0.005) for _ in range(40)))
        latencies(ids, "phase 1: 40 producers")

        ids2: list[int] = []
        stop = asyncio.Event()
        k = asyncio.create_task(killer(stop))
        results = await asyncio.gather(*(produce(client, 10, ids2, 0.01) for _ in range(20)), return_exceptions=True)
        stop.set()
        killed = await k
        errors = [r for r in results if isinstance(r, BaseException)]
        print(f"phase 2: backends killed {killed}; producers that raised {len(errors)}: {set(type(e).__name__ for e in errors)}")
        latencies(ids2, "phase 2: under pg_terminate_backend")

    client = Conveyor(URL, pool_size=4)
    await client.open()
    ids3: list[int] = []
    await asyncio.gather(*(produce(client, 1, ids3) for _ in range(20)))
    await client.close()
    latencies(ids3, "phase 3: close right after 20 concurrent enqueues")

    async with Conveyor(URL) as client:
        ids4 = [await client.enqueue("arec", {"n": 1, "sleep": 0})]
    latencies(ids4, "phase 4: lone enqueue")


asyncio.run(main())
