"""Tasks for the /health and /metrics tests (tests/e2e/test_health_metrics.py), run by real
`conveyor worker` processes and declared in the test process too (to enqueue them)."""

from __future__ import annotations

import asyncio

from conveyor import Backoff, task


@task(name="metrics_tick", queue="m")
async def tick(ms: int = 20) -> int:
    """Completes after ``ms`` milliseconds."""
    await asyncio.sleep(ms / 1000)
    return ms


@task(name="metrics_broken", queue="m", max_attempts=2, backoff=Backoff.fixed(0))
async def broken() -> None:
    """Fails every attempt: two attempts, then the dead-letter table."""
    raise RuntimeError("broken on purpose")


@task(name="metrics_idle", queue="m")
async def idle() -> None:
    """Declared and never enqueued: its counters show at 0."""
