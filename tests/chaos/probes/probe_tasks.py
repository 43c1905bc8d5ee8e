"""Tasks for the review probes: every execution is recorded in public.runs (pid, timestamps)."""
from __future__ import annotations

import asyncio
import os
import time

import psycopg

from conveyor import Backoff, JobContext, task

URL = os.environ.get("PROBE_URL", "postgresql://postgres@127.0.0.1:5432/review2_r1")


def _start(ctx: JobContext, kind: str) -> int:
    with psycopg.connect(URL, autocommit=True) as c:
        row = c.execute(
            "insert into public.runs(job_id, attempt, pid, kind, started) values (%s,%s,%s,%s,clock_timestamp()) returning id",
            (ctx.job_id, ctx.attempt, os.getpid(), kind),
        ).fetchone()
        assert row
        return int(row[0])


def _finish(run: int) -> None:
    with psycopg.connect(URL, autocommit=True) as c:
        c.execute("update public.runs set finished = clock_timestamp() where id = %s", (run,))


@task(queue="p", max_attempts=3, backoff=Backoff.fixed(0.2))
async def arec(n: int, sleep: float, ctx: JobContext) -> int:
    run = await asyncio.to_thread(_start, ctx, "arec")
    await asyncio.sleep(sleep)
    await asyncio.to_thread(_finish, run)
    return n


@task(queue="p", max_attempts=1)
async def arec1(n: int, sleep: float, ctx: JobContext) -> int:
    run = await asyncio.to_thread(_start, ctx, "arec1")
    await asyncio.sleep(sleep)
    await asyncio.to_thread(_finish, run)
    return n


@task(queue="p", max_attempts=3, timeout=1, backoff=Backoff.fixed(0.1))
def srec(n: int, sleep: float, ctx: JobContext) -> int:
    run = _start(ctx, "srec")
    time.sleep(sleep)
    _finish(run)
    return n


@task(queue="p", max_attempts=20, backoff=Backoff.fixed(0.1))
async def flaky(n: int, ctx: JobContext) -> int:
    run = await asyncio.to_thread(_start, ctx, "flaky")
    await asyncio.to_thread(_finish, run)
    raise RuntimeError(f"flaky {n} attempt {ctx.attempt} " + "x" * 5000)


@task(queue="p", max_attempts=1)
async def fanout(k: int, ctx: JobContext) -> int:
    run = await asyncio.to_thread(_start, ctx, "fanout")
    for i in range(k):
        ctx.enqueue("arec", {"n": i, "sleep": 0}, queue="kids")
    await asyncio.to_thread(_finish, run)
    return k


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of this exception is broken")


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ is broken")


@task(queue="p", max_attempts=2, backoff=Backoff.fixed(0.1))
async def raises_badstr(ctx: JobContext) -> None:
    run = await asyncio.to_thread(_start, ctx, "raises_badstr")
    await asyncio.to_thread(_finish, run)
    raise BadStr()


@task(queue="p", max_attempts=1)
async def returns_badrepr(ctx: JobContext) -> object:
    run = await asyncio.to_thread(_start, ctx, "returns_badrepr")
    await asyncio.to_thread(_finish, run)
    return BadRepr()


@task(queue="p", max_attempts=1)
async def fail_after(sleep: float, ctx: JobContext) -> None:
    run = await asyncio.to_thread(_start, ctx, "fail_after")
    await asyncio.sleep(sleep)
    await asyncio.to_thread(_finish, run)
    raise RuntimeError("failed on purpose")
