"""Who is working: the workers (live, and recently silent), the jobs each holds, and the
elected scheduler.

A worker row is written when a worker starts, its ``heartbeat_at`` refreshed every third of
its lease, and deleted when it stops cleanly; a row silent for an hour is pruned by the
workers' upkeep. So the rows are the live workers and those that died (were killed, lost
the database) within the hour.

Alive, by the rule the engine rescues jobs by: a job is rescued once its lease has run out,
one lease after its worker last extended it; the same beat that extends leases refreshes
the worker's row. So a worker is alive while its last heartbeat is less than one lease old,
or while a job it holds has a lease that has not run out. Each held job also says whether
its own lease has run out (the next rescue takes it). The lease is each worker's own
setting, which its row does not record: the caller names it (``lease``, by default
WorkerConfig's 30 s); a worker running with a longer lease and holding no job may show as
not alive late in the gap between two heartbeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from ..db.database import Database
from .worker import WorkerConfig

DEFAULT_LEASE = timedelta(seconds=WorkerConfig.lease)


@dataclass(frozen=True)
class HeldJob:
    """A running job as its worker holds it."""

    id: int
    queue: str
    task: str
    attempt: int
    started_at: datetime | None
    lease_expires_at: datetime
    aborting: bool  # an abort was asked for
    lease_expired: bool  # past its lease: the next rescue puts it back (or buries it)


@dataclass(frozen=True)
class WorkerStatus:
    id: UUID
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: timedelta
    alive: bool
    jobs: tuple[HeldJob, ...]


@dataclass(frozen=True)
class SchedulerStatus:
    """The elected scheduler, as its lease row says. A leader renews its lease on every tick
    and records when (``renewed_at``), so the row tells both who leads and when it last
    ticked; all times are the database's."""

    holder: UUID | None
    hostname: str | None
    pid: int | None
    elected_at: datetime | None
    expires_at: datetime | None
    renewed_at: datetime | None  # the last tick; NULL from a scheduler older than schema 6
    active_schedules: int  # schedules not paused
    checked_at: datetime

    @property
    def running(self) -> bool:
        """A scheduler ticked within its lease: its last renewal is no older than the lease
        it took then. (A lease row written by an older scheduler has no renewal time; its
        expiry is all there is to go by.)"""
        if self.expires_at is None:
            return False
        if self.renewed_at is None:
            return self.expires_at > self.checked_at
        return self.checked_at - self.renewed_at < self.expires_at - self.renewed_at

    @property
    def last_tick_age(self) -> timedelta | None:
        """How long ago the scheduler last ticked, if it recorded a tick."""
        return None if self.renewed_at is None else self.checked_at - self.renewed_at

    def warning(self) -> str | None:
        """Why schedules will not fire now, if they will not."""
        if self.running or not self.active_schedules:
            return None
        if self.renewed_at is not None:
            since = f"the last tick was {seconds_ago(self.last_tick_age)} ago"
        elif self.expires_at is not None:
            since = f"the last lease ended at {self.expires_at:%Y-%m-%d %H:%M:%S%z}"
        else:
            since = "none has run on this schema"
        return (
            f"{self.active_schedules} schedule(s) will not fire: no scheduler has ticked within its lease "
            f"({since}); start `conveyor scheduler` (or `conveyor dev`)"
        )


def seconds_ago(age: timedelta | None) -> str:
    """An age as whole seconds, for a status line."""
    return "?" if age is None else f"{max(age.total_seconds(), 0.0):.0f} s"


async def read_scheduler_status(db: Database, *, now: datetime | None) -> SchedulerStatus:
    """One read of the scheduler's lease row and the schedules (see SchedulerStatus)."""
    rows = await db.fetch_dicts("scheduler_status", {"now": now})
    return SchedulerStatus(**rows[0])


@dataclass(frozen=True)
class Workers:
    """The workers, oldest first, and the scheduler."""

    workers: tuple[WorkerStatus, ...]
    scheduler: SchedulerStatus


async def read_workers(db: Database, *, now: datetime | None, lease: timedelta = DEFAULT_LEASE) -> Workers:
    rows = await db.fetch_dicts("list_workers", {"now": now})
    scheduler = await read_scheduler_status(db, now=now)
    found: dict[UUID, tuple[dict[str, Any], list[HeldJob]]] = {}
    for row in rows:
        _, jobs = found.setdefault(row["id"], (row, []))
        if row["job_id"] is not None:
            jobs.append(
                HeldJob(
                    id=row["job_id"],
                    queue=row["job_queue"],
                    task=row["job_task"],
                    attempt=row["job_attempt"],
                    started_at=row["job_started_at"],
                    lease_expires_at=row["job_lease_expires_at"],
                    aborting=row["job_aborting"],
                    lease_expired=row["job_lease_expires_at"] < row["checked_at"],
                )
            )
    workers = []
    for row, jobs in found.values():
        age = row["checked_at"] - row["heartbeat_at"]
        workers.append(
            WorkerStatus(
                id=row["id"],
                hostname=row["hostname"],
                pid=row["pid"],
                queues=tuple(row["queues"]),
                concurrency=row["concurrency"],
                started_at=row["started_at"],
                heartbeat_at=row["heartbeat_at"],
                heartbeat_age=age,
                alive=age < lease or any(not job.lease_expired for job in jobs),
                jobs=tuple(jobs),
            )
        )
    return Workers(tuple(workers), scheduler)
