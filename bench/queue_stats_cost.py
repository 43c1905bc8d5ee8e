"""What one read of ``conveyor.queue_stats`` costs on a large history.

Fills a schema of its own with ``--rows`` finished jobs (10 million by default) spread
evenly over the last 24 hours across ``--queues`` queues, ``--dead`` dead jobs and
``--live`` unfinished ones, then times the view with EXPLAIN ANALYZE (the server's
execution time, planning included, median of ``--calls``):

- ``before any count``: the rollup never ran, so the view counts the last 24 hours row by
  row (what every read cost before version 5);
- ``just counted``: right after ``count_finished_v1`` (at most 6 minutes of rows since its mark);
- ``10 min since the count``: the mark moved back 10 minutes, the most a scheduler running
  retention every 10 minutes leaves (its default);
- both again with no dead jobs (the ``dead`` column's count is the rest);
- the version 1 view, on the same tables, for comparison.

    python bench/queue_stats_cost.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Bounded: the fill runs in statements of a million rows; the schema is dropped at the end
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "service"))

from conveyor.db import migrations

CHUNK = 1_000_000

# The view as versions 1 to 3 defined it, to time against the same tables.
VERSION_1_VIEW = """
CREATE VIEW queue_stats_version_1 AS
SELECT names.queue, coalesce(q.paused, false) AS paused, coalesce(live.waiting, 0) AS waiting,
       coalesce(live.scheduled, 0) AS scheduled, coalesce(live.running, 0) AS running,
       coalesce(done.completed, 0) AS completed_24h, coalesce(dead.dead, 0) AS dead,
       date_trunc('second', now() - live.oldest_waiting) AS oldest_waiting_age
