"""Three `conveyor scheduler` processes fire a per-second schedule while the leader is killed
(SIGKILL) and the next leader is paused (SIGSTOP) for longer than its lease and resumed
(SIGCONT), round after round, replacements started as they go. The database must then hold
exactly one schedule_fires row and one job per second of the run, none missing.

The catch-up policy allows no missing second here: a fire time at most the on-time window
(5 minutes) late fires on its own, late; only older ones are folded into one catch-up job
(or skipped). Every hand-over here is far shorter than that, so every second fires.

Long run (a server of its own unless --database-url is given)::

    python -m tests.chaos.scheduler_handover --fires 300

prints a summary and appends a JSON line to tests/chaos/results/scheduler_handover.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from conveyor import Conveyor

from ..e2e import scripted_tasks  # noqa: F401 - registers the task the schedule enqueues
from ..helpers import DB, subprocess_env, wait_until_sync
from .processes import Process

LEASE, TICK = 3.0, 0.5  # the shortest lease `conveyor scheduler --lease` takes
# What a scheduler logs once it runs (its signal handlers are set by then).
STARTED = "schedules declared in code"
SCHEDULE = "every-second"


@dataclass
class Handover:
    how: str  # "kill" or "pause"
    pid: int
    takeover: float  # seconds from the signal until another process held the lease


@dataclass
class HandoverResult:
    fires: int = 0
    late: int = 0
    max_lateness: float = 0.0  # the latest fire's delay after its fire time, seconds
    longest_silence: float = 0.0  # the longest time without a fire, seconds
    paused_for: list[float] = field(default_factory=list)
    handovers: list[Handover] = field(default_factory=list)
    exit_codes: list[int | None] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        kills = [h.takeover for h in self.handovers if h.how == "kill"]
        pauses = [h.takeover for h in self.handovers if h.how == "pause"]
        return (
            f"{self.fires} fire times checked, each fired once with one job, none missing; "
            f"{self.late} late; latest {self.max_lateness:.2f} s after its time; longest silence "
            f"{self.longest_silence:.2f} s\n"
            f"leader killed {len(kills)} times, taken over after {_spread(kills)} s; "
            f"leader paused {len(pauses)} times (for {_spread(self.paused_for)} s), taken over after "
            f"{_spread(pauses)} s (lease {LEASE} s, tick {TICK} s); exit codes {self.exit_codes}; "
            f"{self.seconds:.0f} s in all"
        )


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


class Schedulers:
    """The scheduler processes of a run; the leader is read from the lease row."""

    def __init__(self, db: DB, env: dict[str, str], folder: Path) -> None:
        """``env``: the processes' environment (tests.helpers.subprocess_env)."""
        self.db = db
        self.env = env
        self.folder = folder
        self.processes: list[Process] = []

    def start(self) -> Process:
        args = [
            "scheduler",
            "--tasks",
            "tests.e2e.scripted_tasks",
            "--lease",
            str(LEASE),
            "--tick",
            str(TICK),
        ]
        process = Process(args, env=self.env, folder=self.folder)
        self.processes.append(process)
        return process

    def leader(self, *, other_than: int | None = None) -> Process | None:
        """The live process holding an unexpired lease (not ``other_than``), if one does."""
        rows = self.db.all("SELECT pid FROM {schema}.leaders WHERE role = 'scheduler' AND expires_at > now()")
        pid = rows[0][0] if rows else None
        return next((p for p in self.processes if p.pid == pid and p.pid != other_than and p.alive()), None)

    def wait_leader(
        self, *, other_than: int | None = None, within: float = LEASE * 5
    ) -> tuple[Process, float]:
        """The next leader, and the seconds it took to be one."""
        started = time.monotonic()
        wait_until_sync(lambda: self.leader(other_than=other_than) is not None, within=within)
        found = self.leader(other_than=other_than)
        assert found is not None
        return found, time.monotonic() - started

    def wait_started(self) -> None:
        """Until one of them leads (a process takes seconds to start on a busy machine)."""
        self.wait_leader(within=90)

    def outputs(self) -> str:
        return "\n".join(str(p) for p in self.processes)

    def stop_all(self) -> list[int | None]:
        """SIGTERM to each live one, once each has started: one still importing has no handler
        for the signal yet and would die of it (the last replacement may be that young)."""
        live = [p for p in self.processes if p.popen.returncode is None]
        wait_until_sync(lambda: all(STARTED in p.output() or not p.alive() for p in live), within=60)
        return [p.stop() for p in live]

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()


def fire_count(db: DB) -> int:
    return int(db.one("SELECT count(*) FROM {schema}.schedule_fires"))


def wait_fires(db: DB, at_least: int) -> None:
    wait_until_sync(lambda: fire_count(db) >= at_least, within=LEASE * 5 + at_least - fire_count(db))


