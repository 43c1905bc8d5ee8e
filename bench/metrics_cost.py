"""What one read of ``/metrics`` costs on a large history (``conveyor.ops.metrics``).

Fills a schema of its own as ``queue_stats_cost.py`` does (``--rows`` finished jobs spread
over the last 24 hours, ``--dead`` dead jobs, ``--live`` unfinished ones, ``--queues``
queues), plus ``--burst`` jobs finished over the last ``--burst-seconds`` (a busy stretch: the rows
a read must count; the reads run within it), then counts the rollup behind ``queue_stats`` (as a
scheduler's retention does) and times whole metrics reads through a real client
(``MetricsReader.read``: every statement, in one snapshot, as ``/metrics`` makes it) with
the reader's watermark set back by each of ``--intervals`` seconds: a scrape that many
seconds after the previous one. Wall time of the read, median (min-max) of ``--calls``.

    python bench/metrics_cost.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

The schema is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "service"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conveyor import Conveyor
from conveyor.db import migrations
from conveyor.ops.metrics import MetricsReader
from queue_stats_cost import fill


def burst(conn: psycopg.Connection[tuple[object, ...]], rows: int, seconds: float, queues: int) -> None:
    """``rows`` completed jobs finished evenly over the last ``seconds``: a busy stretch, at
    the same density for every read made within it."""
    conn.execute(
        "INSERT INTO job_history (id, run_at, enqueued_at, started_at, finished_at, worker_id, attempt,"
        " max_attempts, priority, state, queue, task, args, result, errors)"
        " SELECT 200000000 + n, t - interval '40 ms', t - interval '40 ms', t - interval '30 ms', t, NULL, 1, 5, 2,"
        " 'completed', 'q' || (1 + n %% %(queues)s), 'task' || (n %% 5), '{}', NULL, '[]'"
        " FROM generate_series(1, %(rows)s::bigint) n,"
        " LATERAL (SELECT now() - %(seconds)s * interval '1 second' + n * %(step)s * interval '1 second') AS at (t)",
        {"rows": rows, "queues": queues, "seconds": seconds, "step": seconds / max(rows, 1)},
    )
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE job_history")
    conn.autocommit = False


async def timed_reads(url: str, schema: str, interval: float, calls: int) -> list[float]:
    spent = []
    async with Conveyor(url, schema=schema) as client:
        reader = MetricsReader(reuse=0.0, settle=0.0, max_gap=10**9)
        await reader.read(client)  # the first read: the totals start
        for _ in range(calls):
            assert reader._totals is not None
            reader._totals.since -= timedelta(seconds=interval)  # as if the last read were that long ago
            started = time.perf_counter()
            await reader.read(client)
            spent.append((time.perf_counter() - started) * 1000)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", default="bench_metrics")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--dead", type=int, default=100_000)
    parser.add_argument("--live", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=1_200_000)
    parser.add_argument("--burst-seconds", type=float, default=600.0)
    parser.add_argument("--intervals", default="15,60,300")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="leave the schema in place")
    args = parser.parse_args()

    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(args.schema)))
    migrations.upgrade(args.database_url, args.schema)
    results = {}
    try:
        with psycopg.connect(args.database_url) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(args.schema)))
            conn.commit()
            print(f"filling {args.rows:,} history rows, {args.dead:,} dead, {args.live:,} live", flush=True)
            fill(conn, args.rows, args.queues, args.dead, args.live)
            print(f"and {args.burst:,} finished over the last {args.burst_seconds:g} s", flush=True)
            burst(conn, args.burst, args.burst_seconds, args.queues)
            while (conn.execute("SELECT count_finished_v1(now(), 12)").fetchone() or (0,))[0] >= 12:
                conn.commit()
            conn.commit()
            size = conn.execute(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits"
                " WHERE inhparent = 'job_history'::regclass"
            ).fetchone()
        per_second = args.burst / args.burst_seconds
        for interval in (float(x) for x in args.intervals.split(",")):
            spent = asyncio.run(timed_reads(args.database_url, args.schema, interval, args.calls))
            rows = min(interval, args.burst_seconds) * per_second
            results[interval] = (statistics.median(spent), min(spent), max(spent), rows)
    finally:
        if not args.keep:
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(args.schema)))

    total = args.rows + args.burst
    print(
        f"\njob_history: {total:,} rows ({size[0] if size else '?'}), {args.dead:,} dead, {args.live:,} live"
    )
    print(
        "\n| scrape interval | jobs finished in it | read of /metrics, ms: median (min-max) |\n|---|---|---|"
    )
    for interval, (median, low, high, rows) in results.items():
        print(f"| {interval:g} s | about {rows:,.0f} | {median:.1f} ({low:.1f}-{high:.1f}) |")


if __name__ == "__main__":
    main()
