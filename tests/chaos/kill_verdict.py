"""The verdict of a worker-kill chaos run, computed from its tables alone: where every job
ended (``jobs``, ``job_history``, ``dead_jobs``), every execution the tasks recorded
(``chaos_executions``, see kill_tasks.py), the workers' ids and pids (``workers``) and the
driver's log of kills.

The rules, for a run in which workers are only ever SIGKILLed (never stopped gracefully, so
no attempt is handed back uncounted):

- every job ended exactly once: none left in ``jobs``, none in both ``job_history`` and
  ``dead_jobs``; steady jobs completed, doomed ones (failing on every attempt) dead after
  their last attempt, and nothing else in ``dead_jobs``;
- an attempt runs at most once, and nothing runs after the attempt that recorded the outcome;
- every attempt before the last ended for a reason: for a doomed job its own error, or else
  ``lease expired`` with the lease held by a worker the driver SIGKILLed after the execution
  started and before the lease was found expired (a duplicate explained by a killed
  attempt). A steady job's errors are only such expiries.

A *duplicate execution* is a recorded execution of an attempt that ended in a lease expiry:
the job ran again (or, for a doomed job on its last attempt, was buried) because of a kill.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..helpers import DB
from .kill_tasks import DOOMED_ERROR, DOOMED_MAX_ATTEMPTS

LEASE_EXPIRED = "lease expired"


@dataclass(frozen=True)
class Kill:
    pid: int
    at: datetime  # UTC, by this machine's clock (the database runs on it too)
    held: int  # jobs the worker held (state running, its lease) just before it was killed


@dataclass
class Verdict:
    jobs: int = 0
    completed: int = 0
    dead: int = 0
    left: int = 0
    executions: int = 0
    duplicate_executions: int = 0  # recorded executions of attempts a kill ended
    jobs_run_more_than_once: int = 0
    killed_attempts: int = 0  # attempts ended by `lease expired`, recorded as executions or not
    killed_attempts_unrecorded: int = 0  # killed before the task's first statement committed
    buried_by_a_kill: int = 0  # doomed jobs whose last attempt was the killed one
    rescue_delays: list[float] = field(
        default_factory=list
    )  # seconds from a kill to each of its jobs' rescue
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:  # enough to see the pattern; the counts say how many
            self.problems.append(text)
        elif len(self.problems) == 50:
            self.problems.append("... (more problems not listed)")


@dataclass(frozen=True)
class _Execution:
    attempt: int
    pid: int
    started_at: datetime


def judge(
    db: DB, ids: Iterable[int], doomed: Collection[int], kills: list[Kill], worker_pids: Mapping[str, int]
) -> Verdict:
    """``worker_pids`` maps the id of every worker that ran in the run to its pid; read it
    before the survivors stop (a worker stopped cleanly deletes its row)."""
    killed_at = {kill.pid: kill.at for kill in kills}
    verdict = Verdict()
    outcomes: dict[int, list[tuple[str, int, list[dict[str, Any]], str | None]]] = defaultdict(list)
    for job_id, attempt, errors, worker in db.all(
        "SELECT id, attempt, errors, worker_id::text FROM {schema}.job_history WHERE state = 'completed'"
    ):
        outcomes[job_id].append(("completed", attempt, errors, worker))
    for job_id, attempt, errors in db.all("SELECT id, attempt, errors FROM {schema}.dead_jobs"):
        outcomes[job_id].append(("dead", attempt, errors, None))
    left = dict(db.all("SELECT id, state FROM {schema}.jobs"))
    executions: dict[int, list[_Execution]] = defaultdict(list)
    for job_id, attempt, pid, started_at in db.all(
        "SELECT job_id, attempt, pid, started_at FROM {schema}.chaos_executions"
    ):
        executions[job_id].append(_Execution(attempt, pid, started_at))

    expected = set(ids)
    verdict.jobs = len(expected)
    verdict.executions = sum(len(runs) for runs in executions.values())
    for stray in (set(outcomes) | set(left) | set(executions)) - expected:
        verdict.problem(f"job {stray} is none of the run's jobs")
    for job_id in sorted(expected):
        _judge_job(
            verdict,
            job_id,
            job_id in doomed,
            outcomes.get(job_id, []),
            left.get(job_id),
            executions.get(job_id, []),
            killed_at,
            worker_pids,
        )
    return verdict


def _judge_job(
    verdict: Verdict,
    job_id: int,
    is_doomed: bool,
    ends: list[tuple[str, int, list[dict[str, Any]], str | None]],
    left_state: str | None,
    runs: list[_Execution],
    killed_at: Mapping[int, datetime],
    worker_pids: Mapping[str, int],
) -> None:
    if left_state is not None:
        verdict.left += 1
        verdict.problem(f"job {job_id} never ended: still {left_state} in jobs")
        return
    if len(ends) != 1:
        verdict.problem(
            f"job {job_id} ended {len(ends)} times: {[end[0] for end in ends]}"
            if ends
            else f"job {job_id} LOST: in neither job_history nor dead_jobs"
        )
        return
    state, final_attempt, errors, final_worker = ends[0]
    if state == "completed":
        verdict.completed += 1
    else:
        verdict.dead += 1
    if is_doomed and (state != "dead" or final_attempt != DOOMED_MAX_ATTEMPTS):
        verdict.problem(f"doomed job {job_id} {state} on attempt {final_attempt}")
    if not is_doomed and state != "completed":
        verdict.problem(f"steady job {job_id} is in dead_jobs after attempt {final_attempt}: {errors[-1:]}")

    by_attempt: dict[int, _Execution] = {}
    for attempt, count in Counter(r.attempt for r in runs).items():
        if count > 1:
            verdict.problem(f"job {job_id}: attempt {attempt} ran {count} times")
    for run in runs:
        by_attempt[run.attempt] = run
        if run.attempt > final_attempt:
            verdict.problem(f"job {job_id}: attempt {run.attempt} ran after attempt {final_attempt} ended it")
    if len(runs) > 1 and not is_doomed:
        verdict.jobs_run_more_than_once += 1
    if state == "completed":
        final = by_attempt.get(final_attempt)
        if final is None:
            verdict.problem(f"job {job_id} completed on attempt {final_attempt}, which never ran")
        elif final_worker is not None and worker_pids.get(final_worker, final.pid) != final.pid:
            verdict.problem(
                f"job {job_id}: attempt {final_attempt} ran in pid {final.pid}, "
                f"its outcome came from pid {worker_pids[final_worker]}"
            )

    explained = {final_attempt} if state == "completed" else set()
    for entry in errors:
        if "dropped" in entry:  # the middle of a long error list, summarized: nothing to check
            explained.update(range(1, final_attempt + 1))
            continue
        attempt, error = int(entry["attempt"]), str(entry["error"])
        explained.add(attempt)
        if error.startswith(LEASE_EXPIRED):
            _judge_killed_attempt(
                verdict, job_id, attempt, entry, by_attempt.get(attempt), killed_at, worker_pids
            )
            if state == "dead" and attempt == final_attempt:
                verdict.buried_by_a_kill += 1
        elif not (is_doomed and DOOMED_ERROR in error):
            verdict.problem(f"job {job_id}: attempt {attempt} failed: {error[:200]}")
    for attempt in sorted(set(by_attempt) - explained):
        verdict.problem(f"job {job_id}: attempt {attempt} ran and left no outcome or error")


def _judge_killed_attempt(
    verdict: Verdict,
    job_id: int,
    attempt: int,
    entry: Mapping[str, Any],
    run: _Execution | None,
    killed_at: Mapping[int, datetime],
    worker_pids: Mapping[str, int],
) -> None:
    """An attempt whose lease expired must have been held by a worker the driver killed."""
    verdict.killed_attempts += 1
    holder = worker_pids.get(str(entry.get("worker")))
    if run is None:
        verdict.killed_attempts_unrecorded += 1
    else:
        verdict.duplicate_executions += 1
        if holder is not None and holder != run.pid:
            verdict.problem(
                f"job {job_id}: attempt {attempt} ran in pid {run.pid}, its lease was pid {holder}'s"
            )
        holder = run.pid
    if holder is None:
        verdict.problem(
            f"job {job_id}: attempt {attempt}'s lease expired, held by unknown worker {entry.get('worker')}"
        )
    elif holder not in killed_at:
        verdict.problem(
            f"job {job_id}: attempt {attempt}'s lease expired, yet its worker (pid {holder}) was never killed"
        )
    else:
        if run is not None and run.started_at > killed_at[holder]:
            verdict.problem(
                f"job {job_id}: attempt {attempt} started in pid {holder} after that pid was killed"
            )
        rescued_at = datetime.fromisoformat(str(entry["at"]))
        if rescued_at <= killed_at[holder]:  # ran out while its worker lived: no kill explains it
            verdict.problem(f"job {job_id}: attempt {attempt}'s lease expired before its worker was killed")
        verdict.rescue_delays.append((rescued_at - killed_at[holder]).total_seconds())
