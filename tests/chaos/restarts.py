"""PostgreSQL restarted, fast and immediate in turn, several times, under real `conveyor
worker`, `conveyor scheduler` and `conveyor api` processes while jobs are enqueued
continuously (through the API over HTTP and straight into the database). After each restart:
the seconds until enqueue-to-start latency is back under 100 ms, with a poll interval of 30 s
so that only a LISTEN set up again can explain it; until the API answers again; until the
scheduler fires again. At the end: every job whose enqueue was acknowledged completed, the
enqueues refused during the restarts said the database was unavailable, and every process
stops on SIGTERM with exit 0.

Long run (a server of its own: the scenario restarts it)::

    python -m tests.chaos.restarts --restarts 10

prints a summary and appends a JSON line to tests/chaos/results/restarts.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from conveyor import Conveyor
from conveyor.ops.keys import create_key
from conveyor.ops.roles import LOCAL_ADMIN

from ..helpers import DB, subprocess_env, wait_until_sync
from .cluster import Cluster
from .enqueuers import DirectEnqueuer, Enqueuer, HttpEnqueuer
from .processes import Process
from .restart_tasks import QUEUE

FAST_START = 0.100  # enqueue-to-start latency counted as recovered, seconds
POLL_INTERVAL = "30s"  # far longer than any recovery measured: a prompt start is LISTEN's doing
ENQUEUE_EVERY = 0.05  # each producer, seconds
LISTENING = re.compile(r"(http://[0-9.]+:[0-9]+)/api/v1")
SCHEDULE = "chaos-every-second"


@dataclass
class Recovery:
    mode: str
    pg_ctl: float  # seconds pg_ctl restart took (shutdown and start)
    latency_back: float  # seconds after it returned until a job started within FAST_START
    api_back: float  # ... until the API answered a request
    scheduler_back: float  # ... until the scheduler fired again
    probes: list[float] = field(default_factory=list)  # latencies of the probe jobs, seconds


@dataclass
class RestartResult:
    recoveries: list[Recovery] = field(default_factory=list)
    acknowledged: dict[str, int] = field(default_factory=dict)
    failed: dict[str, dict[str, int]] = field(default_factory=dict)
    unclear: list[str] = field(default_factory=list)
    completed: int = 0
    lost: list[int] = field(default_factory=list)
    dead: int = 0
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"{r.mode:9} restart: pg_ctl {r.pg_ctl:.2f} s; then latency under {FAST_START * 1000:.0f} ms "
            f"after {r.latency_back:.2f} s, API answering after {r.api_back:.2f} s, scheduler firing "
            f"after {r.scheduler_back:.2f} s; probe latencies {r.probes} s"
            for r in self.recoveries
        ]
        lines.append(
            f"enqueues acknowledged {self.acknowledged}, failed {self.failed} (unclear: {len(self.unclear)}); "
            f"completed {self.completed}, lost {len(self.lost)}, dead {self.dead}; "
            f"exit codes on SIGTERM {self.exit_codes}; {self.seconds:.0f} s in all"
        )
        return "\n".join(lines)


class Fleet:
    """The worker, scheduler and API processes of the run."""

    def __init__(self, url: str, schema: str, folder: Path) -> None:
        self.env = subprocess_env(url, schema, PYTHONUNBUFFERED="1")
        self.folder = folder
        tasks = ["--tasks", "tests.chaos.restart_tasks"]
        worker = ["worker", *tasks, "--queues", QUEUE, "--poll-interval", POLL_INTERVAL, "--grace", "5s"]
        self.workers = [self._start(worker) for _ in range(2)]
        self.scheduler = self._start(["scheduler", *tasks, "--lease", "3", "--tick", "0.5"])
        self.api = self._start(["api", *tasks, "--port", "0", "--no-access-log"])

    def _start(self, args: list[str]) -> Process:
        return Process(args, env=self.env, folder=self.folder)

    @property
    def processes(self) -> list[Process]:
        return [*self.workers, self.scheduler, self.api]

    def api_url(self) -> str:
        wait_until_sync(
            lambda: not self.api.alive() or LISTENING.search(self.api.output()) is not None, within=60
        )
        found = LISTENING.search(self.api.output())
        assert found, str(self.api)
        return found[1]

    def describe(self, db: DB) -> str:
        """What the processes said, and the schedule's state, for a failure's message."""
        schedules = db.all("SELECT name, next_fire_at, last_fire_at, error, paused FROM {schema}.schedules")
        leaders = db.all("SELECT * FROM {schema}.leaders")
        activity = db.all(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 120) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        said = "\n".join(str(p) for p in self.processes)
        return f"schedules {schedules}\nleaders {leaders}\nsessions {activity}\n{said}"

    def check_alive(self) -> None:
        for process in self.processes:
            assert process.alive(), str(process)

    def stop(self) -> dict[str, int | None]:
        return {p.name: p.stop() for p in self.processes}

    def kill(self) -> None:
        for process in self.processes:
            process.kill()


async def make_token(url: str, schema: str) -> str:
    async with Conveyor(url, schema=schema) as client:
        await client.create_schedule(SCHEDULE, "* * * * * *", "touch", {"n": -1})
        return (await create_key(client.db, LOCAL_ADMIN, "chaos-restarts", "operator"))[1]


def start_latency(db: DB, job_id: int) -> float | None:
    """Seconds from the job's enqueue to its start (both by the database's clock), once started."""
    rows = db.all(
        "SELECT extract(epoch FROM started_at - enqueued_at)::float8 FROM {schema}.jobs"
        " WHERE id = %(id)s AND started_at IS NOT NULL"
        " UNION ALL SELECT extract(epoch FROM started_at - enqueued_at)::float8 FROM {schema}.job_history"
        " WHERE id = %(id)s",
        {"id": job_id},
    )
    return float(rows[0][0]) if rows else None


def fires_since(db: DB, moment: float) -> int:
    """Fires recorded at or after the Unix time ``moment``."""
    return int(
        db.one("SELECT count(*) FROM {schema}.schedule_fires WHERE fired_at >= to_timestamp(%s)", [moment])
    )


def answers(http: httpx.Client) -> bool:
    try:
        return http.get("/api/v1/queues").status_code == 200
    except httpx.TransportError:
        return False


def enqueue_when_possible(direct: DirectEnqueuer) -> int:
    """A probe job's id, enqueued as soon as the database takes it."""
    ids: list[int] = []

    def enqueued() -> bool:
        try:
            ids.append(direct.client.enqueue("touch", {"n": 0}, queue=QUEUE))
        except Exception:  # the database is not back yet: try again
            return False
        return True

    wait_until_sync(enqueued, within=60, interval=0.05)
    return ids[0]


