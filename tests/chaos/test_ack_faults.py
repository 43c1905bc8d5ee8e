"""A worker process whose outcome writes the database refuses (a full disk, a serialization
failure, a statement timeout: real errors raised by the server, see tests/chaos/faults.py):
the finished jobs stay leased past their lease, the completer retries, each failure is one
log line with its SQLSTATE, and once the fault is lifted every outcome is written; each job
ran once and completed once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor import SyncConveyor

from ..e2e import scripted_tasks  # noqa: F401 - registers the tasks the worker process runs
from ..helpers import DB, REPO, subprocess_env, wait_until_sync
from .faults import SQLSTATES, Fault, Faults

LEASE = 2.0
JOBS = 3

REASONS = {
    "disk_full": "out of disk space",
    "serialization_failure": "serialization failure",
    "statement_timeout": "statement timeout",
}


def log_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def write_errors(path: Path) -> list[dict[str, Any]]:
    return [r for r in log_records(path) if r.get("event") == "write_error"]


def executions(ledger: Path) -> list[str]:
    return [line for log in ledger.glob("*.log") for line in log.read_text().splitlines()]


@pytest.mark.processes
@pytest.mark.parametrize("fault", ["disk_full", "serialization_failure", "statement_timeout"])
def test_outcomes_the_database_refuses_are_retried_while_the_jobs_stay_leased_then_written_once(
    fault: Fault, database_url: str, schema: str, db: DB, tmp_path: Path
) -> None:
    faults = Faults(db)
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    output = tmp_path / "worker.log"
    faults.set("job_history", fault)
    with output.open("w") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "worker",
                "--tasks",
                "tests.e2e.scripted_tasks",
                "--queues",
                "drain",
                "--lease",
                str(LEASE),
                "--poll-interval",
                "0.5",
                "--grace",
                "5",
            ],
            cwd=REPO,
            env=subprocess_env(
                database_url,
                schema,
                CONVEYOR_TEST_LEDGER=str(ledger),
                CONVEYOR_STATEMENT_TIMEOUT="1",
                CONVEYOR_LOCK_TIMEOUT="0.5",
                CONVEYOR_LOG_FORMAT="json",
            ),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        with SyncConveyor(database_url, schema=schema) as client:
            ids = [client.enqueue("record", {"n": n}) for n in range(JOBS)]
        wait_until_sync(lambda: len(executions(ledger)) == JOBS, within=30)
        wait_until_sync(lambda: len(write_errors(output)) >= 3, within=30)
        # Past the lease by the database's clock: the jobs are still leased to their first
        # attempt (the heartbeat goes on while their outcomes wait), none rescued or buried.
        since = db.one("select now()")
        wait_until_sync(
            lambda: db.one("select now() > %s + %s * interval '1 s'", [since, 2 * LEASE]), within=30
        )
        assert db.all("select id, state, attempt from {schema}.jobs order by id") == [
            (job_id, "running", 1) for job_id in ids
        ]
        assert db.one("select count(*) from {schema}.job_history") == 0
        failures = write_errors(output)
        assert process.poll() is None, output.read_text()[-3000:]

        faults.clear()
        wait_until_sync(lambda: db.one("select count(*) from {schema}.job_history") == JOBS, within=30)
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(30)
    print(f"{fault}: {len(failures)} failed writes logged, e.g. {failures[0]['message']}")
    assert process.returncode == 0, output.read_text()[-3000:]
    assert db.all("select id, attempt from {schema}.job_history order by id") == [(i, 1) for i in ids]
    assert db.one("select count(*) from {schema}.jobs") == 0
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    assert sorted(line.split()[1] for line in executions(ledger)) == sorted(str(i) for i in ids)  # once each
    for record in failures:
        assert record["level"] == "WARNING"
        assert record["sqlstate"] == SQLSTATES[fault], record
        assert REASONS[fault] in record["message"], record
        assert "\n" not in record["message"]
        # Retried as it is, in halves (a timeout), or one at a time and set aside (a refusal
        # for want of resources, which may be one outcome's own): never given up while it lasts.
        assert any(
            words in record["message"] for words in ("retrying", "halves", "one at a time", "set aside")
        ), record
        assert "traceback" not in record
    assert not [r for r in log_records(output) if r.get("event") == "write_refused"]
