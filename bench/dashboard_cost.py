"""What the dashboard's pages cost on a large installation: server time of each page.

Fills a schema of its own with ``--rows`` finished jobs (10 million by default) spread evenly
over the last 24 hours across ``--queues`` queues, ``--dead`` dead jobs (10,000) and
``--live`` unfinished ones (100,000, a third of them scheduled), with the filler of
``queue_stats_cost.py``; counts the rollup as retention does. Then serves the dashboard with
``conveyor api`` (one process, as a user runs it), signs in through the login form, and reads
each page ``--calls`` times over one keep-alive connection on loopback: the time from sending
the request to the last byte of the response, median and 95th percentile. Pages this tree
does not have (the API's 404 problem for an unknown path) are reported as absent.

The overview is read twice: right after the rollup's count, and with 7 minutes of jobs
finished at the history's rate since the rollup's mark (the most a scheduler leaves
uncounted: it counts every minute, up to the last whole 5-minute bucket ending a minute ago).

    python bench/dashboard_cost.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

``--reuse`` keeps a filled schema of an earlier ``--keep`` run instead of filling again.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "service"))

from api_enqueue import start_api
from queue_stats_cost import fill

PAGES = (
    ("overview", "/"),
    ("overview's live table (polled)", "/dashboard/queues"),
    ("jobs, no filter", "/dashboard/jobs"),
    ("jobs, queue", "/dashboard/jobs?queue=q3"),
    ("jobs, queue and state completed", "/dashboard/jobs?queue=q3&state=completed"),
    ("jobs, queue and state cancelled (2% of q1)", "/dashboard/jobs?queue=q1&state=cancelled"),
    ("jobs, state waiting", "/dashboard/jobs?state=available"),
    ("jobs, state scheduled", "/dashboard/jobs?state=scheduled"),
    ("jobs, id search", "/dashboard/jobs?q=4200042"),
    ("job detail", "/dashboard/jobs/4200042"),
    ("queue page", "/dashboard/queues/q3"),
    ("dead letters", "/dashboard/dead"),
    ("dead letters, queue", "/dashboard/dead?queue=q4"),
    ("schedules", "/dashboard/schedules"),
    ("workers", "/dashboard/workers"),
)
# A filter that matches nothing in a queue reads that queue's whole history (see the cost
# notes of conveyor.queue.search): read a few times only.
RARE = (
    (
        "jobs, queue and a state it never had (q3 has no cancelled job)",
        "/dashboard/jobs?queue=q3&state=cancelled",
    ),
)


def count_rollup(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    while True:
        (counted,) = conn.execute("SELECT count_finished_v1(now(), 12)").fetchone() or (0,)
        conn.commit()
        if int(str(counted)) < 12:
            return


def uncounted_tail(conn: psycopg.Connection[tuple[object, ...]], rows: int, queues: int, minutes: int) -> int:
    """Finish jobs over the last ``minutes`` at the history's own rate and set the rollup's
    mark back to their start, so a read counts them row by row; returns how many."""
    count = rows * minutes // (24 * 60)
    (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM job_history").fetchone() or (0,)
    conn.execute(
        "INSERT INTO job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, max_attempts,"
        " priority, state, queue, task, args, errors)"
        " SELECT %(top)s::bigint + n, t, t, t, t, 1, 5, 2, 'completed', 'q' || (1 + n %% %(queues)s), 'report',"
        " '{}', '[]' FROM generate_series(1, %(count)s) n,"
        " LATERAL (SELECT now() - make_interval(mins => %(minutes)s) * (1 - n::float8 / %(count)s)) AS at (t)",
        {"top": top, "count": count, "queues": queues, "minutes": minutes},
    )
    conn.execute("UPDATE finished_counts_mark SET counted_to = now() - make_interval(mins => %s)", [minutes])
    conn.execute("DELETE FROM finished_counts WHERE bucket >= (SELECT counted_to FROM finished_counts_mark)")
    conn.commit()
    conn.autocommit = True
    conn.execute("ANALYZE job_history")
    conn.autocommit = False
    return count


def admin_key(url: str, schema: str) -> str:
    async def make() -> str:
        from conveyor import Conveyor
        from conveyor.ops.keys import create_key
        from conveyor.ops.roles import LOCAL_ADMIN

        async with Conveyor(url, schema=schema) as client:
            return (
                await create_key(client.db, LOCAL_ADMIN, f"bench-dashboard-{uuid.uuid4().hex[:8]}", "admin")
            )[1]

    return asyncio.run(make())


def signed_in(base: str, key: str) -> httpx.Client:
    http = httpx.Client(base_url=base, follow_redirects=False, timeout=300)
    form = http.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None, "no login token on the login form"
    done = http.post("/login", data={"key": key, "csrf": token[1]})
    assert done.status_code == 303, done.text
    return http


def timed(http: httpx.Client, path: str, calls: int) -> tuple[float, float, int] | None:
    first = http.get(path)
    if first.status_code == 404 and "problem+json" in first.headers.get("content-type", ""):
        return None
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        response = http.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == first.status_code, (path, response.status_code)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], first.status_code


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", default="bench_dashboard")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--dead", type=int, default=10_000)
    parser.add_argument("--live", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the schema in place")
    parser.add_argument("--reuse", action="store_true", help="use the schema an earlier --keep run left")
    args = parser.parse_args()

    from conveyor.db import migrations

    url = args.database_url
    if not args.reuse:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(args.schema)))
    migrations.upgrade(url, args.schema)
    conn = psycopg.connect(url)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(args.schema)))
    conn.commit()
    api = None
    try:
        if not args.reuse:
            started = time.monotonic()
            print(f"filling {args.rows:,} history rows, {args.dead:,} dead, {args.live:,} live", flush=True)
            fill(conn, args.rows, args.queues, args.dead, args.live)
            print(f"filled in {time.monotonic() - started:.0f} s", flush=True)
        count_rollup(conn)
        size = conn.execute(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits"
            " WHERE inhparent = 'job_history'::regclass"
        ).fetchone()
        conn.commit()
        key = admin_key(url, args.schema)
        api, port = start_api(url, args.schema, 1, 10)
        http = signed_in(f"http://127.0.0.1:{port}", key)
        try:
            print(
                f"\njob_history {args.rows:,} rows over 24 h in {args.queues} queues ({size[0] if size else '?'}),"
            )
            print(
                f"{args.live:,} live jobs, {args.dead:,} dead; one `conveyor api` process; {args.calls} reads each"
            )
            print("\n| page | path | status | ms, median | ms, p95 |\n|---|---|---|---|---|")
            for label, path in PAGES:
                found = timed(http, path, args.calls)
                if found is None:
                    print(f"| {label} | `{path}` | absent | | |")
                    continue
                median, p95, status = found
                print(f"| {label} | `{path}` | {status} | {median:.1f} | {p95:.1f} |", flush=True)
            for label, path in RARE:
                reads = []
                for _ in range(3):
                    started = time.perf_counter()
                    status = http.get(path).status_code
                    reads.append(f"{(time.perf_counter() - started) * 1000:,.0f} ms ({status})")
                print(f"| {label} | `{path}` | | {', '.join(reads)} | |", flush=True)
            tail = uncounted_tail(conn, args.rows, args.queues, 7)
            for label, path in PAGES[:2]:
                found = timed(http, path, args.calls)
                assert found is not None
                print(
                    f"| {label}, {tail:,} jobs finished in the 7 min since the count | `{path}` | {found[2]} | {found[0]:.1f} | {found[1]:.1f} |"
                )
        finally:
            http.close()
    finally:
        if api is not None:
            api.terminate()
            api.wait(30)
        conn.rollback()
        if not args.keep:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(args.schema)))
            conn.commit()
        conn.close()


if __name__ == "__main__":
    main()
