"""Queue limits across real `conveyor worker` processes: a rate limit, a concurrency cap and
a per-key cap hold for all workers at once, and limited queues do not hold up others.

Start times come from job_history.started_at (the claim's clock, the one the limits count
with); a job runs from its claim until its outcome is written (finished_at), and the
concurrency caps count it over all that span.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conveyor import Conveyor, JobRequest

from ..helpers import DB, REPO, subprocess_env, wait_until_sync
from . import scripted_tasks  # noqa: F401 - registers the tasks used below
from .test_worker_processes import Workers, finish

pytestmark = pytest.mark.processes


@pytest.fixture
def workers(database_url: str, schema: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(database_url, schema, tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


def cli(database_url: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=REPO,
        env=subprocess_env(database_url, schema),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def enqueue(database_url: str, schema: str, jobs: list[JobRequest]) -> list[int]:
    async with Conveyor(database_url, schema=schema) as client:
        return await client.enqueue_many(jobs)


def start_three(workers: Workers, db: DB, queues: str, concurrency: str) -> list[subprocess.Popen[str]]:
    """Three worker processes, returned once all three serve (a process still importing when
    the test ends would be killed before it could stop cleanly)."""
    processes = [workers.start("--queues", queues, "--concurrency", concurrency) for _ in range(3)]
    wait_until_sync(lambda: db.one("select count(*) from {schema}.workers") == 3, within=30, interval=0.1)
    return processes


def most_in_any_span(starts: list[datetime], span: timedelta) -> int:
    """The most starts in any half-open span [t, t + span) (a sliding window)."""
    starts = sorted(starts)
    most = 0
    j = 0
    for i, t in enumerate(starts):
        j = max(j, i)
        while j < len(starts) and starts[j] < t + span:
            j += 1
        most = max(most, j - i)
    return most


async def test_rate_limit_10_per_second_across_3_workers(
    database_url: str, schema: str, db: DB, workers: Workers
) -> None:
    """Set from the CLI. 200 jobs at 10/s drain in about 20 s, never 11 starts in a second."""
    assert cli(database_url, schema, "queues", "create", "rated").returncode == 0
    result = cli(database_url, schema, "queues", "limit", "rated", "--rate", "10/1s")
    assert result.returncode == 0, result.stderr
    assert "rate 10/1s" in result.stdout
    bad = cli(database_url, schema, "queues", "limit", "rated", "--rate", "10 per second")
    assert bad.returncode == 2
    assert "COUNT/DURATION" in bad.stderr
    await enqueue(database_url, schema, [JobRequest("rated") for _ in range(200)])
    processes = start_three(workers, db, "rated", "20")

    wait_until_sync(
        lambda: db.one("select count(*) from {schema}.job_history") == 200, within=40, interval=0.2
    )
    listing = cli(database_url, schema, "queues", "list")
    assert "rate 10/1s" in listing.stdout
    results = [finish(p) for p in processes]
    assert [code for code, _ in results] == [0, 0, 0], [out[-2000:] for _, out in results]

    starts = [row[0] for row in db.all("select started_at from {schema}.job_history")]
    assert most_in_any_span(starts, timedelta(seconds=1)) <= 10
    drained_in = max(starts) - min(starts)
    assert timedelta(seconds=18) < drained_in < timedelta(seconds=24), drained_in
    assert db.one("select max(attempt) from {schema}.job_history") == 1
    assert db.one("select count(*) from {schema}.dead_jobs") == 0
    assert len({pid for pid in db.all("select distinct worker_id from {schema}.job_history")}) >= 2


async def test_concurrency_cap_2_across_3_workers_while_another_queue_flows(
    database_url: str, schema: str, db: DB, workers: Workers
) -> None:
    async with Conveyor(database_url, schema=schema) as client:
        await client.set_queue_limits("capped", concurrency=2)
        await client.enqueue_many([JobRequest("capped", {"seconds": 0.2}) for _ in range(30)])
    processes = start_three(workers, db, "capped,drain", "10")
    wait_until_sync(lambda: db.one("select count(*) from {schema}.job_history") >= 2, within=20)
    await enqueue(database_url, schema, [JobRequest("record", {"n": i}) for i in range(2000)])

    most = 0
    deadline = time.monotonic() + 40
    while db.one("select count(*) from {schema}.job_history where queue = 'capped'") < 30:
        assert time.monotonic() < deadline, "the capped queue did not drain"
        running = db.one("select count(*) from {schema}.jobs where queue = 'capped' and state = 'running'")
        assert running <= 2
        most = max(most, running)
        await asyncio.sleep(0.01)
    assert most == 2  # the cap was reached, and used
    results = [finish(p) for p in processes]
    assert [code for code, _ in results] == [0, 0, 0], [out[-2000:] for _, out in results]
    # The other queue flowed meanwhile: all of it finished before the capped queue did.
    drain_done, capped_done = db.one(
        "select max(finished_at) filter (where queue = 'drain'), max(finished_at) filter (where queue = 'capped')"
        " from {schema}.job_history"
    )
    assert db.one("select count(*) from {schema}.job_history where queue = 'drain'") == 2000
    assert drain_done < capped_done
    # Runs of the capped queue, claim to written outcome, never overlapped more than 2 deep.
    spans = db.all("select started_at, finished_at from {schema}.job_history where queue = 'capped'")
    for started, _ in spans:
        assert sum(1 for s, f in spans if s <= started < f) <= 2


async def test_key_cap_1_across_3_workers_without_head_of_line_blocking(
    database_url: str, schema: str, db: DB, workers: Workers
) -> None:
    """5 keys, one running per key; key "big" has 1,000 jobs waiting, yet key "late", enqueued
    last with one job, starts within a second."""
    async with Conveyor(database_url, schema=schema) as client:
        await client.set_queue_limits("capped", key_concurrency=1)
        big = await client.enqueue_many(
            [JobRequest("capped", {"seconds": 0.05}, key="big") for _ in range(1000)]
        )
        others = await client.enqueue_many(
            [JobRequest("capped", {"seconds": 0.05}, key=key) for key in "abc" for _ in range(5)]
        )
    processes = start_three(workers, db, "capped", "10")
    wait_until_sync(lambda: db.one("select count(*) from {schema}.job_history") >= 20, within=20)

    keyed_at = db.one("select clock_timestamp()")
    [late] = await enqueue(database_url, schema, [JobRequest("capped", {"seconds": 0.05}, key="late")])
    wait_until_sync(
        lambda: db.one("select count(*) from {schema}.job_history where id = %s", [late]) == 1, within=10
    )
    wait_until_sync(
        lambda: db.one("select count(*) from {schema}.job_history where id = any(%s)", [others]) == 15,
        within=20,
    )
    results = [finish(p) for p in processes]
    assert [code for code, _ in results] == [0, 0, 0], [out[-2000:] for _, out in results]

    late_started = db.one("select started_at from {schema}.job_history where id = %s", [late])
    assert late_started - keyed_at < timedelta(seconds=1)
    keys = {i: "big" for i in big} | {late: "late"} | {j: "abc"[i // 5] for i, j in enumerate(others)}
    rows = db.all("select id, started_at, finished_at from {schema}.job_history")
    by_key: dict[str, list[tuple[datetime, datetime]]] = {}
    for job_id, started, finished in rows:
        by_key.setdefault(keys[job_id], []).append((started, finished))
    for key, spans in by_key.items():
        spans.sort()
        for (_, finished), (next_started, _) in itertools.pairwise(spans):
            assert finished <= next_started, f"two jobs of key {key} overlapped"


def test_limits_from_the_cli(database_url: str, schema: str, db: DB) -> None:
    """Set, show (queues list, status, JSON), clear; usage errors exit 2 and change nothing. A
    queue that does not exist is refused (a typo makes no queue)."""
    unknown = cli(database_url, schema, "queues", "limit", "exports", "--concurrency", "2")
    assert (unknown.returncode, unknown.stderr) == (1, "conveyor: error: no queue named 'exports'\n")
    assert cli(database_url, schema, "queues", "create", "exports").returncode == 0
    done = cli(database_url, schema, "queues", "limit", "exports", "--concurrency", "2", "--key-rate", "5/1s")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "queue 'exports': concurrency 2; per key: rate 5/1s\n"
    for args, message in [
        ((), "give at least one of"),
        (("--clear", "--concurrency", "1"), "give at least one of"),
        (("--concurrency", "0"), "0 is not in the range"),
        (("--rate", "5"), "COUNT/DURATION"),
        (("--rate", "5/3000000d"), "between 1 millisecond and 365 days"),
        (("--rate", "5/0.000001s"), "between 1 millisecond and 365 days"),
        (("--concurrency", str(10**12)), "is not in the range"),
        (("--key-concurrency", "1000001"), "is not in the range"),
    ]:
        bad = cli(database_url, schema, "queues", "limit", "exports", *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert message in bad.stderr, (args, bad.stderr)
    assert db.one("select (concurrency, key_rate_limit) from {schema}.queues where name = 'exports'") == (
        "2",
        "5",
    )

    listing = cli(database_url, schema, "queues", "list")
    assert "concurrency 2; per key: rate 5/1s  0/2 running, 0 keys in window" in listing.stdout, (
        listing.stdout
    )
    status = cli(database_url, schema, "status")
    assert "concurrency 2; per key: rate 5/1s  0/2 running, 0 keys in window" in status.stdout, status.stdout
    as_json = cli(database_url, schema, "queues", "list", "--json")
    [row] = [q for q in json.loads(as_json.stdout) if q["queue"] == "exports"]
    assert row["limits"]["concurrency"] == 2
    assert row["limits"]["key_rate"] == {"limit": 5, "period": 1.0}

    cleared = cli(database_url, schema, "queues", "limit", "exports", "--clear")
    assert cleared.stdout == "queue 'exports': no limits\n"
    assert db.one("select limited from {schema}.queues where name = 'exports'") is False
