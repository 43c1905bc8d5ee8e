"""Where a draining worker's time goes, per job: in Python (py-spy) and in PostgreSQL
(pg_stat_statements).

    python bench/profile.py --url URL [--n 200000] [--concurrency 500] [--seconds 8]

URL's server must load pg_stat_statements (``shared_preload_libraries``); the database is
dropped and made afresh. N jobs are enqueued in bulk, then one `Worker` process drains them
under ``py-spy record`` (PyPI py-spy, in this environment) for SECONDS; the script prints
the share of the worker's CPU samples by stage of a job's path, the worker's and the
server's CPU per job, and each statement's calls, rows and execution time per job.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

# Stages of a job's path, by the first frame (innermost last) that names them.
STAGES = [
    ("claim: the statement and its rows", ["Database.claim_jobs"]),
    ("record outcomes (completer)", ["Completer."]),
    ("start: a task per job", ["Worker._start"]),
    ("run: executor and the handler", ["Executor.", "Worker._run_job"]),
    ("fetch loop, signals", ["Worker._fetch_loop"]),
    ("lease keeper, maintenance, notifier", ["LeaseKeeper.", "Maintenance.", "Notifier.", "ProgressWriter."]),
]


def stage_of(frames: list[str]) -> str:
    for label, markers in STAGES:
        if any(marker in frame for frame in frames for marker in markers):
            return label
    return "event loop, other"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(url: str) -> float:
    """CPU time of this server's processes (backends and background workers alike)."""
    with psycopg.connect(url) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity")]
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone meanwhile
            total += cpu_seconds(pid)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()

    import importlib.util

    from bench.common import _prefill

    spec = importlib.util.spec_from_file_location("adapter", BENCH / "peers" / "conveyor" / "adapter.py")
    assert spec is not None
    assert spec.loader is not None
    adapter_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(adapter_module)

    info = psycopg.conninfo.conninfo_to_dict(args.url)
    name = str(info["dbname"])
    with psycopg.connect(
        psycopg.conninfo.make_conninfo(args.url, dbname="postgres"), autocommit=True
    ) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    adapter = adapter_module.ConveyorAdapter(args.url)

    async def fill() -> None:
        await adapter.setup()
        await _prefill(adapter, args.n)

    asyncio.run(fill())
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")

    folder = Path(tempfile.mkdtemp(prefix="profile-"))
    print(f"samples in {folder}", file=sys.stderr)
    record, samples = folder / "w.log", folder / "samples.txt"
    worker = subprocess.Popen(
        [
            sys.executable,
            str(BENCH / "peers" / "conveyor" / "adapter.py"),
            "worker",
            "--url",
            args.url,
            "--concurrency",
            str(args.concurrency),
            "--record",
            str(record),
        ],
    )
    count_file = Path(f"{record}.count")
    while not count_file.exists():  # started and draining
        time.sleep(0.01)
    # Attached once the worker drains, so that start-up is not in the samples.
    py_spy = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "-r",
            "250",
            "-f",
            "raw",
            "-o",
            str(samples),
            "-d",
            str(args.seconds),
            "--pid",
            str(worker.pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started, worker_cpu, server_cpu = time.monotonic(), cpu_seconds(worker.pid), server_cpu_seconds(args.url)
    done = int(count_file.read_text() or 0)
    py_spy.wait()
    seconds = time.monotonic() - started
    worker_cpu = cpu_seconds(worker.pid) - worker_cpu
    server_cpu = server_cpu_seconds(args.url) - server_cpu
    jobs = int(count_file.read_text() or 0) - done
    worker.send_signal(signal.SIGTERM)
    worker.wait()

    print(
        f"{jobs} jobs in {seconds:.2f} s: {jobs / seconds:,.0f} jobs/s; CPU per job: worker "
        f"{worker_cpu / jobs * 1e6:.1f} µs, PostgreSQL (all its processes) {server_cpu / jobs * 1e6:.1f} µs\n"
    )

    shares: collections.Counter[str] = collections.Counter()
    total = 0
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any("run_forever" in frame for frame in frames):
            continue  # start-up and imports
        shares[stage_of(frames)] += int(count)
        total += int(count)
    print("| stage of the worker (py-spy samples while draining) | share |\n|---|---|")
    for label, count in shares.most_common():
        print(f"| {label} | {count / total:.0%} |")

    with psycopg.connect(args.url) as conn:
        rows = conn.execute(
            "SELECT calls, rows, total_exec_time, total_plan_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 70)"
            " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY total_exec_time DESC LIMIT 10"
        ).fetchall()
        completed = conn.execute("SELECT count(*) FROM conveyor.job_history").fetchone()
    finished = int(completed[0]) if completed else 0
    print(f"\n{finished} jobs finished in all; per finished job:\n")
    print("| statement | calls | rows per call | µs per job (execution + planning) |\n|---|---|---|---|")
    for calls, row_count, exec_ms, plan_ms, text in rows:
        print(
            f"| `{text}` | {calls} | {row_count / max(calls, 1):.0f} | {(exec_ms + plan_ms) * 1000 / max(finished, 1):.2f} |"
        )


if __name__ == "__main__":
    main()
