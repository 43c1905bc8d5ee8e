"""The worker-kill chaos run: jobs drained by real `conveyor worker` processes while a driver
SIGKILLs a random one every few seconds and starts another; then the verdict
(kill_verdict.py) and the time from the last kill until the backlog was empty.

The fast subset runs in the suite (test_worker_kills.py); the long run is one command:

    timeout 3600 python -m tests.chaos.worker_kills --jobs 100000 --workers 4 --kill-every 3 \\
        --concurrency 5 --database-url postgresql://postgres@127.0.0.1:5432/postgres

(from the repository root, with the package importable). It migrates a schema of its own in
that database, prints a summary, appends a JSON line to tests/chaos/results/worker_kills.jsonl
and exits 1 if the verdict found a problem. The workers' output goes to --logs. Each worker
holds up to 8 + concurrency connections (its pool, the tasks' pool, LISTEN): mind the
server's max_connections.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from conveyor import JobRequest, SyncConveyor
from conveyor.db import migrations

from ..helpers import DB, REPO, subprocess_env
from . import kill_tasks
from .kill_verdict import Kill, Verdict, judge

RESULTS = Path(__file__).resolve().parent / "results" / "worker_kills.jsonl"


@dataclass(frozen=True)
class Plan:
    jobs: int
    workers: int = 4
    kill_every: float = 3.0  # seconds between kills
    kills: int | None = None  # stop killing after this many (None: while any job is unfinished)
    lease: float = 2.0  # the workers' --lease: a killed worker's jobs are rescued this soon
    concurrency: int = 10
    doomed_every: int = 100  # every 100th job fails on every attempt (1%)
    work_ms: float = 5.0  # how long each execution takes once recorded
    deadline: float = 3000.0  # seconds the drain may take before the run gives up
    # While planned kills remain, enqueue this many more jobs whenever fewer than this many
    # wait: on a fast machine the backlog would otherwise be drained before the kills were
    # made (0: never; the long run's backlog is its --jobs).
    refill: int = 0


@dataclass
class Run:
    plan: Plan
    verdict: Verdict
    ids: list[int]
    doomed: set[int]
    kills: list[Kill]
    worker_pids: dict[str, int]  # every worker's id and pid, for judging the tables again
    workers_started: int
    drain_seconds: float  # from the first worker's start to the last outcome
    seconds_from_last_kill_to_empty: float | None
    stop_codes: list[int]  # exit codes of the survivors' SIGTERM (0: stopped cleanly)
    exits: list[int] = field(default_factory=list)  # exit codes of workers that exited unasked


class Fleet:
    """The run's worker processes; none outlives it."""

    def __init__(self, database_url: str, schema: str, plan: Plan, logs: Path) -> None:
        self.env = subprocess_env(database_url, schema)
        self.plan = plan
        self.logs = logs
        self.alive: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.holding = DB(database_url, schema).compose(
            "SELECT w.pid, count(*) FROM {schema}.jobs j JOIN {schema}.workers w ON w.id = j.worker_id"
            " WHERE j.state = 'running' GROUP BY w.pid"
        )

    def start(self) -> None:
        self.started += 1
        with open(self.logs / f"worker-{self.started}.log", "wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "conveyor",
                    "worker",
                    "--tasks",
                    kill_tasks.__name__,
                    "--queues",
                    kill_tasks.QUEUE,
                    "--concurrency",
                    str(self.plan.concurrency),
                    "--lease",
                    f"{self.plan.lease}s",
                    "--poll-interval",
                    "1s",
                ],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.alive.append(process)

    def kill_one(self, driver: psycopg.Connection[Any], rng: random.Random) -> Kill | None:
        """SIGKILL a random worker among those holding jobs, if one does: killing a worker
        still starting up, or idle, would interrupt nothing and prove nothing."""
        holding: dict[int, int] = dict(driver.execute(self.holding).fetchall())
        busy = [process for process in self.alive if process.pid in holding]
        if not busy:
            return None
        victim = rng.choice(busy)
        self.alive.remove(victim)
        at = datetime.now(UTC)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        return Kill(victim.pid, at, holding[victim.pid])

    def replace_exited(self) -> list[int]:
        """Start another worker for each that exited by itself (it should not: a worker that
        cannot reach the database retries); their exit codes."""
        exited = [process for process in self.alive if process.poll() is not None]
        for process in exited:
            self.alive.remove(process)
            self.start()
        return [process.returncode for process in exited]

    def stop(self) -> list[int]:
        """SIGTERM to the survivors; their exit codes: 0, stopped cleanly, or -15 for one still
        starting (importing, checking the schema) before its signal handlers, holding nothing."""
        for process in self.alive:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(60) for process in self.alive]
        self.alive = []
        return codes

    def close(self) -> None:
        for process in self.alive:
            process.kill()
            process.wait()


