"""The task bench/api_enqueue.py enqueues through the API (which imports this module)."""

from __future__ import annotations

from conveyor import task


@task(name="bench_api_noop", queue="bench")
def noop(n: int) -> None:
    pass
