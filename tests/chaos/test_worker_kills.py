"""Real `conveyor worker` processes SIGKILLed at random while they drain: every job ends,
every duplicate execution is explained by a killed attempt, the dead-letter table holds the
jobs that failed and nothing else. The fast subset of the long run (worker_kills.py, whose
docstring has the command); the rules are kill_verdict.py's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..helpers import DB
from .kill_verdict import judge
from .worker_kills import Plan, drain_under_kills

pytestmark = pytest.mark.processes

# Bounded to about a minute on a loaded 2-core machine: up to 10 kills 1.5 s apart, each of a worker
# holding jobs, then the drain of what is left. A worker takes a second or two to start (more
# on a busy machine), so killing all along would leave little time to work: the long run
# (worker_kills.py) does that. A 3 s lease (a heartbeat each second) so that only a kill,
# never a busy machine, ends one; concurrency 5, so that the three workers' pools (the tasks'
# own one each) stay well inside the server's connection slots, which the suite shares.
# Until the 10 kills are made the backlog is refilled (500 jobs whenever fewer wait), so a
# fast machine cannot drain it before.
PLAN = Plan(
    jobs=2000,
    workers=3,
    kill_every=1.5,
    kills=10,
    lease=3.0,
    concurrency=5,
    work_ms=10.0,
    deadline=80.0,
    refill=500,
)


def test_jobs_drained_while_busy_workers_are_killed_every_1_5_s_end_once_and_only_kills_rerun_them(
    database_url: str, schema: str, db: DB, tmp_path: Path
) -> None:
    run = drain_under_kills(database_url, schema, PLAN, tmp_path)
    verdict = run.verdict
    print(
        json.dumps(
            {"kills": len(run.kills), "drain_seconds": run.drain_seconds, **vars(verdict)}, default=str
        )
    )
    assert verdict.ok, verdict.problems
    assert run.exits == [], "workers exited unasked"
    assert len(run.ids) >= PLAN.jobs
    assert len(run.doomed) == len(run.ids) // PLAN.doomed_every
    assert (verdict.completed, verdict.dead, verdict.left) == (
        len(run.ids) - len(run.doomed),
        len(run.doomed),
        0,
    )
    # The run proved something: every planned kill was made, of a worker holding jobs, and
    # those jobs ran again.
    assert len(run.kills) == PLAN.kills, run.kills
    assert sum(kill.held for kill in run.kills) > 0, run.kills
    assert verdict.killed_attempts > 0
    assert verdict.duplicate_executions > 0
    assert run.seconds_from_last_kill_to_empty is not None
    assert len(verdict.rescue_delays) == verdict.killed_attempts  # each after its kill (the verdict checks)

    # And the verdict can fail: without the log of kills the reruns are unexplained, and a
    # job whose outcome is gone is lost.
    unexplained = judge(db, run.ids, run.doomed, [], run.worker_pids)
    assert any("was never killed" in problem for problem in unexplained.problems), unexplained.problems
    some_job = min(set(run.ids) - run.doomed)
    db.all("DELETE FROM {schema}.job_history WHERE id = %s", [some_job])
    lost = judge(db, run.ids, run.doomed, run.kills, run.worker_pids)
    assert lost.problems == [f"job {some_job} LOST: in neither job_history nor dead_jobs"]
