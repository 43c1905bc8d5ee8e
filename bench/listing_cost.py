"""What one page of each listing costs on a large history (search_jobs, history, dead_letters,
queue_overview, workers).

Fills a schema of its own with ``--rows`` finished jobs (200,000 by default) spread evenly over
the last 3 days (each day in its own partition) across 10 queues and 20 tasks, 2% of them
cancelled, a third with a limit key and a seventh with a unique key; ``--dead`` dead jobs and
``--live`` waiting ones; counts the rollup behind queue_stats as retention does. Then, for
each case, calls the client method ``--calls`` times (median wall time on the client, one
page of 50) and runs the statements it ran under EXPLAIN (ANALYZE, BUFFERS) for the pages
(8 kB blocks) they touched and whether any day of job_history was read whole.

    python bench/listing_cost.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

The schema is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "service"))

from conveyor import Conveyor
from conveyor.db import migrations
from conveyor.db.queries import load
from conveyor.queue import pages

FILL = """
SELECT {schema}.ensure_history_partitions_v1(7, now() - interval '4 days');
INSERT INTO {schema}.queues (name) SELECT 'q' || i FROM generate_series(0, 9) i ON CONFLICT DO NOTHING;
INSERT INTO {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, max_attempts, priority,
                                  state, queue, task, unique_key, args, errors, key)
SELECT i, t, t, t, t, 1, 3, 2, CASE WHEN i %% 50 = 0 THEN 'cancelled' ELSE 'completed' END, 'q' || (i %% 10),
       'task' || (i %% 20), CASE WHEN i %% 7 = 0 THEN 'u' || i END, '{{}}', '[]',
       CASE WHEN i %% 3 = 0 THEN 'k' || (i %% 100) END
FROM (SELECT i, now() - interval '3 days' + i * interval '3 days' / %(rows)s AS t
      FROM generate_series(1, %(rows)s) i) s;
INSERT INTO {schema}.dead_jobs (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts, priority, queue,
                                task, args, errors)
SELECT %(rows)s + i, t, t, t, t, 3, 3, 2, 'q' || (i %% 10), 'task' || (i %% 20), '{{}}', '[{{"error": "boom"}}]'
FROM (SELECT i, now() - interval '3 days' + i * interval '3 days' / %(dead)s AS t
      FROM generate_series(1, %(dead)s) i) s;
INSERT INTO {schema}.jobs (id, run_at, enqueued_at, state, queue, task, max_attempts, args)
SELECT %(rows)s + %(dead)s + i, now(), now(), 'available', 'q' || (i %% 10), 'task' || (i %% 20), 3, '{{}}'
FROM generate_series(1, %(live)s) i;
ANALYZE {schema}.job_history;
ANALYZE {schema}.dead_jobs;
ANALYZE {schema}.jobs;
SELECT {schema}.count_finished_v1(now(), 1000)
"""


def cases(client: Conveyor, rows: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    now = datetime.now(UTC)
    deep = pages.encode(pages.JOBS, pages.Position(rows // 2))
    return {
        "search_jobs()": lambda: client.search_jobs(),
        "search_jobs(queue)": lambda: client.search_jobs(queue="q3"),
        "search_jobs(state=cancelled)": lambda: client.search_jobs(state="cancelled"),
        "search_jobs(task)": lambda: client.search_jobs(task="task7"),
        "search_jobs(key)": lambda: client.search_jobs(key="k42"),
        "search_jobs(unique_key)": lambda: client.search_jobs(unique_key="u700"),
        "search_jobs(id_prefix=1234)": lambda: client.search_jobs(id_prefix="1234"),
        "search_jobs(cursor half way)": lambda: client.search_jobs(cursor=deep),
        "search_jobs(enqueued 3 days ago)": lambda: client.search_jobs(
            enqueued_after=now - timedelta(days=3), enqueued_before=now - timedelta(days=2, hours=23)
        ),
        "history()": lambda: client.history(),
        "history(queue)": lambda: client.history(queue="q3"),
        "history(state=cancelled)": lambda: client.history(state="cancelled"),
        "history(task)": lambda: client.history(task="task7"),
        "history(finished in one hour)": lambda: client.history(
            finished_after=now - timedelta(days=2),
            finished_before=now - timedelta(days=2) + timedelta(hours=1),
        ),
        "dead_letters()": lambda: client.dead_letters(),
        "dead_letters(queue)": lambda: client.dead_letters(queue="q4"),
        "queue_overview()": lambda: client.queue_overview(),
        "queue_stats() (for comparison)": lambda: client.queue_stats(),
        "workers()": lambda: client.workers(),
    }


async def measure(url: str, schema: str, rows: int, calls: int) -> None:
    async with Conveyor(url, schema=schema) as client:
        print(f"| call | ms (median of {calls}) | pages touched | a day read whole |")
        print("|---|---|---|---|")
        for label, call in cases(client, rows).items():
            captured: list[tuple[str, dict[str, Any]]] = []
            real = client.db.fetch_planned

            async def recording(
                name: str, params: dict[str, Any], real: Any = real, captured: list[Any] = captured
            ) -> list[dict[str, Any]]:
                captured.append((name, params))
                return await real(name, params)

            client.db.fetch_planned = recording  # type: ignore[method-assign]
            await call()
            client.db.fetch_planned = real  # type: ignore[method-assign]
            times = []
            for _ in range(calls):
                started = time.perf_counter()
                await call()
                times.append((time.perf_counter() - started) * 1000)
            touched, whole = 0, False
            for name, params in captured:
                plan = explain(url, schema, name, params)
                touched += int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))
                whole = whole or read_whole(plan)
            pages_text = str(touched) if captured else "-"
            print(
                f"| `{label}` | {statistics.median(times):.1f} | {pages_text} | {'yes' if whole else 'no'} |"
            )


def explain(url: str, schema: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    query = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + sql.SQL(load()[name]).format(
        schema=sql.Identifier(schema)
    )
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL jit = off")
        row = conn.execute(query, params, prepare=False).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def read_whole(node: dict[str, Any]) -> bool:
    if (
        node.get("Node Type") == "Seq Scan"
        and str(node.get("Relation Name")).startswith("job_history")
        and node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) > 0
    ):
        return True
    return any(read_whole(child) for child in node.get("Plans", []))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", default="bench_listings")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dead", type=int, default=20_000)
    parser.add_argument("--live", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=9)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(args.schema)))
    migrations.upgrade(args.database_url, args.schema)
    try:
        started = time.perf_counter()
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            for statement in FILL.strip().split(";\n"):
                conn.execute(
                    sql.SQL(statement).format(schema=sql.Identifier(args.schema)),  # type: ignore[arg-type]
                    {"rows": args.rows, "dead": args.dead, "live": args.live},
                )
        print(
            f"filled in {time.perf_counter() - started:.1f} s: {args.rows} finished, {args.dead} dead, {args.live} live\n"
        )
        asyncio.run(measure(args.database_url, args.schema, args.rows, args.calls))
    finally:
        if not args.keep:
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(args.schema)))


if __name__ == "__main__":
    main()
