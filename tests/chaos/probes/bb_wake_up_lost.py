"""A wake-up after commit that fails (its connection terminated) is not sent again: do the
jobs it announced wait for the worker's poll (30 s)? Each trial: 20 concurrent enqueues on one
client, then at once terminate the client's backends that are sending a NOTIFY. Latency is
claim time (job_history.started_at) less enqueued_at.
Run: .venv/bin/python probes/bb_wake_up_lost.py $URL (worker with --poll-interval 30s on queue p)"""
from __future__ import annotations

import asyncio
import logging
import sys
import time

import psycopg

from conveyor import Conveyor

URL = sys.argv[1]
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")


async def main() -> None:
    import os
    os.environ["PGAPPNAME"] = "probe-client"
    killer = await psycopg.AsyncConnection.connect(URL, autocommit=True, application_name="probe-killer")
    async with Conveyor(URL, pool_size=4) as client:
        await client.enqueue("arec", {"n": -1, "sleep": 0})
        for trial in range(10):
            t0 = time.monotonic()
            done = asyncio.Event()

            async def kill_while_busy() -> int:
                n = 0
                end = None
                while end is None or time.monotonic() < end:
                    if done.is_set() and end is None:
                        end = time.monotonic() + 0.2
                    cur = await killer.execute(
                        "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                        " where application_name = 'probe-client' and state = 'active' and query like '%%pg_notify%%'"
                    )
                    n += (await cur.fetchone())[0]
                return n

            k = asyncio.create_task(kill_while_busy())
            results = await asyncio.gather(*(client.enqueue("arec", {"n": i, "sleep": 0}) for i in range(20)), return_exceptions=True)
            done.set()
            killed = await k
            ids = [r for r in results if isinstance(r, int)]
            # wait for every job to be claimed, up to 40 s
            while time.monotonic() - t0 < 40:
                cur = await killer.execute("select count(*) from conveyor.jobs where id = any(%s) and state = 'available'", (list(ids),))
                if (await cur.fetchone())[0] == 0:
                    break
                await asyncio.sleep(0.1)
            cur = await killer.execute(
                "select max(extract(epoch from started_at - enqueued_at)) from (select id, started_at, enqueued_at from conveyor.job_history union all select id, started_at, enqueued_at from conveyor.jobs) j where id = any(%s)",
                (list(ids),),
            )
            worst = (await cur.fetchone())[0]
            print(f"trial {trial}: killed {killed} backends; {len(ids)} of 20 enqueued; slowest claim {worst and round(float(worst), 3)} s after enqueue", flush=True)
    await killer.close()


asyncio.run(main())