FROM (SELECT name AS queue FROM queues UNION SELECT DISTINCT queue FROM jobs) AS names
LEFT JOIN queues q ON q.name = names.queue
LEFT JOIN (
    SELECT queue, count(*) FILTER (WHERE state = 'available') AS waiting,
           count(*) FILTER (WHERE state = 'scheduled') AS scheduled,
           count(*) FILTER (WHERE state = 'running') AS running,
           min(run_at) FILTER (WHERE state = 'available') AS oldest_waiting
    FROM jobs GROUP BY queue
) AS live ON live.queue = names.queue
LEFT JOIN (
    SELECT queue, count(*) AS completed FROM job_history
    WHERE state = 'completed' AND finished_at > now() - interval '24 hours' GROUP BY queue
) AS done ON done.queue = names.queue
LEFT JOIN (SELECT queue, count(*) AS dead FROM dead_jobs GROUP BY queue) AS dead ON dead.queue = names.queue
"""


def fill(conn: psycopg.Connection[tuple[object, ...]], rows: int, queues: int, dead: int, live: int) -> None:
    conn.execute("SELECT ensure_history_partitions(1, now())")
    conn.execute(
        "INSERT INTO queues (name) SELECT 'q' || n FROM generate_series(1, %s) n ON CONFLICT DO NOTHING",
        [queues],
    )
    step = 86_400.0 / rows  # seconds between finishes: the whole history within 24 hours
    for first in range(0, rows, CHUNK):
        count = min(CHUNK, rows - first)
        started = time.monotonic()
        conn.execute(
            "INSERT INTO job_history (id, run_at, enqueued_at, started_at, finished_at, worker_id, attempt,"
            " max_attempts, priority, state, queue, task, args, result, errors)"
            " SELECT n, t, t, t, t, NULL, 1, 5, 2, CASE WHEN n %% 50 = 0 THEN 'cancelled' ELSE 'completed' END,"
            " 'q' || (1 + n %% %(queues)s), 'report', '{\"n\": 1}', NULL, '[]'"
            " FROM generate_series(%(first)s::bigint, %(last)s::bigint) n,"
            " LATERAL (SELECT now() - interval '24 hours' + n * %(step)s * interval '1 second') AS at (t)",
            {"first": first + 1, "last": first + count, "queues": queues, "step": step},
        )
        conn.commit()
        print(f"  history rows {first + count:,} ({time.monotonic() - started:.1f} s)", flush=True)
    conn.execute(
        "INSERT INTO dead_jobs (id, run_at, enqueued_at, died_at, attempt, max_attempts, priority, queue, task,"
        " args, errors) SELECT 100000000 + n, now(), now(), now() - n * interval '1 second', 5, 5, 2,"
        " 'q' || (1 + n %% %s), 'report', '{}', '[]' FROM generate_series(1, %s) n",
        [queues, dead],
    )
    conn.execute(
        "INSERT INTO jobs (queue, task, max_attempts, state, run_at)"
        " SELECT 'q' || (1 + n %% %s), 'report', 5, CASE WHEN n %% 3 = 0 THEN 'scheduled' ELSE 'available' END,"
        " now() + CASE WHEN n %% 3 = 0 THEN interval '1 hour' ELSE interval '0' END FROM generate_series(1, %s) n",
        [queues, live],
    )
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE job_history")
    conn.execute("VACUUM ANALYZE dead_jobs")
    conn.execute("VACUUM ANALYZE jobs")
    conn.autocommit = False


def timed(conn: psycopg.Connection[tuple[object, ...]], view: str, calls: int) -> tuple[float, float, float]:
    """Median, min and max milliseconds (planning + execution) of reading the view."""
    query = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM {}").format(sql.Identifier(view))
    spent = []
    for _ in range(calls):
        row = conn.execute(query).fetchone()
        assert row is not None
        plan = row[0][0]
        spent.append(plan["Planning Time"] + plan["Execution Time"])
        conn.rollback()
    return statistics.median(spent), min(spent), max(spent)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", default="bench_queue_stats")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--dead", type=int, default=100_000)
    parser.add_argument("--live", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the schema in place")
    args = parser.parse_args()

    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(args.schema)))
    migrations.upgrade(args.database_url, args.schema)
    with psycopg.connect(args.database_url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(args.schema)))
        conn.commit()
        try:
            print(f"filling {args.rows:,} history rows, {args.dead:,} dead, {args.live:,} live", flush=True)
            fill(conn, args.rows, args.queues, args.dead, args.live)
            conn.execute(VERSION_1_VIEW)
            conn.commit()
            results = {}
            results["version 1 view"] = timed(conn, "queue_stats_version_1", max(3, args.calls // 5))
            results["before any count"] = timed(conn, "queue_stats", max(3, args.calls // 5))
            started = time.monotonic()
            buckets = 0
            while True:
                (counted,) = conn.execute("SELECT count_finished_v1(now(), 12)").fetchone() or (0,)
                conn.commit()
                buckets += counted
                if counted < 12:
                    break
            catch_up = time.monotonic() - started
            results["just counted"] = timed(conn, "queue_stats", args.calls)
            conn.execute(
                "UPDATE finished_counts_mark SET counted_to = counted_to - interval '10 minutes';"
                " DELETE FROM finished_counts WHERE bucket >= (SELECT counted_to FROM finished_counts_mark)"
            )
            conn.commit()
            results["10 min since the count"] = timed(conn, "queue_stats", args.calls)
            conn.execute("DELETE FROM dead_jobs")
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE dead_jobs")
            conn.autocommit = False
            results["10 min since the count, no dead jobs"] = timed(conn, "queue_stats", args.calls)
            started = time.monotonic()
            conn.execute("SELECT count_finished_v1(now(), 12)")
            conn.commit()
            ten_minutes = time.monotonic() - started
            results["just counted, no dead jobs"] = timed(conn, "queue_stats", args.calls)
            size = conn.execute(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits"
                " WHERE inhparent = 'job_history'::regclass"
            ).fetchone()
        finally:
            conn.rollback()
            if not args.keep:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(args.schema)))
                conn.commit()

    print(f"\njob_history: {args.rows:,} rows over 24 h in {args.queues} queues ({size[0] if size else '?'})")
    print(f"counting the whole 24 h into the rollup: {catch_up:.1f} s ({buckets} buckets of 5 minutes)")
    print(f"counting 10 minutes: {ten_minutes * 1000:.0f} ms")
    print("\n| read of queue_stats | ms, median (min-max) |\n|---|---|")
    for name, (median, low, high) in results.items():
        print(f"| {name} | {median:.2f} ({low:.2f}-{high:.2f}) |")


if __name__ == "__main__":
    main()
