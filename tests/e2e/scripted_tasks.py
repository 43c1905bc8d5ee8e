"""Tasks for tests that run real worker processes.

Each execution appends a line ``<event> <job id> <attempt> <pid>`` to a per-process file in
the folder named by CONVEYOR_TEST_LEDGER, so a test can see exactly what ran where.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TextIO

from conveyor import Backoff, JobContext, task

_ledger: TextIO | None = None


def note(event: str, ctx: JobContext) -> None:
    global _ledger
    if _ledger is None:
        folder = Path(os.environ["CONVEYOR_TEST_LEDGER"])
        _ledger = open(folder / f"{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    _ledger.write(f"{event} {ctx.job_id} {ctx.attempt} {os.getpid()}\n")


@task(queue="drain")
async def record(n: int, ctx: JobContext) -> int:
    note("done", ctx)
    return n


@task(queue="slow", max_attempts=3)
async def slow(seconds: float, ctx: JobContext) -> None:
    """Runs for ``seconds`` unless CONVEYOR_TEST_FAST is set."""
    note("start", ctx)
    if not os.environ.get("CONVEYOR_TEST_FAST"):
        await asyncio.sleep(seconds)
    note("done", ctx)


@task(queue="crash", max_attempts=3)
async def hang_first_attempt(ctx: JobContext) -> str:
    """Hangs on its first attempt (the test kills the worker then); finishes on the next."""
    note("start", ctx)
    if ctx.attempt == 1:
        await asyncio.sleep(3600)
    note("done", ctx)
    return f"finished on attempt {ctx.attempt}"


@task(queue="slow")
def blocking(seconds: float, ctx: JobContext) -> None:
    """A sync task; Python cannot interrupt its thread."""
    note("start", ctx)
    time.sleep(0 if os.environ.get("CONVEYOR_TEST_FAST") else seconds)
    note("done", ctx)


@task(queue="rated")
async def rated(ctx: JobContext) -> None:
    """For limit tests: starts are read from job_history."""


@task(queue="capped")
async def capped(seconds: float, ctx: JobContext) -> None:
    await asyncio.sleep(seconds)


# -- results, chains and batches (tests/e2e/test_flow_processes.py) ------------------------


@task(queue="flows")
async def stamped(ctx: JobContext) -> dict[str, float]:
    """Returns the wall-clock time at which it finished, for a caller measuring its wait."""
    note("done", ctx)
    return {"finished": time.time()}


@task(queue="flows", max_attempts=1)
async def refuse(message: str, ctx: JobContext) -> None:
    note("start", ctx)
    raise RuntimeError(message)


@task(queue="flows", max_attempts=3, backoff=Backoff.fixed(0.1))
async def member(n: int, ctx: JobContext) -> int:
    """Fails its first attempt when n is a multiple of 100: those members are retried."""
    note("start", ctx)
    if n % 100 == 0 and ctx.attempt == 1:
        raise RuntimeError(f"member {n} fails its first attempt")
    note("done", ctx)
    return n


@task(queue="flows")
async def batch_summary(batch: dict[str, int], challenge: str, ctx: JobContext) -> dict[str, int]:
    note("summary", ctx)
    return batch


@task(queue="flows")
async def evaluate(challenge: str, members: int, ctx: JobContext) -> None:
    """The seeds' nightly evaluation: one job fans out into a batch of per-member jobs."""
    group = ctx.batch(batch_summary, {"challenge": challenge})
    for n in range(members):
        group.enqueue(member, {"n": n})
    note("fanned", ctx)
