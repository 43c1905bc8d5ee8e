"""The overview's warnings (pure): no scheduler for active schedules, everything paused, jobs
due in a queue no live worker serves, dead letters growing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from conveyor.dashboard.overview import warnings
from conveyor.queue.overview import QueueOverview
from conveyor.queue.roster import SchedulerStatus, Workers, WorkerStatus

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def queue(
    name: str, *, waiting: int = 0, dead: int = 0, dead_last_hour: int = 0, all_paused: bool = False
) -> QueueOverview:
    return QueueOverview(
        queue=name, paused=False, all_paused=all_paused, paused_tasks=(), waiting=waiting, scheduled=0, running=0,
        blocked=0, completed_24h=0, dead=dead, oldest_waiting_age=None, completed_last_minute=0,
        completed_last_hour=0, dead_last_hour=dead_last_hour, limits=None,
    )  # fmt: skip


def roster(*served: str, schedules: int = 0, scheduler: bool = True) -> Workers:
    worker = WorkerStatus(
        id=uuid.uuid4(), hostname="h", pid=1, queues=served, concurrency=1, started_at=NOW,
        heartbeat_at=NOW, heartbeat_age=timedelta(0), alive=True, jobs=(),
    )  # fmt: skip
    status = SchedulerStatus(
        holder=uuid.uuid4() if scheduler else None, hostname="h" if scheduler else None, pid=2 if scheduler else None,
        elected_at=NOW if scheduler else None, expires_at=NOW + timedelta(seconds=15) if scheduler else None,
        renewed_at=NOW if scheduler else None, active_schedules=schedules, checked_at=NOW,
    )  # fmt: skip
    return Workers(workers=(worker,) if served else (), scheduler=status)


def test_nothing_to_say_about_a_healthy_installation() -> None:
    assert warnings([queue("emails", waiting=3, dead=5)], roster("emails", schedules=2)) == []


def test_dead_letters_growing_names_the_queue_and_counts() -> None:
    found = warnings(
        [queue("webhooks", dead=9, dead_last_hour=4), queue("emails", dead=2)], roster("webhooks", "emails")
    )
    assert found == [
        "Dead letters growing: 4 job(s) of queue 'webhooks' died in the last hour (9 dead in all)."
    ]


def test_jobs_due_with_no_worker_and_no_scheduler_and_everything_paused() -> None:
    found = warnings([queue("exports", waiting=2, all_paused=True)], roster(schedules=1, scheduler=False))
    assert any("will not fire" in w for w in found)
    assert "Everything is paused: no job of any queue starts until it is resumed." in found
    assert "Queue 'exports' has 2 job(s) due and no live worker serving it." in found
