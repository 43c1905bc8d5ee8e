"""200,000 jobs scheduled for tomorrow must not slow the claim of ready jobs.

The claim walks an index that holds due jobs only; scheduled jobs sit in their own index
until promoted. So the work of a claim (buffers touched) must not grow with the delayed
backlog. Timings are printed for the record (`pytest -s`), not asserted: speed is
measured in bench/, not in unit tests.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import tuple_row

from conveyor import Conveyor, JobRequest, Registry
from conveyor.db.queries import for_schema

from ..helpers import DB

CLAIM_BATCH = 100


def claim_cost(database_url: str, schema: str, *, generic: bool) -> tuple[int, int, float]:
    """Buffers touched choosing the jobs, buffers touched in all, and the median ms of claiming
    a batch; every claim is rolled back. ``generic``: with the plan a worker's connections use."""
    queries = for_schema(schema)
    params: dict[str, Any] = {
        "now": None,
        "queues": ["default"],
        "limits": [CLAIM_BATCH],
        "limit": CLAIM_BATCH,
        "worker_id": uuid.uuid4(),
        "lease": timedelta(seconds=30),
        "after_queues": [],
        "after_priorities": [],
        "after_run_ats": [],
        "after_ids": [],
    }
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=tuple_row) as cur:
        if generic:
            cur.execute(queries["use_generic_plans"])
            conn.commit()
        cur.execute(b"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + queries["claim_jobs"], params)
        plan = cur.fetchone()[0]  # type: ignore[index]
        conn.rollback()
        timings = []
        for _ in range(30):
            started = time.perf_counter()
            cur.execute(queries["claim_jobs"], params)
            assert len(cur.fetchall()) == CLAIM_BATCH
            timings.append((time.perf_counter() - started) * 1000)
            conn.rollback()
    top = plan[0]["Plan"] if isinstance(plan, list) else json.loads(plan)[0]["Plan"]
    [choose] = [node for node in top["Plans"] if node.get("Subplan Name") == "CTE candidates"]
    return _buffers(choose), _buffers(top), statistics.median(timings)


def _buffers(node: dict[str, Any]) -> int:
    return int(node["Shared Hit Blocks"] + node["Shared Read Blocks"])


@pytest.mark.parametrize("generic", [False, True], ids=["custom plan", "generic plan (workers)"])
async def test_delayed_backlog_does_not_slow_the_claim(
    database_url: str, schema: str, registry: Registry, db: DB, generic: bool
) -> None:
    @registry.task
    async def noop(i: int) -> None:
        pass

    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        await client.enqueue_many([JobRequest(noop, {"i": i}) for i in range(2_000)])
        db.all("analyze {schema}.jobs")
        before_choose, before_total, before_ms = claim_cost(database_url, schema, generic=generic)

    # The backlog is written in SQL for speed; it is shaped as enqueue_many writes it.
    db.all(
        "insert into {schema}.jobs (queue, task, args, state, priority, run_at, max_attempts, enqueued_at)"
        " select 'default', 'noop', jsonb_build_object('i', i), 'scheduled', 2,"
        " now() + interval '1 day' + i * interval '1 ms', 5, now() from generate_series(1, 200000) i"
    )
    db.all("analyze {schema}.jobs")
    assert db.one("select count(*) from {schema}.jobs where state = 'scheduled'") == 200_000
    after_choose, after_total, after_ms = claim_cost(database_url, schema, generic=generic)

    print(
        f"\nclaim of {CLAIM_BATCH} ready jobs: {before_ms:.2f} ms without the delayed backlog, "
        f"{after_ms:.2f} ms with 200,000 scheduled for tomorrow; buffers choosing the jobs "
        f"{before_choose} -> {after_choose}, in all {before_total} -> {after_total}"
    )
    # Choosing the jobs reads the same pages with or without the backlog.
    assert after_choose <= before_choose + 5
    # Claiming (lock, update, index the new versions) costs a bounded number of pages per job;
    # the primary key's depth grows with the table (log n), nothing else does.
    assert after_total <= 20 * CLAIM_BATCH
