"""Tasks of the worker-kill chaos run (tests/chaos/worker_kills.py), served by real
`conveyor worker --tasks tests.chaos.kill_tasks` processes.

Every execution first records itself (job id, attempt, worker pid, start time) in the run's
table ``chaos_executions`` in Conveyor's schema, committed on its own connection before the
task does anything else: an execution killed half-way is still counted, and an execution
that is not recorded never got past its first statement. (It cannot share the transaction
that records the job's outcome: a killed attempt has none, and those are the ones to count.)
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from psycopg import sql

from conveyor import Backoff, JobContext, task

QUEUE = "chaos_kills"
STEADY_MAX_ATTEMPTS = 25  # far more kills than any one job meets: a steady job never dies of them
DOOMED_MAX_ATTEMPTS = 3
DOOMED_ERROR = "fails on purpose on every attempt"

CREATE_EXECUTIONS = """
CREATE TABLE {schema}.chaos_executions (
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL
)"""


async def record_execution(ctx: JobContext) -> None:
    query = sql.SQL(
        "INSERT INTO {}.chaos_executions (job_id, attempt, pid, started_at) VALUES (%s, %s, %s, %s)"
    ).format(sql.Identifier(ctx.schema))
    # The start by this process's clock, before the statement leaves: the server may run a
    # statement it received after its sender was killed, so its own clock could say "later".
    started_at = datetime.now(UTC)
    async with ctx.connection() as conn:  # autocommit: committed when execute returns
        await conn.execute(query, (ctx.job_id, ctx.attempt, os.getpid(), started_at))


@task(queue=QUEUE, max_attempts=STEADY_MAX_ATTEMPTS)
async def steady(n: int, work_ms: float, ctx: JobContext) -> int:
    """Completes on every attempt it is allowed to finish."""
    await record_execution(ctx)
    await asyncio.sleep(work_ms / 1000)
    return n


class DoomedError(Exception):
    pass


@task(queue=QUEUE, max_attempts=DOOMED_MAX_ATTEMPTS, backoff=Backoff.fixed(0.1))
async def doomed(n: int, work_ms: float, ctx: JobContext) -> None:
    """Fails on every attempt: belongs in the dead-letter table, and only it."""
    await record_execution(ctx)
    await asyncio.sleep(work_ms / 1000)
    raise DoomedError(f"job {n} {DOOMED_ERROR}")
