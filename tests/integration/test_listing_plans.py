"""The listings read through indexes on a large history: each statement the client runs for a
page (captured, then run again under EXPLAIN ANALYZE with the same values, unprepared and
without JIT as the client runs it) touches a few pages of the tables, not all of them.
(bench/RESULTS.md has the timings at 200,000 rows; this checks the shape at 40,000.)"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

from conveyor import Conveyor, Registry
from conveyor.db.queries import load
from conveyor.queue import pages

from ..helpers import DB

ROWS = 40_000
# Finished jobs spread evenly over 36 hours ending %(ago)s hours ago, ids from %(first)s.
HISTORY = """
INSERT INTO {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, max_attempts, priority,
                                  state, queue, task, args, errors, key)
SELECT i, t, t, t, t, 1, 3, 2, CASE WHEN i %% 50 = 0 THEN 'cancelled' ELSE 'completed' END, 'q' || (i %% 10),
       'task' || (i %% 20), '{{"pad": "0123456789012345678901234567890123456789"}}', '[]',
       CASE WHEN i %% 3 = 0 THEN 'k' || (i %% 100) END
FROM (SELECT %(first)s + i AS i,
             now() - make_interval(hours => 36 + %(ago)s) + i * interval '36 hours' / %(rows)s AS t
      FROM generate_series(1, %(rows)s) i) s
"""
# Ten queues, 4,000 dead and 4,000 waiting jobs, and the rollup behind queue_stats counted as
# retention counts it every 10 minutes.
THE_REST = """
INSERT INTO {schema}.queues (name) SELECT 'q' || i FROM generate_series(0, 9) i ON CONFLICT DO NOTHING;
INSERT INTO {schema}.dead_jobs (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts, priority, queue,
                                task, args, errors)
