"""Tasks for the HTTP API's tests: imported by the API under test and by its worker processes
(``conveyor worker --tasks tests.e2e.api_tasks``)."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor import Discard, JobContext, task

QUEUE = "api"


@task(queue=QUEUE)
def api_add(a: int, b: int) -> int:
    return a + b


@task(queue=QUEUE)
def api_echo(value: Any = None, meta: dict[str, Any] | None = None) -> Any:
    return value


@task(queue=QUEUE, max_attempts=1)
def api_fail(message: str = "failed on purpose") -> None:
    raise Discard(message)


@task(queue=QUEUE)
async def api_sleep(seconds: float, ctx: JobContext) -> str:
    await asyncio.sleep(seconds)
    return "slept"
