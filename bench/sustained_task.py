"""The task bench/sustained.py enqueues (its API and worker processes import this module)."""

from __future__ import annotations

from conveyor import task


@task(name="sustained_noop", queue="sustained")
async def noop(order: int, source: str) -> None:
    """Does nothing: the run measures Conveyor's path around a job, not the job. ``source``
    says how it was enqueued ("api" or "sql"), for the run's latencies by source."""