SELECT 10000000 + i, t, t, t, t, 3, 3, 2, 'q' || (i %% 10), 'task' || (i %% 20), '{{}}', '[{{"error": "boom"}}]'
FROM (SELECT i, now() - interval '36 hours' + i * interval '36 hours' / 4000 AS t FROM generate_series(1, 4000) i) s;
INSERT INTO {schema}.jobs (id, run_at, enqueued_at, state, queue, task, max_attempts, args)
SELECT 20000000 + i, now(), now(), 'available', 'q' || (i %% 10), 'task' || (i %% 20), 3, '{{}}'
FROM generate_series(1, 4000) i;
SELECT {schema}.count_finished_v1(now(), 1000)
"""


def run(db: DB, statements: str, **params: object) -> None:
    with db.connect(autocommit=True) as conn:
        for statement in statements.strip().split(";\n"):
            conn.execute(db.compose(statement), {"rows": ROWS, **params})
        for table in ("job_history", "dead_jobs", "jobs", "queues"):
            conn.execute(db.compose(f"ANALYZE {{schema}}.{table}"))


def explain(db: DB, name: str, params: dict[str, Any]) -> dict[str, Any]:
    query = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + sql.SQL(load()[name]).format(
        schema=sql.Identifier(db.schema)
    )
    with psycopg.connect(db.url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL jit = off")
        plan: dict[str, Any] = conn.execute(query, params, prepare=False).fetchone()[0][0]  # type: ignore[index]
    return plan


def pages_touched(node: dict[str, Any]) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def stats_view_pages(db: DB) -> int:
    query = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM {}.queue_stats").format(
        sql.Identifier(db.schema)
    )
    with psycopg.connect(db.url, autocommit=True) as conn:
        plan: dict[str, Any] = conn.execute(query).fetchone()[0][0]  # type: ignore[index]
    return pages_touched(plan["Plan"])


def table_pages(db: DB) -> int:
    return int(
        db.one(
            "select sum(relpages) from pg_class c join pg_inherits i on i.inhrelid = c.oid"
            " where i.inhparent = %s::regclass",
            [f'"{db.schema}".job_history'],
        )
    )


async def planned_calls(
    client: Conveyor, call: Callable[[], Awaitable[Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """The statements a client call ran through Database.fetch_planned, with their values."""
    calls: list[tuple[str, dict[str, Any]]] = []
    real = client.db.fetch_planned

    async def recording(name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        calls.append((name, params))
        return await real(name, params)

    client.db.fetch_planned = recording  # type: ignore[method-assign]
    try:
        await call()
    finally:
        client.db.fetch_planned = real  # type: ignore[method-assign]
    return calls


async def test_a_page_costs_the_same_on_a_history_twice_as_large(
    client: Conveyor, registry: Registry, db: DB
) -> None:
    run(db, HISTORY, first=0, ago=0)
    run(db, THE_REST)
    small = await costs(client, db)
    # As much history again, finished before the first (as days pass): a page that reads
    # through indexes costs what it cost; a scan or a sort of the history would double.
    run(db, HISTORY, first=ROWS, ago=36)
    large = await costs(client, db)
    history_pages = table_pages(db)
    assert history_pages > 1500  # the test means something only if a scan would cost far more
    queues = db.one("select count(*) from {schema}.queues")
    days = db.one(
        "select count(*) from pg_inherits where inhparent = %s::regclass", [f'"{db.schema}".job_history']
    )
    for label, cost in large.items():
        if label.startswith("history"):
            # By finish time, job_history is read queue by queue: a page's worth of rows from
            # each queue (one page of the table each, at worst), and a descent of each day's
            # index per queue. No more however long the history.
            bound = queues * 51 + queues * days * 4
            assert cost <= bound, f"{label}: {cost} pages, more than {bound}"
        elif label == "queue overview":
            # queue_stats' own counts (they read every live and dead job) and a few index
            # reads per queue for the recent throughput.
            view = stats_view_pages(db)
            assert cost <= view + queues * 40, f"{label}: {cost} pages, queue_stats {view}"
        else:
            assert cost < history_pages // 4, f"{label}: {cost} of {history_pages} pages"
        # Twice the history, the same cost (give or take a page of the indexes).
        assert cost <= small[label] * 1.2 + 30, f"{label}: {small[label]} pages, then {cost}"


async def costs(client: Conveyor, db: DB) -> dict[str, int]:
    """The pages each listing's statements touch, by EXPLAIN ANALYZE of the statements the
    client ran (a finish-time range in search_jobs is left out: it walks the ids of the days
    it names, newest first; history() reads such ranges by finish time)."""
    middle = await client.history(limit=50, cursor=(await client.history(limit=500)).next_cursor)
    deep = pages.encode(pages.JOBS, pages.Position(1000))
    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "search": lambda: client.search_jobs(),
        "search by queue": lambda: client.search_jobs(queue="q3"),
        "search completed": lambda: client.search_jobs(state="completed"),
        "search by task and queue": lambda: client.search_jobs(task="task7", queue="q7"),
        "search by id": lambda: client.search_jobs(id_prefix="123"),
        "search deep down": lambda: client.search_jobs(cursor=deep),
        "history": lambda: client.history(),
        "history by queue": lambda: client.history(queue="q2"),
        "history further on": lambda: client.history(cursor=middle.next_cursor),
        "history of the dead": lambda: client.history(state="dead"),
        "dead letters of a queue": lambda: client.dead_letters(queue="q4"),
        "queue overview": lambda: client.queue_overview(),
    }
    found = {}
    for label, call in cases.items():
        total = 0
        for name, params in await planned_calls(client, call):
            plan = explain(db, name, params)
            total += pages_touched(plan["Plan"])
            assert not _full_scans(plan["Plan"]), (label, json.dumps(plan)[:3000])
        found[label] = total
    return found


def _full_scans(node: dict[str, Any]) -> list[str]:
    """The days of job_history read whole: sequential scans that met rows (an empty day may be
    read so, at no cost). The small tables here (4,000 live and dead jobs) may rightly be
    read whole; their pages count in the total."""
    found = []
    if (
        node.get("Node Type") == "Seq Scan"
        and str(node.get("Relation Name")).startswith("job_history")
        and node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) > 0
    ):
        found.append(node["Relation Name"])
    for child in node.get("Plans", []):
        found += _full_scans(child)
    return found
