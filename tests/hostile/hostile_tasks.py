"""Handlers that misbehave, for the hostile worker tests (``conveyor worker --tasks
tests.hostile.hostile_tasks``): ones that never return, ones that end their own process."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

from conveyor import task

QUEUE = "hostile"


@task(queue=QUEUE, timeout=0.5, max_attempts=1)
async def hang_async() -> None:
    """Waits for what never comes."""
    await asyncio.Event().wait()


@task(queue=QUEUE, timeout=0.5, max_attempts=1)
def hang_sync() -> None:
    """Blocks its thread for good (Python cannot stop a thread: it stays blocked)."""
    threading.Event().wait()


@task(queue=QUEUE, max_attempts=2)
def exit_process() -> None:
    os._exit(3)


@task(queue=QUEUE, max_attempts=2)
def kill_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@task(queue=QUEUE)
def plain(n: int) -> int:
    return n
