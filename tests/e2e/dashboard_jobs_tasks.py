"""Tasks for the dashboard's Jobs tests: imported by the app under test and by its worker
processes (``conveyor worker --tasks tests.e2e.dashboard_jobs_tasks``). Every task of
tests.e2e.api_tasks is known too (this module imports it)."""

from __future__ import annotations

import time
from pathlib import Path

from conveyor import JobContext, task

from .api_tasks import QUEUE, api_add, api_echo, api_fail, api_sleep

OTHER_QUEUE = "dash-other"
STEP_POLL = 0.05  # seconds between two looks at a gate file

__all__ = ["OTHER_QUEUE", "QUEUE", "api_add", "api_echo", "api_fail", "api_sleep", "dash_other", "dash_steps"]


@task(queue=QUEUE)
def dash_steps(gate: str, steps: int, ctx: JobContext) -> dict[str, int]:
    """Report 0%, then, as each file ``{gate}.{n}`` (n = 1 .. steps) appears, n/steps of the
    way: the test decides when progress moves. Gives up after two minutes, or when aborted."""
    ctx.progress(0, f"waiting for step 1 of {steps}")
    deadline = time.monotonic() + 120
    for step in range(1, steps + 1):
        while not Path(f"{gate}.{step}").exists():
            if ctx.aborted:
                raise RuntimeError("stopped: an abort was asked for")
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {gate}.{step} never opened")
            time.sleep(STEP_POLL)
        ctx.progress(step * 100 // steps, f"step {step} of {steps} done")
    return {"steps": steps}


@task(queue=OTHER_QUEUE)
def dash_other(n: int) -> int:
    return n
