"""Tasks for the dashboard's dead-letter and workers tests: imported by the test (so the API
under test knows them) and by its worker processes
(``conveyor worker --tasks tests.e2e.dashboard_tasks``). A flag is a file the test creates."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from conveyor import task

from .api_tasks import QUEUE

BLOCK_LIMIT = 120.0  # seconds a blocked job waits for its flag at most


@task(queue=QUEUE, max_attempts=1)
def dash_flaky(flag: str) -> str:
    """Fails (and so dies: one attempt) until the flag file exists."""
    if not os.path.exists(flag):
        raise RuntimeError(f"the flag {flag} is not set yet")
    return "flag set"


@task(queue=QUEUE, max_attempts=1)
def dash_doomed(n: int = 0) -> None:
    """Always fails: one attempt, then dead."""
    raise ValueError(f"doomed job {n}")


@task(queue=QUEUE)
async def dash_block(flag: str) -> str:
    """Runs until the flag file exists (the test releases it)."""
    deadline = time.monotonic() + BLOCK_LIMIT
    while not await asyncio.to_thread(Path(flag).exists):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the flag {flag} was never set")
        await asyncio.sleep(0.05)
    return "released"
