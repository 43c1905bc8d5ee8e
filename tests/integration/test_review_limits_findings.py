"""Failing tests from the adversarial review of issue 11 (limits and job control): each one
demonstrates a finding of tests/chaos/probes/README.md ("Review probes, third round"). They
fail on the reviewed snapshot; the integrator fixes the code, not these tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from conveyor.errors import ConveyorError, InvalidOptionError
from conveyor.queue.client import Conveyor
from conveyor.tasks import Registry

from ..helpers import DB, wait_until
from .test_limits import T0, Claim, add_jobs, claim, seam  # noqa: F401  (fixtures)


def started(db: DB, queue: str, key: str) -> int:
    return int(
        db.one(
            "SELECT count(*) FROM (SELECT queue, key, started_at FROM {schema}.jobs UNION ALL"
            " SELECT queue, key, started_at FROM {schema}.job_history) x"
            " WHERE queue = %s AND key = %s AND started_at IS NOT NULL",
            [queue, key],
        )
    )


async def test_a_rate_period_the_claim_cannot_compute_is_refused(
    client: Conveyor,
    db: DB,
    claim: Claim,  # noqa: F811
) -> None:
    """R2: 100,000 years is accepted (SQL, and from Python as (5, 10**12) seconds or the CLI's
    5/3000000d); every claim of the queue then fails with 'timestamp out of range', and the
    worker claims nothing from its other queues either (rb_huge_period_stops_worker.sh)."""
    try:
        db.all(
            "SELECT {schema}.set_queue_limits('q', rate_limit => 5, rate_period => interval '100000 years')"
        )
    except psycopg.errors.InvalidParameterValue:
        return  # refused with a clear error: fine
    add_jobs(db, "q", 1)
    jobs, _ = await claim("q", 5, T0)  # fails: timestamp out of range
    assert len(jobs) == 1


async def test_python_limits_refuse_odd_numbers_with_a_clear_error(client: Conveyor) -> None:
    """R6: NaN / infinite periods raise a bare ValueError / OverflowError from int();
    concurrency 10**12 reaches PostgreSQL (NumericValueOutOfRange)."""
    for kwargs in [{"rate": (5, math.nan)}, {"rate": (5, math.inf)}, {"concurrency": 10**12}]:
        with pytest.raises(InvalidOptionError):
            await client.set_queue_limits("q", **kwargs)


async def test_job_control_refuses_odd_ids_with_a_clear_error(client: Conveyor) -> None:
    """R6: an id past bigint reaches PostgreSQL as numeric: UndefinedFunction cancel_job_v1(numeric, ...)."""
    with pytest.raises(ConveyorError):
        await client.cancel(10**30)


async def test_a_key_held_by_its_rate_window_does_not_hold_other_keys(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """R1 (I4, no head-of-line blocking): key a is held back by its rate window (1 per hour);
    key b's job, enqueued later, must start at once, not when a's window reopens."""

    @registry.task(name="noop", queue="k")
    def noop() -> None:
        pass

    await client.set_queue_limits("k", key_rate=(1, "1h"))
    async with start_worker(poll_interval=0.5, concurrency=5):
        await client.enqueue(noop, {}, key="a")
        await client.enqueue(noop, {}, key="a")
        await wait_until(lambda: started(db, "k", "a") == 1, within=5)
        await client.enqueue(noop, {}, key="b")
        await wait_until(lambda: started(db, "k", "b") == 1, within=5)  # fails: waits an hour


async def test_raising_a_rate_limit_applies_to_running_workers_at_once(
    client: Conveyor, db: DB, registry: Registry, start_worker: Callable[..., Any]
) -> None:
    """R3 (docs/limits.md: "Workers pick up every change at once"): a worker blocked until an
    hour-long window reopens stays blocked after the rate is raised to 1000 a second."""

    @registry.task(name="noop", queue="r")
    def noop() -> None:
        pass

    await client.set_queue_limits("r", rate=(1, "1h"))
    async with start_worker(poll_interval=0.5, concurrency=5):
        await client.enqueue(noop, {}, key="x")
        await client.enqueue(noop, {}, key="x")
        await wait_until(lambda: started(db, "r", "x") == 1, within=5)
        await client.set_queue_limits("r", rate=(1000, "1s"))
        await wait_until(lambda: started(db, "r", "x") == 2, within=5)  # fails: waits an hour
