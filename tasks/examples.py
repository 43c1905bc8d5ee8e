"""A first task to try Conveyor with:

conveyor enqueue hello --args '{"name": "Ada"}'
"""

from __future__ import annotations

import logging

from conveyor import JobContext, task

log = logging.getLogger(__name__)


@task
async def hello(name: str, ctx: JobContext) -> str:
    greeting = f"Hello, {name}!"
    log.info("job %d (attempt %d): %s", ctx.job_id, ctx.attempt, greeting)
    return greeting
