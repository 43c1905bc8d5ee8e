"""`conveyor jobs list` with every filter and its cursor, `conveyor history list|clean`,
`conveyor dlq list` by death time, and `conveyor workers` beside a real worker process: run as
a user runs them, in processes of their own against real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from ..helpers import DB, wait_until_sync
from .test_cli import conveyor, conveyor_many, env_for, expect_errors, ok, sql_enqueue, started, table

pytestmark = pytest.mark.processes

FINISH = (
    "with gone as (delete from {schema}.jobs where id = %s returning *)"
    " insert into {schema}.job_history (id, run_at, enqueued_at, started_at, finished_at, attempt, max_attempts,"
    " priority, state, queue, task, unique_key, args, errors, key)"
    " select id, run_at, enqueued_at, %s, %s, 1, max_attempts, priority, %s, queue, task, unique_key, args, errors,"
    " key from gone"
)
BURY = (
    "with gone as (delete from {schema}.jobs where id = %s returning *)"
    " insert into {schema}.dead_jobs (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts,"
    " priority, queue, task, args, errors)"
    " select id, run_at, enqueued_at, %s, %s, 3, max_attempts, priority, queue, task, args,"
    ' \'[{{"error": "ValueError: nope"}}]\' from gone'
)


@pytest.fixture
def env(database_url: str, schema: str) -> dict[str, str]:
    return env_for(database_url, schema)


def ids(text: str) -> list[int]:
    _, rows = table(text)
    return [int(i) for i in rows]


def test_jobs_list_takes_every_filter_and_refuses_bad_ones(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    a = sql_enqueue(db, "add", {"a": 1}, ", unique_key => 'order-1'")
    b = sql_enqueue(db, "add", {"a": 2})
    c = sql_enqueue(db, "add", {"a": 3})
    db.all("update {schema}.jobs set key = 'tenant-1' where id = any(%s)", [[a, c]])
    db.all("update {schema}.jobs set enqueued_at = now() - interval '3 hours' where id = %s", [a])
    db.all(FINISH, [a, "2026-01-01 00:00:00+00", "2026-01-01 00:01:00+00", "completed"])
    db.all(BURY, [b, "2026-01-02 00:00:00+00", "2026-01-02 00:01:00+00"])

    runs = conveyor_many(
        [
            ["jobs", "list", "--key", "tenant-1"],
            ["jobs", "list", "--unique-key", "order-1"],
            ["jobs", "list", "--id", str(b)],
            ["jobs", "list", "--enqueued-after", "1h"],
            ["jobs", "list", "--finished-after", "2026-01-01T12:00:00Z"],
            ["jobs", "list", "--state", "completed", "--state", "dead"],
            ["jobs", "list", "--enqueued-before", "2h", "--json"],
        ],
        env=env,
        cwd=tmp_path,
    )
    keyed, unique, by_id, recent, finished_late, ended, old = runs
    assert ids(ok(keyed)) == [c, a]
    assert ids(ok(unique)) == [a]
    assert b in ids(ok(by_id))
    assert ids(ok(recent)) == [c, b]
    assert ids(ok(finished_late)) == [b]
    assert ids(ok(ended)) == [b, a]
    assert [job["id"] for job in json.loads(ok(old))["jobs"]] == [a]

    bad = conveyor_many(
        [
            ["jobs", "list", "--cursor", "not-a-cursor"],
            ["jobs", "list", "--id", "12ab"],
            ["jobs", "list", "--queue", "nowhere"],
            ["jobs", "list", "--cursor", "WzEsImpvYnMiLDVd", "--before", "5"],
            ["history", "list", "--cursor", "WzEsImpvYnMiLDVd"],
        ],
        env=env,
        cwd=tmp_path,
    )
    expect_errors(
        bad,
        [
            "the cursor is not valid",
            "id must be 1 to 19 digits",
            "no queue named 'nowhere'",
            "give --cursor or --before, not both",
            "this cursor continues the jobs listing, not the history one",
        ],
    )
    usage = conveyor_many(
        [
            ["jobs", "list", "--enqueued-after", "yesterday"],
            ["jobs", "list", "--finished-before", "2026-01-01T00:00:00"],
            ["history", "list", "--state", "running"],
            ["history", "clean"],
        ],
        env=env,
        cwd=tmp_path,
    )
    for run in usage:
        assert run.returncode == 2, str(run)
        assert "Traceback" not in run.stderr, str(run)
    assert "neither an ISO time with an offset" in usage[0].stderr
    assert "has no offset" in usage[1].stderr
    assert "Missing option '--older-than'" in usage[3].stderr


def test_history_lists_finished_jobs_by_finish_time_and_clean_moves_the_old_ones(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    db.all("select {schema}.create_queue('emails')")
    jobs = [sql_enqueue(db, "add", {"a": n}) for n in range(4)]
    mail = sql_enqueue(db, "send_email", {"to": "a@b.c"}, ", queue => 'emails'")
    db.all(FINISH, [jobs[0], "2026-01-01 00:00:00+00", "2026-01-01 00:05:00+00", "completed"])
    db.all(FINISH, [jobs[1], "2026-01-01 00:00:00+00", "2026-01-01 00:04:00+00", "cancelled"])
    db.all(FINISH, [mail, "2026-01-01 00:00:00+00", "2026-01-01 00:03:00+00", "completed"])
    db.all(BURY, [jobs[2], "2026-01-01 00:00:00+00", "2026-01-01 00:06:00+00"])
    db.all(FINISH, [jobs[3], "now()", "now()", "completed"])

    everything, first, cancelled, dead = conveyor_many(
        [
            ["history", "list"],
            ["history", "list", "--limit", "2"],
            ["history", "list", "--state", "cancelled", "--json"],
            ["dlq", "list", "--died-before", "2026-01-02T00:00:00+00:00", "--json"],
        ],
        env=env,
        cwd=tmp_path,
    )
    assert ids(ok(everything)) == [jobs[3], jobs[2], jobs[0], jobs[1], mail]
    assert ids(ok(first)) == [jobs[3], jobs[2]]
    cursor = first.stdout.rstrip("\n").rsplit("\nnext page: --cursor ", 1)[1]
    assert ids(
        ok(conveyor("history", "list", "--limit", "2", "--cursor", cursor, env=env, cwd=tmp_path))
    ) == [
        jobs[0],
        jobs[1],
    ]
    assert [job["state"] for job in json.loads(ok(cancelled))["jobs"]] == ["cancelled"]
    assert [job["id"] for job in json.loads(ok(dead))["dead_jobs"]] == [jobs[2]]

    one_queue, refused = conveyor_many(
        [
            ["history", "clean", "--older-than", "1d", "--queue", "emails"],
            ["history", "clean", "--older-than", "1d", "--queue", "nowhere"],
        ],
        env=env,
        cwd=tmp_path,
    )
    assert ok(one_queue) == "cleaned 1 finished job(s) older than 1 day, 0:00:00\n"
    expect_errors([refused], ["no queue named 'nowhere'"])
    assert ok(conveyor("history", "clean", "--older-than", "7d", env=env, cwd=tmp_path)).startswith(
        "cleaned 2 "
    )
    assert ok(
        conveyor("history", "clean", "--older-than", "7d", "--state", "dead", env=env, cwd=tmp_path)
    ).startswith("cleaned 1 ")
    assert db.all("select id from {schema}.job_history") == [(jobs[3],)]
    assert sorted(row[0] for row in db.all("select id from {schema}.job_runs")) == sorted([mail, *jobs[:3]])


def test_workers_shows_a_worker_process_with_the_job_it_runs(
    env: dict[str, str], db: DB, tmp_path: Path
) -> None:
    worker_env = {**env, "CONVEYOR_TEST_LEDGER": str(tmp_path)}
    db.all("select {schema}.create_queue('ctl_a')")
    job = sql_enqueue(db, "forever", {}, ", queue => 'ctl_a'")
    with started(
        "worker", "--tasks", "tests.e2e.control_tasks", "--queues", "ctl_a", "--concurrency", "3", "--grace", "1s",
        env=worker_env, cwd=tmp_path, name="worker",
    ) as worker:  # fmt: skip
        wait_until_sync(
            lambda: (
                worker.alive() and db.one("select count(*) from {schema}.jobs where state = 'running'") == 1
            ),
            within=30,
        )
        text, as_json = conveyor_many([["workers"], ["workers", "--json"]], env=env, cwd=tmp_path)
        header, rows = table(ok(text))
        assert header == ["worker", "host:pid", "queues", "running", "heartbeat_s", "alive", "jobs"]
        [row] = rows.values()
        assert row[1].endswith(f":{worker.popen.pid}")
        assert row[2:4] == ["ctl_a", "1/3"]
        assert row[5:] == ["yes", f"{job}:forever"]
        assert "scheduler: none running; 0 schedule(s) active" in text.stdout
        document: dict[str, Any] = json.loads(ok(as_json))
        [me] = document["workers"]
        assert (me["pid"], me["queues"], me["concurrency"], me["alive"]) == (
            worker.popen.pid,
            ["ctl_a"],
            3,
            True,
        )
        assert [(j["id"], j["task"], j["lease_expired"]) for j in me["jobs"]] == [(job, "forever", False)]
        assert document["scheduler"]["running"] is False
        assert worker.stop(signal.SIGTERM) == 0
    gone = ok(conveyor("workers", env=env, cwd=tmp_path))
    assert table(gone)[1] == {}
    assert os.path.exists(tmp_path / "worker.stderr")
