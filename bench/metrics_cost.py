"""What one read of ``/metrics`` costs on a large history (``conveyor.ops.metrics``).

Fills a schema of its own as ``queue_stats_cost.py`` does (``--rows`` finished jobs spread
over the last 24 hours, ``--dead`` dead jobs, ``--live`` unfinished ones, ``--queues``
queues), plus ``--burst`` jobs finished over the last ``--burst-seconds`` (a busy stretch: the rows
a count must read; the reads run within it), then counts the rollup behind ``queue_stats`` (as a
scheduler's retention does) and times:

- whole metrics reads through a real client (``MetricsReader.read``: the counting step, then
  every statement in one snapshot, as ``/metrics`` makes it) with the counting mark set each of
  ``--intervals`` seconds before the busy stretch's end: a scrape that many seconds of busy
  history after the previous count (with the reader's default span of 60 s, so a read counts
  at most a minute of it);
- the counting step alone over the whole interval (``count_metrics_v1`` with an unbounded
  span: what the scheduler's catch-up pays for that stretch);
- the ``queue_stats`` view alone (the gauges' main share of a read, not the metrics');
- a read right after another process counted (the mark at the watermark: what every scrape
  of a second API process, or the next scrape after the scheduler's count, costs).

Wall time, median (min-max) of ``--calls``.

    python bench/metrics_cost.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

The schema is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "service"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conveyor import Conveyor
from conveyor.db import migrations
from conveyor.ops.metrics import MetricsReader
from queue_stats_cost import fill


def burst(conn: psycopg.Connection[tuple[object, ...]], rows: int, seconds: float, queues: int) -> datetime:
    """``rows`` completed jobs finished evenly over the last ``seconds``: a busy stretch, at
    the same density for every read made within it. Returns when it ends."""
    (end,) = conn.execute("SELECT now()").fetchone() or (None,)
    assert isinstance(end, datetime)
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
    return end


def set_mark(url: str, schema: str, at: datetime | None) -> None:
    """As if the last count had reached ``at`` (None: now, as a count by another process just
    did). The bench's totals count the same rows again; its schema is dropped at the end."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {}.metric_mark SET counted_to = coalesce(%s, now())").format(
                sql.Identifier(schema)
            ),
            [at],
        )


async def timed_reads(url: str, schema: str, mark: datetime | None, calls: int) -> list[float]:
    spent = []
    async with Conveyor(url, schema=schema) as client:
        reader = MetricsReader(reuse=0.0, settle=0.0)
        await reader.read(client)  # connections made, plans warm
        for _ in range(calls):
            set_mark(url, schema, mark)
            started = time.perf_counter()
            await reader.read(client)
            spent.append((time.perf_counter() - started) * 1000)
    return spent


def timed_queue_stats(url: str, schema: str, calls: int) -> list[float]:
    """The ``queue_stats`` view alone: the gauges' share of a read, whose cost follows the jobs
    finished since its rollup was counted (up to 6 minutes of them), not the metrics."""
    spent = []
    with psycopg.connect(url, autocommit=True) as conn:
        read = sql.SQL("SELECT * FROM {}.queue_stats").format(sql.Identifier(schema))
        for _ in range(calls):
            started = time.perf_counter()
            conn.execute(read).fetchall()
            spent.append((time.perf_counter() - started) * 1000)
    return spent


def timed_counts(url: str, schema: str, mark: datetime | None, calls: int) -> list[float]:
    spent = []
    with psycopg.connect(url, autocommit=True) as conn:
        count = sql.SQL("SELECT * FROM {}.count_metrics_v1('0 s', '1 day')").format(sql.Identifier(schema))
        for _ in range(calls):
            set_mark(url, schema, mark)
            started = time.perf_counter()
            conn.execute(count)
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
            burst_end = burst(conn, args.burst, args.burst_seconds, args.queues)
            while (conn.execute("SELECT count_finished_v1(now(), 12)").fetchone() or (0,))[0] >= 12:
                conn.commit()
            conn.commit()
            size = conn.execute(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits"
                " WHERE inhparent = 'job_history'::regclass"
            ).fetchone()
        per_second = args.burst / args.burst_seconds
        for interval in (float(x) for x in ["0", *args.intervals.split(",")]):
            # The mark that long before the busy stretch's end: the count reads that much of it.
            mark = burst_end - timedelta(seconds=interval) if interval else None
            reads = asyncio.run(timed_reads(args.database_url, args.schema, mark, args.calls))
            counts = timed_counts(args.database_url, args.schema, mark, args.calls)
            rows = min(interval, args.burst_seconds) * per_second
            stats = timed_queue_stats(args.database_url, args.schema, args.calls)
            results[interval] = (_summary(reads), _summary(stats), _summary(counts), rows)
    finally:
        if not args.keep:
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(args.schema)))

    total = args.rows + args.burst
    print(
        f"\njob_history: {total:,} rows ({size[0] if size else '?'}), {args.dead:,} dead, {args.live:,} live"
    )
    print(
        "\n| since the last count | jobs finished in it | read of /metrics, ms | of which queue_stats, ms |"
        " counting step alone, whole interval, ms |\n|---|---|---|---|---|"
    )
    for interval, (reads, stats, counts, rows) in results.items():
        print(f"| {interval:g} s | about {rows:,.0f} | {reads} | {stats} | {counts} |")


def _summary(spent: list[float]) -> str:
    """median (min-max)"""
    return f"{statistics.median(spent):.1f} ({min(spent):.1f}-{max(spent):.1f})"


if __name__ == "__main__":
    main()
