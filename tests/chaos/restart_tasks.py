"""The task of the restart scenario (tests/chaos/restarts.py): its workers, scheduler and API
processes import it."""

from __future__ import annotations

from conveyor import task

QUEUE = "chaos"


@task(queue=QUEUE)
async def touch(n: int) -> int:
    return n
