"""Drain benchmark: one worker process drains N no-op jobs; a raw-SQL queue in the same run.

    python bench/drain.py [--database-url URL] [--jobs 50000] [--concurrency 10,100,500] [--repeat 3]

Without --database-url (or CONVEYOR_BENCH_DATABASE_URL) it uses the embedded PostgreSQL 18.
Each system gets a fresh database on the same server. The raw-SQL baseline is the simplest
queue psycopg allows: a table, COPY in, claim 500 at a time with FOR UPDATE SKIP LOCKED,
ack by deleting the batch. Conveyor runs as users run it: `conveyor worker` in its own
process, woken by NOTIFY when the jobs are committed; the clock starts at the commit and
stops when the last job is in history. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import noop_tasks  # noqa: E402, F401  (registers the bench task)
from conveyor import Conveyor, JobRequest  # noqa: E402
from conveyor.db import embedded, migrations  # noqa: E402


def with_database(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


def fresh_database(server: str, label: str) -> str:
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server, name)


def drop_database(server: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))


def raw_sql_drain(url: str, jobs: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE raw_jobs (id bigserial PRIMARY KEY, state text NOT NULL DEFAULT 'available',"
            " args jsonb NOT NULL, run_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("CREATE INDEX ON raw_jobs (run_at, id) WHERE state = 'available'")
        with conn.cursor().copy("COPY raw_jobs (args) FROM STDIN") as copy:
            for i in range(jobs):
                copy.write_row((f'{{"i": {i}}}',))
        conn.execute("ANALYZE raw_jobs")
        started = time.perf_counter()
        done = 0
        while done < jobs:
            rows = conn.execute(
                "WITH c AS (SELECT id FROM raw_jobs WHERE state = 'available' ORDER BY run_at, id"
                " LIMIT 500 FOR UPDATE SKIP LOCKED)"
                " UPDATE raw_jobs j SET state = 'running' FROM c WHERE j.id = c.id RETURNING j.id, j.args"
            ).fetchall()
            ids = [row[0] for row in rows]  # "run" each job: nothing to do
            conn.execute("DELETE FROM raw_jobs WHERE id = ANY(%s)", (ids,))
            done += len(ids)
        return jobs / (time.perf_counter() - started)


def conveyor_drain(url: str, jobs: int, concurrency: int) -> float:
    migrations.upgrade(url, "conveyor")
    env = dict(os.environ, CONVEYOR_DATABASE_URL=url, PYTHONPATH=f"{REPO / 'bench'}{os.pathsep}{REPO}")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "worker",
            "--tasks",
            "noop_tasks",
            "--queues",
            "bench",
            "--concurrency",
            str(concurrency),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while not conn.execute("SELECT count(*) FROM conveyor.workers").fetchone()[0]:  # type: ignore[index]
                time.sleep(0.05)
            time.sleep(0.5)  # let it settle into waiting for work

            async def enqueue() -> float:
                async with Conveyor(url) as client:
                    await client.enqueue_many([JobRequest("noop", {"i": i}) for i in range(jobs)])
                    return time.perf_counter()

            committed = asyncio.run(enqueue())
            while True:
                finished = conn.execute("SELECT count(*) FROM conveyor.job_history").fetchone()[0]  # type: ignore[index]
                if finished >= jobs:
                    ended = time.perf_counter()
                    break
                time.sleep(0.01)
            assert conn.execute("SELECT count(*) FROM conveyor.dead_jobs").fetchone()[0] == 0  # type: ignore[index]
        return jobs / (ended - committed)
    finally:
        worker.terminate()
        worker.communicate(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("CONVEYOR_BENCH_DATABASE_URL"))
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--concurrency", default="10,100,500")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    folder = None
    server = args.database_url
    if server is None:
        folder = tempfile.TemporaryDirectory(prefix="conveyor-bench-")
        server = embedded.start(Path(folder.name) / "pgdata", database="postgres")
    with psycopg.connect(server) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]

    results: dict[str, list[float]] = {}

    def measure(label: str, run: object) -> None:
        for _ in range(args.repeat):
            url = fresh_database(server, "d")
            try:
                rate = run(url)  # type: ignore[operator]
            finally:
                drop_database(server, url)
            results.setdefault(label, []).append(rate)
            print(f"{label}: {rate:,.0f} jobs/s", file=sys.stderr)

    measure("raw SQL (claim 500, delete)", lambda url: raw_sql_drain(url, args.jobs))
    for concurrency in [int(c) for c in args.concurrency.split(",")]:
        measure(
            f"conveyor worker -c {concurrency}", lambda url, c=concurrency: conveyor_drain(url, args.jobs, c)
        )

    baseline = statistics.median(results["raw SQL (claim 500, delete)"])
    print(
        f"\nDrain of {args.jobs:,} no-op jobs, one process; PostgreSQL {version}; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"median of {args.repeat}\n"
    )
    print("| system | jobs/s (median) | min | max | ratio to raw SQL |")
    print("|---|---:|---:|---:|---:|")
    for label, rates in results.items():
        median = statistics.median(rates)
        print(
            f"| {label} | {median:,.0f} | {min(rates):,.0f} | {max(rates):,.0f} | {median / baseline:.2f} |"
        )
    if folder is not None:
        folder.cleanup()


if __name__ == "__main__":
    main()
