"""Tasks for the job-control tests with worker processes (test_job_control_processes.py).

Each execution appends ``<event> <job id> <attempt> <pid> <unix time>`` to a per-process file
in the folder named by CONVEYOR_TEST_LEDGER: what started and ended where, and when.
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
    _ledger.write(f"{event} {ctx.job_id} {ctx.attempt} {os.getpid()} {time.time():.6f}\n")


@task(queue="ctl_a")
async def hold(seconds: float, ctx: JobContext) -> None:
    note("start", ctx)
    await asyncio.sleep(seconds)
    note("done", ctx)


@task(queue="ctl_a")
async def other(ctx: JobContext) -> None:
    note("start", ctx)
    note("done", ctx)


@task(queue="ctl_b")
async def flow(ctx: JobContext) -> None:
    note("start", ctx)
    note("done", ctx)


@task(queue="ctl_a")
async def forever(ctx: JobContext) -> None:
    note("start", ctx)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        note("cancelled", ctx)
        raise


@task(queue="ctl_a")
def spin(ctx: JobContext) -> None:
    """A sync task that stops when it sees its abort."""
    note("start", ctx)
    deadline = time.monotonic() + 50
    while not ctx.aborted:
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)
    note("aborted", ctx)
    raise RuntimeError("stopped: aborted")
