"""Half-open links to one side of a worker process only (tests/chaos/test_half_open.py freezes
every connection at once): its LISTEN connection alone (CONVEYOR_LISTEN_URL through a
freezing proxy, its pool direct), or its pool alone (the pool through the proxy, LISTEN
direct), each frozen while the worker is busy and then thawed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor import SyncConveyor

from ..e2e import scripted_tasks  # noqa: F401 - registers the tasks the worker process runs
from ..helpers import DB, REPO, FreezingProxy, subprocess_env, wait_until_sync

pytestmark = pytest.mark.processes

# Deadlines of the worker process: statements 1 s, connects 2 s, a silent LISTEN pinged
# after 0.5 s (and dropped when the ping is not answered within the deadline).
DEADLINES = {
    "CONVEYOR_STATEMENT_TIMEOUT": "1",
    "CONVEYOR_LOCK_TIMEOUT": "0.5",
    "CONVEYOR_CONNECT_TIMEOUT": "2",
    "CONVEYOR_LISTEN_CHECK": "0.5",
    "CONVEYOR_LOG_FORMAT": "json",
}


class WorkerProcess:
    """A `conveyor worker` process of tests.e2e.scripted_tasks, its JSON log in a file."""

    def __init__(self, env: dict[str, str], folder: Path, *options: str) -> None:
        self.ledger = folder / "ledger"
        self.ledger.mkdir()
        self.log = folder / "worker.log"
        with self.log.open("w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "worker", "--tasks", "tests.e2e.scripted_tasks", *options],
                cwd=REPO,
                env={**env, "CONVEYOR_TEST_LEDGER": str(self.ledger)},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line being written, or not a log record
            if event is None or record.get("event") == event:
                found.append(record)
        return found

    def executions(self) -> list[tuple[int, int]]:
        """(job id, attempt) of every execution, in no particular order."""
        found = []
        for log in self.ledger.glob("*.log"):
            for line in log.read_text().splitlines():
                event, job_id, attempt, _ = line.split()
                if event == "done":
                    found.append((int(job_id), int(attempt)))
        return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"the worker did not stop on SIGTERM: {self.tail()}") from None

    def tail(self) -> str:
        return self.log.read_text()[-4000:]


def start_latency(db: DB, job_id: int) -> float | None:
    """Seconds from the job's enqueue to its start, by the database's clock; None until it ended."""
    rows = db.all(
        "select extract(epoch from started_at - enqueued_at)::float from {schema}.job_history where id = %s",
        [job_id],
    )
    return float(rows[0][0]) if rows else None


def run_one(client: SyncConveyor, db: DB, *, within: float) -> float:
    job_id = client.enqueue("record", {"n": 1})
    wait_until_sync(lambda: start_latency(db, job_id) is not None, within=within)
    latency = start_latency(db, job_id)
    assert latency is not None
    return latency


def test_with_only_its_listen_link_frozen_a_worker_starts_jobs_by_polling_and_listens_again_after_the_thaw(
    proxy: FreezingProxy, database_url: str, schema: str, db: DB, tmp_path: Path
) -> None:
    poll = 5.0  # long: a start within ~0.5 s is LISTEN's doing, not the poll's (odds 1 in 10 each)
    env = subprocess_env(database_url, schema, CONVEYOR_LISTEN_URL=proxy.url(), **DEADLINES)
    worker = WorkerProcess(env, tmp_path, "--queues", "drain", "--poll-interval", str(poll))
    try:
        with SyncConveyor(database_url, schema=schema) as client:
            wait_until_sync(lambda: bool(worker.records()) and proxy.connections >= 1, within=30)
            run_one(client, db, within=2 * poll + 10)  # up (the poll finds it, at worst)
            announced = [run_one(client, db, within=poll + 10) for _ in range(3)]
            assert max(announced) < 0.5, announced  # LISTEN works before the freeze

            proxy.freeze()
            # The listener's liveness check: its ping goes unanswered, the connection is
            # dropped at the deadline, and a new one cannot be made (connects freeze too).
            wait_until_sync(lambda: bool(worker.records("listen_lost")), within=15)
            enqueued = [client.enqueue("record", {"n": n}) for n in range(3)]
            wait_until_sync(lambda: all(start_latency(db, i) is not None for i in enqueued), within=poll + 15)
            polled = [start_latency(db, i) or 0.0 for i in enqueued]
            assert max(polled) < poll + 3, polled  # within the poll interval (and a margin)
            assert not worker.records("listen_restored")  # the link is still frozen: no NOTIFY came

            thawed = time.time()
            proxy.thaw()
            wait_until_sync(lambda: bool(worker.records("listen_restored")), within=15)
            [restored] = worker.records("listen_restored")
            recovered_in = json_time(restored["time"]) - thawed
            after = [run_one(client, db, within=poll + 10) for _ in range(3)]
    finally:
        code = worker.stop()
    print(
        f"poll interval {poll:g}s; starts: before the freeze {[round(x, 3) for x in announced]}, "
        f"frozen LISTEN {[round(x, 3) for x in polled]}, after the thaw {[round(x, 3) for x in after]}; "
        f"LISTEN back {recovered_in:.2f}s after the thaw ({restored['seconds_without']}s without it)"
    )
    assert code == 0, worker.tail()
    assert max(after) < 0.5, after  # announced again: LISTEN is back
    assert recovered_in < 10, recovered_in  # a connect timeout (2 s) and a reconnect delay (1 s), with margin
    for record in worker.records("listen_lost"):
        assert record["level"] == "WARNING"
        assert "\n" not in record["message"]
    assert sorted(job for job, _ in worker.executions()) == sorted(
        row[0] for row in db.all("select id from {schema}.job_history")
    )  # every job ran once


def json_time(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def test_with_only_its_pool_frozen_mid_statement_a_worker_times_out_reconnects_and_loses_nothing(
    proxy: FreezingProxy, database_url: str, schema: str, db: DB, tmp_path: Path
) -> None:
    lease = 6.0  # past the freeze's deadlines; a claim the server runs after the thaw waits it out
    env = subprocess_env(proxy.url(), schema, CONVEYOR_LISTEN_URL=database_url, **DEADLINES)
    worker = WorkerProcess(
        env, tmp_path, "--queues", "drain,slow", "--poll-interval", "1", "--lease", str(lease), "--grace", "5"
    )
    try:
        with SyncConveyor(database_url, schema=schema) as client:
            ids = [client.enqueue("record", {"n": 0})]
            wait_until_sync(lambda: db.one("select count(*) from {schema}.job_history") == 1, within=30)
            # Busy: slow jobs running (their outcomes and heartbeats will be in flight), and a
            # stream of quick ones claimed and acked.
            ids += [client.enqueue("slow", {"seconds": 0.5 + n / 10}) for n in range(6)]
            ids += [client.enqueue("record", {"n": n}) for n in range(10)]
            wait_until_sync(lambda: db.one("select count(*) from {schema}.jobs where state = 'running'") > 0)
            connections = proxy.connections
            proxy.freeze()
            wait_until_sync(lambda: proxy.held_back > 0)  # a statement of the worker is stuck mid-way
            frozen_at = time.monotonic()
            # Jobs enqueued meanwhile are announced (LISTEN is direct); their claims hang too.
            ids += [client.enqueue("record", {"n": n}) for n in range(5)]
            # Every statement fails at its deadline instead of hanging: seen in the log.
            wait_until_sync(lambda: len(worker.records()) > 1 and _deadline_errors(worker) >= 2, within=20)
            stuck_for = time.monotonic() - frozen_at
            assert worker.process.poll() is None, worker.tail()
            proxy.thaw()
            thawed = time.monotonic()
            ids += [client.enqueue("record", {"n": n}) for n in range(5)]
            wait_until_sync(
                lambda: db.one("select count(*) from {schema}.job_history") == len(ids), within=3 * lease + 30
            )
            resumed_in = time.monotonic() - thawed
    finally:
        code = worker.stop()
    new_connections = proxy.connections - connections
    print(
        f"{_deadline_errors(worker)} statements failed at their deadline within {stuck_for:.1f}s of the freeze; "
        f"{new_connections} new pool connections; all {len(ids)} jobs ended {resumed_in:.1f}s after the thaw"
    )
    assert code == 0, worker.tail()
    assert new_connections >= 1  # the frozen connections were replaced
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    history = dict(db.all("select id, attempt from {schema}.job_history"))
    assert sorted(history) == sorted(ids)  # nothing lost
    runs = worker.executions()
    for job_id, attempt in history.items():
        ran = sorted(a for j, a in runs if j == job_id)
        # Each attempt ran at most once, and the last one ran. An attempt beyond the first is
        # there only because a lease ran out (a claim the server ran after the thaw, for a
        # worker that had given up on it, or a heartbeat that could not get through).
        assert ran[-1] == attempt, (job_id, ran, attempt)
        assert len(ran) == len(set(ran)), (job_id, ran)
        if attempt > 1:
            errors = db.one("select errors::text from {schema}.job_history where id = %s", [job_id])
            assert "lease expired" in errors, (job_id, errors)


def _deadline_errors(worker: WorkerProcess) -> int:
    return sum(1 for r in worker.records() if "did not answer" in r["message"] or "no answer" in r["message"])