def measure_recovery(
    db: DB, direct: DirectEnqueuer, http: httpx.Client, mode: str, pg_ctl: float
) -> Recovery:
    """After a restart, measured side by side: when the API answers, when the scheduler fires,
    and when the first probe job is enqueued that starts within FAST_START (each probe waits
    for its start, up to the poll interval: a worker that did not LISTEN again would take that
    long)."""
    back, wall = time.monotonic(), time.time()
    probes: list[float] = []

    def api_back() -> float:
        wait_until_sync(lambda: answers(http), within=60, interval=0.05)
        return time.monotonic() - back

    def scheduler_back() -> float:
        wait_until_sync(lambda: fires_since(db, wall) > 0, within=60, interval=0.05)
        return time.monotonic() - back

    def latency_back() -> float:
        while True:
            probe = enqueue_when_possible(direct)
            enqueued = time.monotonic() - back
            wait_until_sync(lambda: start_latency(db, probe) is not None, within=45)  # noqa: B023 - waited on here
            latency = start_latency(db, probe)
            assert latency is not None
            probes.append(round(latency, 4))
            if latency < FAST_START:
                return enqueued

    with ThreadPoolExecutor(3) as pool:
        latency, api, scheduler = (pool.submit(f) for f in (latency_back, api_back, scheduler_back))
        return Recovery(mode, pg_ctl, latency.result(), api.result(), scheduler.result(), probes)