class Jobs:
    """The run's jobs, in the order they were enqueued, and which of them are doomed."""

    def __init__(self, client: SyncConveyor, plan: Plan) -> None:
        self.client = client
        self.plan = plan
        self.ids: list[int] = []
        self.doomed: set[int] = set()

    def enqueue(self, count: int) -> None:
        for first in range(len(self.ids), len(self.ids) + count, 10_000):
            numbers = range(first, min(first + 10_000, len(self.ids) + count))
            every = self.plan.doomed_every
            fails = [n % every == every - 1 for n in numbers]
            requests = [
                JobRequest("doomed" if fail else "steady", {"n": n, "work_ms": self.plan.work_ms})
                for n, fail in zip(numbers, fails, strict=True)
            ]
            made = self.client.enqueue_many(requests)
            self.ids += made
            self.doomed.update(job_id for job_id, fail in zip(made, fails, strict=True) if fail)


def drain_under_kills(database_url: str, schema: str, plan: Plan, logs: Path, seed: int | None = None) -> Run:
    """Enqueue the plan's jobs, run its workers, SIGKILL one (and start another) every
    ``kill_every`` seconds while any job is unfinished (or until ``kills`` were made, refilling
    the backlog until then if the plan says so), then judge the tables."""
    db = DB(database_url, schema)
    db.all(kill_tasks.CREATE_EXECUTIONS)
    with SyncConveyor(database_url, schema=schema) as client:
        jobs = Jobs(client, plan)
        jobs.enqueue(plan.jobs)
        return _drain(db, plan, jobs, logs, seed)


def _drain(db: DB, plan: Plan, jobs: Jobs, logs: Path, seed: int | None) -> Run:
    rng = random.Random(seed)
    fleet = Fleet(db.url, db.schema, plan, logs)
    kills: list[Kill] = []
    exits: list[int] = []
    unfinished = db.compose("SELECT EXISTS (SELECT FROM {schema}.jobs)")
    waiting = db.compose("SELECT count(*) FROM {schema}.jobs WHERE state = 'available'")
    # One connection for the driver's whole run: the server's connection slots are the
    # workers' (and, on a shared server, other clients').
    with db.connect(autocommit=True) as driver:
        try:
            for _ in range(plan.workers):
                fleet.start()
            began = time.monotonic()
            next_kill = began + plan.kill_every
            while (
                driver.execute(unfinished).fetchone() == (True,) and time.monotonic() - began < plan.deadline
            ):
                exits += fleet.replace_exited()
                # The driver's timer, not a wait for a condition. A kill due while no worker
                # holds a job waits for one that does.
                killing = plan.kills is None or len(kills) < plan.kills
                if killing and plan.refill and driver.execute(waiting).fetchone()[0] < plan.refill:  # type: ignore[index]
                    jobs.enqueue(plan.refill)
                if killing and time.monotonic() >= next_kill and (kill := fleet.kill_one(driver, rng)):
                    kills.append(kill)
                    fleet.start()
                    next_kill = max(next_kill + plan.kill_every, time.monotonic() + plan.kill_every / 2)
                time.sleep(0.05)
            drained = time.monotonic()
            workers = driver.execute(db.compose("SELECT id, pid FROM {schema}.workers")).fetchall()
            worker_pids = {str(worker_id): pid for worker_id, pid in workers}
            stop_codes = fleet.stop()
        finally:
            fleet.close()
    verdict = judge(db, jobs.ids, jobs.doomed, kills, worker_pids)
    last_outcome = db.one(
        "SELECT max(at) FROM (SELECT max(finished_at) AS at FROM {schema}.job_history"
        " UNION ALL SELECT max(died_at) FROM {schema}.dead_jobs) AS ends"
    )
    to_empty = None
    if kills and verdict.left == 0 and last_outcome is not None:
        to_empty = max(0.0, (last_outcome - kills[-1].at).total_seconds())
    return Run(
        plan,
        verdict,
        jobs.ids,
        jobs.doomed,
        kills,
        worker_pids,
        fleet.started,
        drained - began,
        to_empty,
        stop_codes,
        exits,
    )


