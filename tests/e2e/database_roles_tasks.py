"""Tasks for tests/e2e/test_database_roles.py: a worker running as a least-privilege role
completes, retries, buries and (after its process is killed) is rescued."""

from __future__ import annotations

import asyncio

from conveyor import Backoff, JobContext, task

QUEUE = "roles"


@task(queue=QUEUE)
async def roles_ok(n: int) -> int:
    return n


@task(queue=QUEUE, max_attempts=3, backoff=Backoff(base=0.05, jitter=0.0))
async def roles_flaky(ctx: JobContext) -> int:
    """Fails its first attempt, succeeds on the next."""
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return ctx.attempt


@task(queue=QUEUE, max_attempts=1)
async def roles_doomed() -> None:
    raise RuntimeError("always fails")


@task(queue=QUEUE, max_attempts=2)
async def roles_hang(ctx: JobContext) -> int:
    """Hangs on its first attempt (the test kills the worker then); finishes on the next."""
    if ctx.attempt == 1:
        await asyncio.sleep(3600)
    return ctx.attempt
