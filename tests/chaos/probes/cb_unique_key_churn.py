"""One unique key enqueued in a loop while a worker finishes the jobs that hold it: through the
SQL function (4 sessions) and the Python client (4 tasks). Counts each outcome; a SQL caller
may see 'try again' (40001) when the holder finished between the insert and the look-up; the
Python client must retry and never raise.
Run: .venv/bin/python probes/cb_unique_key_churn.py $URL SECONDS"""
from __future__ import annotations

import asyncio
import collections
import sys
import threading
import time

import psycopg

from conveyor import Conveyor

import probe_tasks  # noqa: F401

URL, SECONDS = sys.argv[1], float(sys.argv[2])
sql_outcomes: collections.Counter[str] = collections.Counter()
py_outcomes: collections.Counter[str] = collections.Counter()
lock = threading.Lock()


def sql_producer(stop: float) -> None:
    with psycopg.connect(URL, autocommit=True) as c:
        while time.monotonic() < stop:
            try:
                c.execute("select conveyor.enqueue('arec', '{\"n\": 1, \"sleep\": 0}', unique_key => 'k')")
                key = "ok"
            except psycopg.Error as exc:
                key = f"{exc.sqlstate} {str(exc).splitlines()[0][:90]}"
            with lock:
                sql_outcomes[key] += 1


async def py_producer(client: Conveyor, stop: float) -> None:
    while time.monotonic() < stop:
        try:
            await client.enqueue("arec", {"n": 2, "sleep": 0}, unique_key="k")
            py_outcomes["ok"] += 1
        except Exception as exc:  # noqa: BLE001
            py_outcomes[f"{type(exc).__name__}: {str(exc)[:90]}"] += 1


async def main() -> None:
    stop = time.monotonic() + SECONDS
    threads = [threading.Thread(target=sql_producer, args=(stop,)) for _ in range(4)]
    for t in threads:
        t.start()
    async with Conveyor(URL, pool_size=4) as client:
        await asyncio.gather(*(py_producer(client, stop) for _ in range(4)))
    for t in threads:
        t.join()
    print("SQL function:", dict(sql_outcomes))
    print("Python client:", dict(py_outcomes))
    with psycopg.connect(URL, autocommit=True) as c:
        print("jobs run with key k (history):", c.execute("select count(*) from conveyor.job_history where unique_key = 'k'").fetchone()[0])


asyncio.run(main())