def machine() -> dict[str, object]:
    load = os.getloadavg()
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in load],
    }


def summary(
    run: Run, server_version: str, wall_seconds: float, load_before: list[float]
) -> dict[str, object]:
    verdict = run.verdict
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "load_average_before": load_before},
        "postgresql": server_version,
        "plan": asdict(run.plan),
        "jobs": verdict.jobs,
        "completed": verdict.completed,
        "dead": verdict.dead,
        "left": verdict.left,
        "kills": len(run.kills),
        "kills_holding_jobs": sum(1 for kill in run.kills if kill.held),
        "workers_started": run.workers_started,
        "executions": verdict.executions,
        "duplicate_executions": verdict.duplicate_executions,
        "jobs_run_more_than_once": verdict.jobs_run_more_than_once,
        "killed_attempts": verdict.killed_attempts,
        "killed_attempts_unrecorded": verdict.killed_attempts_unrecorded,
        "doomed_buried_by_a_kill": verdict.buried_by_a_kill,
        "rescue_seconds_after_kill": _spread(verdict.rescue_delays),
        "jobs_held_at_last_kill": run.kills[-1].held if run.kills else None,
        "seconds_from_last_kill_to_empty": run.seconds_from_last_kill_to_empty,
        "drain_seconds": round(run.drain_seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
        "survivors_exit_codes": run.stop_codes,
        "workers_exited_unasked": run.exits,
        "ok": verdict.ok,
        "problems": verdict.problems[:10],
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    """Median, 99th percentile and maximum, rounded to ms."""
    if not values:
        return None
    ordered = sorted(values)
    return {
        "median": round(ordered[len(ordered) // 2], 3),
        "p99": round(ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)], 3),
        "max": round(ordered[-1], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.worker_kills", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills")
    parser.add_argument(
        "--kills", type=int, help="stop killing after this many (default: kill until drained)"
    )
    parser.add_argument("--lease", type=float, default=2.0, help="the workers' --lease, seconds")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--work-ms", type=float, default=5.0)
    parser.add_argument("--database-url", default=os.environ.get("CONVEYOR_DATABASE_URL"), required=False)
    parser.add_argument("--logs", type=Path, help="folder for the workers' output (default: a temporary one)")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="JSON lines file the result is appended to"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's schema for inspection")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or CONVEYOR_DATABASE_URL) is required")
    plan = Plan(
        args.jobs,
        args.workers,
        args.kill_every,
        args.kills,
        args.lease,
        args.concurrency,
        work_ms=args.work_ms,
    )
    schema = f"chaos_kills_{uuid.uuid4().hex[:8]}"
    load_before = [round(x, 2) for x in os.getloadavg()]
    began = time.monotonic()
    migrations.upgrade(args.database_url, schema)
    try:
        with tempfile.TemporaryDirectory(prefix="conveyor-kills-") as scratch:
            logs = args.logs or Path(scratch)
            logs.mkdir(parents=True, exist_ok=True)
            run = drain_under_kills(args.database_url, schema, plan, logs, args.seed)
        with psycopg.connect(args.database_url) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    finally:
        if not args.keep:
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    result = summary(run, version, time.monotonic() - began, load_before)
    print(json.dumps(result, indent=2))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as out:
        out.write(json.dumps(result) + "\n")
    return 0 if run.verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