def twenty_more(enqueuers: list[Enqueuer]) -> Callable[[], bool]:
    """Whether every producer had 20 more enqueues acknowledged than now."""
    target = [len(e.acknowledged) + 20 for e in enqueuers]
    return lambda: all(len(e.acknowledged) >= n for e, n in zip(enqueuers, target, strict=True))


def run_restarts(cluster: Cluster, schema: str, *, restarts: int, folder: Path) -> RestartResult:
    db = DB(cluster.url, schema)
    result = RestartResult()
    began = time.monotonic()
    token = asyncio.run(make_token(cluster.url, schema))
    fleet = Fleet(cluster.url, schema, folder)
    enqueuers: list[Enqueuer] = []
    try:
        wait_until_sync(lambda: db.one("SELECT count(*) FROM {schema}.workers") >= 2, within=60)
        api_url = fleet.api_url()
        direct = DirectEnqueuer(cluster.url, schema, ENQUEUE_EVERY)
        producer = HttpEnqueuer(api_url, token, ENQUEUE_EVERY)
        enqueuers = [direct, producer]
        with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            wait_until_sync(lambda: answers(http), within=60)
            for enqueuer in enqueuers:
                enqueuer.start()
            measure_recovery(db, direct, http, "start", 0.0)  # everything up and listening
            for n in range(restarts):
                mode = ("fast", "immediate")[n % 2]
                pg_ctl = cluster.restart(mode)
                result.recoveries.append(measure_recovery(db, direct, http, mode, pg_ctl))
                fleet.check_alive()
                # Run on for a while, as many acknowledged enqueues again, before the next restart.
                wait_until_sync(twenty_more(enqueuers), within=60)
        for enqueuer in enqueuers:
            enqueuer.stop()
        check_every_job(db, enqueuers, result)
        result.exit_codes = fleet.stop()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.describe(db)}") from exc
    finally:
        fleet.kill()
        for enqueuer in enqueuers:
            enqueuer.stop()
    result.seconds = time.monotonic() - began
    return result


def check_every_job(db: DB, enqueuers: list[Enqueuer], result: RestartResult) -> None:
    """Every acknowledged enqueue completed (waiting for the last ones to run)."""
    ids = sorted({job_id for e in enqueuers for job_id in e.acknowledged})

    def completed() -> int:
        return int(
            db.one(
                "SELECT count(DISTINCT id) FROM {schema}.job_history WHERE id = ANY(%s) AND state = 'completed'",
                [ids],
            )
        )

    with contextlib.suppress(AssertionError):  # the lost ones are named below
        wait_until_sync(lambda: completed() == len(ids), within=60, interval=0.2)
    done = {row[0] for row in db.all("SELECT id FROM {schema}.job_history WHERE id = ANY(%s)", [ids])}
    result.completed = len(done)
    result.lost = [job_id for job_id in ids if job_id not in done]
    result.dead = int(db.one("SELECT count(*) FROM {schema}.dead_jobs"))
    result.acknowledged = {e.name: len(e.acknowledged) for e in enqueuers}
    result.failed = {e.name: dict(e.failures) for e in enqueuers}
    result.unclear = [text for e in enqueuers for text in e.unclear]


def main() -> None:
    from .cluster import fresh_schema, own_cluster
    from .run_record import append_result

    # The run's own clients fail to connect while the server is down, as expected: no warnings.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.restarts", description=__doc__)
    parser.add_argument("--restarts", type=int, default=10, help="restarts, fast and immediate in turn")
    options = parser.parse_args()
    with own_cluster() as cluster, tempfile.TemporaryDirectory(prefix="conveyor-restarts-") as folder:
        schema = fresh_schema(cluster.url, f"chaos_restarts_{uuid.uuid4().hex[:8]}")
        result = run_restarts(cluster, schema, restarts=options.restarts, folder=Path(folder))
    print(result.summary())
    numbers: dict[str, Any] = asdict(result)
    path = append_result("restarts", numbers, server="embedded")
    print(f"appended to {path}: {json.dumps(numbers, default=str)[:200]}...")


if __name__ == "__main__":
    main()
