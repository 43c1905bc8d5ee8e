"""Review 3 (issue 11): result() of a job that has completed, when the LISTEN connection
cannot be made (CONVEYOR_LISTEN_URL pointing at a pooler in transaction mode, a wrong port).

Run: .venv/bin/python tests/chaos/probes/r3_result_without_listen.py <database url>
Expected (docs: TimeoutError only if the job 'has not ended'): the stored result.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import psycopg
from psycopg import sql

from conveyor import Conveyor
from conveyor.db import migrations

URL = sys.argv[1]
SCHEMA = "r3_no_listen"


async def main() -> None:
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    migrations.upgrade(URL, SCHEMA)
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(SCHEMA)))
        conn.execute("select create_queue('default')")
        job = conn.execute("select enqueue('t')").fetchone()[0]
        conn.execute(
            "with d as (delete from jobs where id = %s returning *) insert into job_history"
            " (id, run_at, enqueued_at, finished_at, attempt, max_attempts, priority, state, queue, task, args, result, errors)"
            " select id, run_at, enqueued_at, now(), 1, max_attempts, priority, 'completed', queue, task, args, '42', errors from d",
            [job],
        )
    os.environ["CONVEYOR_LISTEN_URL"] = "postgresql://postgres@127.0.0.1:1/postgres"
    async with Conveyor(URL, schema=SCHEMA) as client:
        started = time.monotonic()
        try:
            print("result:", await client.result(job, timeout=5))
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc} after {time.monotonic() - started:.1f}s")
        print("get_job state:", (await client.get_job(job))["state"])


asyncio.run(main())