def wait_on_time_fires(db: DB, count: int) -> None:
    """Until ``count`` fire times after this moment have fired."""
    moment = db.one("SELECT now()")
    wait_until_sync(
        lambda: (
            db.one("SELECT count(*) FROM {schema}.schedule_fires WHERE fire_time > %s", [moment]) >= count
        ),
        within=LEASE * 5 + count,
    )


async def create_schedule(url: str, schema: str) -> None:
    async with Conveyor(url, schema=schema) as client:
        await client.create_schedule(SCHEDULE, "* * * * * *", "record", {"n": 0})


def run_handover(url: str, schema: str, *, fires: int, folder: Path) -> HandoverResult:
    """Run the scenario until ``fires`` fire times have fired, then check them all."""
    db = DB(url, schema)
    result = HandoverResult()
    began = time.monotonic()
    group = Schedulers(db, subprocess_env(url, schema, PYTHONUNBUFFERED="1"), folder)
    try:
        for _ in range(3):
            group.start()
        asyncio.run(create_schedule(url, schema))
        group.wait_started()
        wait_fires(db, 2)
        while fire_count(db) < fires:
            leader, _ = group.wait_leader()
            leader.signal(signal.SIGKILL)  # no resignation: its lease has to run out
            leader.popen.wait(10)
            group.start()
            successor, took = group.wait_leader(other_than=leader.pid)
            result.handovers.append(Handover("kill", leader.pid, took))
            wait_fires(db, fire_count(db) + 2)

            # The new leader freezes (mid-tick, perhaps mid-fire) for longer than its lease, and
            # wakes up after a third process has taken over: it must not fire again what that
            # one fired.
            successor.signal(signal.SIGSTOP)
            paused = time.monotonic()
            _, took = group.wait_leader(other_than=successor.pid)
            result.handovers.append(Handover("pause", successor.pid, took))
            wait_on_time_fires(db, 2)  # the paused process stays paused a while longer
            successor.signal(signal.SIGCONT)
            result.paused_for.append(time.monotonic() - paused)
            wait_fires(db, fire_count(db) + 2)
        result.exit_codes = group.stop_all()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{group.outputs()}") from exc
    finally:
        group.kill_all()
    check_fires(db, result)
    result.seconds = time.monotonic() - began
    return result


def check_fires(db: DB, result: HandoverResult) -> None:
    """One fire and one job per second from the first fire to the last: fails on a double fire,
    a missing second, or a fire without its job."""
    rows = db.all(
        "SELECT fire_time, kind, job_id, fired_at FROM {schema}.schedule_fires"
        " WHERE schedule = %s ORDER BY fire_time, id",
        [SCHEDULE],
    )
    times = [fire_time for fire_time, _, _, _ in rows]
    doubles = sorted({t for t in times if times.count(t) > 1})
    assert doubles == [], f"fired twice: {doubles[:5]}"
    missing = [(a, b) for a, b in pairwise(times) if b - a != timedelta(seconds=1)]
    assert missing == [], f"fire times missing between: {missing[:5]}"
    kinds = {kind for _, kind, _, _ in rows}
    assert kinds <= {"on_time", "late"}, kinds
    job_ids = [job_id for _, _, job_id, _ in rows]
    jobs = db.all("SELECT id, args FROM {schema}.jobs WHERE task = 'record' ORDER BY id")
    assert sorted(job_ids) == [job_id for job_id, _ in jobs], (
        "a fire without its one job, or a job without its fire"
    )
    assert all(args == {"n": 0} for _, args in jobs)
    fired_at = sorted(at for _, _, _, at in rows)
    result.fires = len(rows)
    result.late = sum(kind == "late" for _, kind, _, _ in rows)
    result.max_lateness = max((at - t).total_seconds() for t, _, _, at in rows)
    result.longest_silence = max((b - a).total_seconds() for a, b in pairwise(fired_at))


def main() -> None:
    from .cluster import fresh_schema, own_cluster
    from .run_record import append_result

    parser = argparse.ArgumentParser(prog="python -m tests.chaos.scheduler_handover", description=__doc__)
    parser.add_argument("--fires", type=int, default=300, help="fire times to run for (one a second)")
    parser.add_argument("--database-url", help="a server to use (default: an embedded one of its own)")
    options = parser.parse_args()
    schema = f"chaos_handover_{uuid.uuid4().hex[:8]}"

    def run(url: str, server: str) -> None:
        fresh_schema(url, schema)
        with tempfile.TemporaryDirectory(prefix="conveyor-handover-") as folder:
            result = run_handover(url, schema, fires=options.fires, folder=Path(folder))
        print(result.summary())
        numbers: dict[str, Any] = asdict(result)
        path = append_result("scheduler_handover", numbers, server=server)
        print(f"appended to {path}: {json.dumps(numbers, default=str)[:200]}...")

    if options.database_url:
        run(options.database_url, "given")
    else:
        with own_cluster() as cluster:
            run(cluster.url, "embedded")


if __name__ == "__main__":
    main()
