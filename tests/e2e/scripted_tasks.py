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

from conveyor import JobContext, task

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
