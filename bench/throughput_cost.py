"""What one read of the dashboard's throughput chart costs (``throughput_minutes``).

Fills a schema of its own with ``--rows`` finished jobs at ``--rate`` jobs per second (by
default 115.7/s: 10,000,000 over 24 hours), finishing up to now, across ``--queues`` queues,
plus ``--dead`` dead jobs over the same span, then times the query through a client (wall
time, median of ``--calls``):

- ``cold``: nothing cached, the whole hour counted (a process's first read);
- ``warm``: all but the last ``--live`` minutes cached (every later read);

each for all queues and for one; then the overview page (``GET /``) and the queue page as the
server answers them (in process through ASGI, a session of a viewer key; the rollup counted
first, as a scheduler keeps it): the first request of a fresh app and the median of the
next ``--calls``. A million rows at the default rate is 2.4 hours of them:
the last hour holds what a 10-million-row, 24-hour history holds in its last hour.

    python bench/throughput_cost.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "service"))

import httpx

from conveyor.api import create_app
from conveyor.db import migrations
from conveyor.db.database import Database
from conveyor.db.queries import for_schema
from conveyor.ops.keys import create_key
from conveyor.ops.roles import LOCAL_ADMIN

CHUNK = 500_000


def fill(
    conn: psycopg.Connection[tuple[object, ...]], rows: int, rate: float, queues: int, dead: int
) -> None:
    conn.execute("SELECT ensure_history_partitions(1, now())")
    conn.execute(
        "INSERT INTO queues (name) SELECT 'q' || n FROM generate_series(1, %s) n ON CONFLICT DO NOTHING",
        [queues],
    )
    step = 1.0 / rate
    for first in range(0, rows, CHUNK):
        count = min(CHUNK, rows - first)
        conn.execute(
            "INSERT INTO job_history (id, run_at, enqueued_at, started_at, finished_at, worker_id, attempt,"
            " max_attempts, priority, state, queue, task, args, result, errors)"
            " SELECT n, t, t, t, t, NULL, 1, 5, 2, CASE WHEN n %% 50 = 0 THEN 'cancelled' ELSE 'completed' END,"
            " 'q' || (1 + n %% %(queues)s), 'report', '{\"n\": 1}', NULL, '[]'"
            " FROM generate_series(%(first)s::bigint, %(last)s::bigint) n,"
            " LATERAL (SELECT now() - (%(rows)s - n) * %(step)s * interval '1 second') AS at (t)",
            {"first": first + 1, "last": first + count, "queues": queues, "step": step, "rows": rows},
        )
        conn.commit()
        print(f"  history rows {first + count:,}", flush=True)
    span = rows * step
    conn.execute(
        "INSERT INTO dead_jobs (id, run_at, enqueued_at, died_at, attempt, max_attempts, priority, queue, task,"
        " args, errors) SELECT 100000000 + n, now(), now(), now() - n * %s * interval '1 second', 5, 5, 2,"
        " 'q' || (1 + n %% %s), 'report', '{}', '[]' FROM generate_series(1, %s) n",
        [span / max(dead, 1), queues, dead],
    )
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE job_history")
    conn.execute("VACUUM ANALYZE dead_jobs")
    conn.autocommit = False


def timed(
    conn: psycopg.Connection[tuple[object, ...]], schema: str, params: dict[str, object], calls: int
) -> tuple[float, float, float, int]:
    query = for_schema(schema)["throughput_minutes"]
    spent = []
    rows = 0
    for _ in range(calls):
        started = time.perf_counter()
        found = conn.execute(query, params).fetchall()
        spent.append((time.perf_counter() - started) * 1000)
        rows = len(found)
    return statistics.median(spent), min(spent), max(spent), rows


async def time_pages(
    database_url: str, schema: str, calls: int
) -> dict[str, tuple[float, float, float, int]]:
    """Milliseconds per page: (first, median of the rest, max of the rest, status)."""
    database = Database(database_url, schema)
    await database.open()
    try:
        _, token = await create_key(database, LOCAL_ADMIN, "bench-viewer", "viewer")
    finally:
        await database.close()
    results = {}
    for path in ("/", "/dashboard/queues/q1"):
        app = create_app(database_url=database_url, schema=schema)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            form = await http.get("/login")
            found = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert found is not None, form.text
            signed = await http.post("/login", data={"csrf": found.group(1), "key": token})
            assert signed.status_code == 303, signed.text
            spent = []
            status = 0
            for _ in range(calls + 1):
                started = time.perf_counter()
                response = await http.get(path)
                spent.append((time.perf_counter() - started) * 1000)
                status = response.status_code
                assert status == 200, response.text[:500]
            results[path] = (spent[0], statistics.median(spent[1:]), max(spent[1:]), status)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", default="bench_throughput")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=10_000_000 / 86_400)
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--dead", type=int, default=20_000)
    parser.add_argument("--live", type=int, default=2)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="time an existing filled schema")
    args = parser.parse_args()

    if not args.reuse:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(args.schema)))
        migrations.upgrade(args.database_url, args.schema)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(args.schema)))
        conn.execute("SET jit = off")
        conn.autocommit = False
        try:
            if not args.reuse:
                fill(conn, args.rows, args.rate, args.queues, args.dead)
            conn.autocommit = True
            (now,) = conn.execute(
                "SELECT date_bin(interval '1 minute', now(), timestamptz '2000-01-01')"
            ).fetchone() or (None,)
            assert now is not None
            cached = [now - timedelta(minutes=m) for m in range(args.live, 60)]
            results = {}
            for queue in (None, "q1"):
                label = "all queues" if queue is None else "one queue"
                base = {
                    "queue": queue,
                    "now": None,
                    "settle": timedelta(seconds=5),
                    "minutes": 60,
                    "most": 60,
                }
                results[f"cold, {label}"] = timed(
                    conn, args.schema, {**base, "cached": []}, max(3, args.calls // 3)
                )
                results[f"warm ({args.live} min), {label}"] = timed(
                    conn, args.schema, {**base, "cached": cached}, args.calls
                )
            while True:
                (counted,) = conn.execute("SELECT count_finished_v1(now(), 12)").fetchone() or (0,)
                if counted < 12:
                    break
            pages = asyncio.run(time_pages(args.database_url, args.schema, args.calls))
            in_hour = conn.execute(
                "SELECT count(*) FROM job_history WHERE finished_at >= now() - interval '1 hour'"
            ).fetchone()
        finally:
            if not args.keep:
                conn.autocommit = True
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(args.schema)))

    print(
        f"\njob_history: {args.rows:,} rows at {args.rate:.1f}/s in {args.queues} queues; last hour: {in_hour[0] if in_hour else '?':,}"
    )
    print("\n| read of throughput_minutes | ms, median (min-max) | minutes |\n|---|---|---|")
    for name, (median, low, high, rows) in results.items():
        print(f"| {name} | {median:.1f} ({low:.1f}-{high:.1f}) | {rows} |")
    print("\n| page (in process, ASGI) | first request, ms | then, median (max), ms |\n|---|---|---|")
    for path, (first, median, high, _) in pages.items():
        print(f"| GET {path} | {first:.1f} | {median:.1f} ({high:.1f}) |")


if __name__ == "__main__":
    main()
