"""The task the benchmarks run: does nothing, so the queue itself is what is measured."""

from conveyor import task


@task(queue="bench")
async def noop(i: int) -> None:
    return None
