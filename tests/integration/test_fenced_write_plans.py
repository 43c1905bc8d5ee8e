"""The fenced writes (complete, retry, bury, release, extend, progress) find a batch's jobs
through the primary key, whatever the table's statistics say.

Statistics are taken at any moment; taken while nothing ran, they say this worker runs no
jobs. Earlier forms of these statements then led PostgreSQL to walk every running job, or to
compare every id of the batch with every other (a nested loop with a join filter): a drain
fell from tens of thousands of jobs per second to a few thousand. These tests take
statistics at the worst moment and check the plan's work: rows looked at and thrown away
stay within the jobs that are not this worker's, whatever the plan mode.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import tuple_row

from conveyor import Conveyor, JobRequest, Registry
from conveyor.db.database import Database, by_id
from conveyor.db.queries import for_schema

from ..helpers import DB

BATCH = 800


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _nodes(child))]


def _discarded(plan: dict[str, Any]) -> int:
    return sum(
        int(node.get("Rows Removed by Filter", 0)) + int(node.get("Rows Removed by Join Filter", 0))
        for node in _nodes(plan)
    )


def _explain(
    url: str, schema: str, name: str, params: dict[str, Any], *, generic: bool
) -> tuple[dict[str, Any], int]:
    """The executed plan of one fenced write and the rows it changed; rolled back."""
    queries = for_schema(schema)
    with psycopg.connect(url) as conn, conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(f"SET plan_cache_mode = {'force_generic_plan' if generic else 'auto'}")
        cur.execute(b"EXPLAIN (ANALYZE, FORMAT JSON) " + queries[name], params)
        plan = cur.fetchone()[0]  # type: ignore[index]
        conn.rollback()
    top = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    return top, int(top["Actual Rows"])


@pytest.mark.parametrize("generic", [False, True], ids=["custom plans", "generic plans"])
async def test_fenced_writes_probe_the_primary_key_whatever_the_statistics(
    database_url: str, schema: str, registry: Registry, db: DB, generic: bool
) -> None:
    @registry.task
    async def noop(i: int) -> None:
        pass

    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        await client.enqueue_many([JobRequest(noop, {"i": i}) for i in range(6_000)])
    db.all("analyze {schema}.jobs")  # nothing runs: "no job has a worker"

    ours, theirs = uuid.uuid4(), uuid.uuid4()
    database = Database(database_url, schema, min_size=1, max_size=1)
    await database.open()
    try:
        claim = {"queues": ["default"], "lease": timedelta(seconds=60), "now": None}
        mine = await database.claim_jobs(worker_id=ours, limits=[BATCH], limit=BATCH, **claim)
        await database.claim_jobs(worker_id=theirs, limits=[2 * BATCH], limit=2 * BATCH, **claim)
    finally:
        await database.close()
    assert len(mine) == BATCH
    # One job in the batch is not ours any more (its lease was lost): the fence drops it.
    lost = mine[0]
    db.all("update {schema}.jobs set claims = claims + 1 where id = %s", [lost.id])

    common = {"worker_id": ours, "now": None, "channel": schema}
    writes = {
        "complete_jobs": by_id((j.id, f"[{j.claim},null]") for j in mine),
        "retry_jobs": by_id((j.id, f'[{j.claim},1.5,{{"error":"x"}}]') for j in mine),
        "bury_jobs": by_id((j.id, f'[{j.claim},{{"error":"x"}}]') for j in mine),
        "release_jobs": by_id((j.id, str(j.claim)) for j in mine),
        "extend_leases": by_id((j.id, str(j.claim)) for j in mine),
        "set_progress": by_id((j.id, json.dumps([j.claim, 50, "half"])) for j in mine),
    }
    for name, jobs in writes.items():
        params = {**common, "jobs": jobs, "lease": timedelta(seconds=60)}
        plan, changed = _explain(database_url, schema, name, params, generic=generic)
        assert changed == (BATCH - 1 if name != "set_progress" else 0), name
        # Looked at: the batch's rows (and the versions the claims left behind in the index).
        # Never the other worker's 1,600 running jobs, never batch x batch comparisons.
        # release_jobs reads the batch twice: to hand jobs back, and to bury those whose
        # counted hand-back was their last attempt.
        looks = 2 if name == "release_jobs" else 1
        assert _discarded(plan) <= looks * BATCH, (name, _discarded(plan))
        scans = {
            n.get("Index Name")
            for n in _nodes(plan)
            if n.get("Relation Name") == "jobs" and "Scan" in n["Node Type"]
        }
        assert scans == {"jobs_pkey"}, (name, scans)


async def test_fenced_writes_change_only_what_the_claim_names(
    database_url: str, schema: str, registry: Registry, db: DB
) -> None:
    """Values travel per job in the JSON object: each row gets its own result, delay, error."""

    @registry.task
    async def noop(i: int) -> None:
        pass

    async with Conveyor(database_url, schema=schema, registry=registry) as client:
        await client.enqueue_many([JobRequest(noop, {"i": i}) for i in range(4)])
    worker = uuid.uuid4()
    database = Database(database_url, schema, min_size=1, max_size=1)
    await database.open()
    try:
        a, b, c, d = await database.claim_jobs(
            worker_id=worker, queues=["default"], limits=[4], limit=4, lease=timedelta(seconds=60), now=None
        )
        async with database.transaction() as tx:
            await tx.fetch(
                "complete_jobs",
                {
                    "jobs": by_id([(a.id, f'[{a.claim},{{"n":1}}]'), (b.id, f"[{b.claim},null]")]),
                    "worker_id": worker,
                    "now": None,
                },
            )
            await tx.fetch(
                "retry_jobs",
                {
                    "jobs": by_id(
                        [
                            (c.id, f'[{c.claim},3600,{{"error":"late"}}]'),
                            (d.id, f'[{d.claim},0,{{"error":"now"}}]'),
                        ]
                    ),
                    "worker_id": worker,
                    "now": None,
                    "channel": schema,
                },
            )
    finally:
        await database.close()
    assert db.all("select id, result from {schema}.job_history order by id") == [
        (a.id, {"n": 1}),
        (b.id, None),
    ]
    rows = db.all(
        "select id, state, run_at > now() + interval '59 minutes', errors from {schema}.jobs order by id"
    )
    assert rows == [
        (c.id, "scheduled", True, [{"error": "late"}]),
        (d.id, "available", False, [{"error": "now"}]),
    ]
