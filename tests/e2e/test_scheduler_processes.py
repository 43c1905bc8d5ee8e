"""Real `conveyor scheduler` processes: three at once, and the leader killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise

import pytest

from conveyor import Conveyor

from ..helpers import DB, REPO, subprocess_env, wait_until_sync
from . import scripted_tasks  # noqa: F401 - registers the task the schedule enqueues

pytestmark = pytest.mark.processes

LEASE, TICK = 3.0, 0.5


@pytest.fixture
def schedulers(database_url: str, schema: str) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    for _ in range(3):
        started.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "conveyor",
                    "scheduler",
                    "--tasks",
                    "tests.e2e.scripted_tasks",
                    "--lease",
                    str(LEASE),
                    "--tick",
                    str(TICK),
                ],
                cwd=REPO,
                env=subprocess_env(database_url, schema),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


async def every_second(database_url: str, schema: str) -> None:
    async with Conveyor(database_url, schema=schema) as client:
        await client.create_schedule("tick", "* * * * * *", "record", {"n": 0})


def stop(processes: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    results = []
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        results.append((process.returncode, output))
    return results


def assert_one_job_per_second(db: DB) -> int:
    """Every second from the first fire to the last fired exactly once, with one job each."""
    fires = db.all("select fire_time, job_id, kind from {schema}.schedule_fires order by fire_time")
    times = [fire_time for fire_time, _, _ in fires]
    assert len(times) == len(set(times))
    gaps = [(b - a) for a, b in pairwise(times) if b - a != timedelta(seconds=1)]
    assert gaps == [], f"fire times not one second apart: {gaps[:5]}"
    assert all(kind in ("on_time", "late") for _, _, kind in fires)
    job_ids = [job_id for _, job_id, _ in fires]
    jobs = db.all("select id, task, args from {schema}.jobs where task = 'record' order by id")
    assert sorted(job_ids) == [job_id for job_id, _, _ in jobs]
    assert all(args == {"n": 0} for _, _, args in jobs)
    return len(times)


async def test_three_schedulers_fire_a_per_second_schedule_once_per_second(
    database_url: str, schema: str, db: DB, schedulers: list[subprocess.Popen[str]]
) -> None:
    await every_second(database_url, schema)
    wait_until_sync(lambda: db.one("select count(*) from {schema}.schedule_fires") >= 32, within=60)
    results = stop(schedulers)
    assert [code for code, _ in results] == [0, 0, 0], [out[-2000:] for _, out in results]

    fired = assert_one_job_per_second(db)
    assert fired >= 32
    leaders = sum("now leads" in output for _, output in results)
    assert leaders >= 1


async def test_killing_the_leader_hands_over_within_the_lease_and_loses_no_fire(
    database_url: str, schema: str, db: DB, schedulers: list[subprocess.Popen[str]]
) -> None:
    await every_second(database_url, schema)
    wait_until_sync(lambda: db.one("select count(*) from {schema}.schedule_fires") >= 5, within=30)
    leader_pid = db.one("select pid from {schema}.leaders where role = 'scheduler'")
    [leader] = [p for p in schedulers if p.pid == leader_pid]

    leader.kill()  # SIGKILL: no resignation, the lease has to run out
    killed = time.monotonic()
    wait_until_sync(
        lambda: db.one("select pid from {schema}.leaders where role = 'scheduler'") != leader_pid,
        within=LEASE * 4,
        interval=0.05,
    )
    takeover = time.monotonic() - killed
    fires_at_takeover = db.one("select count(*) from {schema}.schedule_fires")
    wait_until_sync(
        lambda: db.one("select count(*) from {schema}.schedule_fires") >= fires_at_takeover + 5, within=30
    )
    others = [p for p in schedulers if p is not leader]
    results = stop(others)
    assert [code for code, _ in results] == [0, 0], [out[-2000:] for _, out in results]

    print(f"\nleader killed; another took over after {takeover:.2f} s (lease {LEASE} s, tick {TICK} s)")
    assert takeover <= LEASE + TICK + 1.0  # one more second for process scheduling on 2 cores
    assert_one_job_per_second(db)
    late = db.one("select count(*) from {schema}.schedule_fires where kind = 'late'")
    assert late >= 1  # the fires due during the hand-over came late, and they came
