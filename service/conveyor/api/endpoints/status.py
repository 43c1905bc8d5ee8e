"""Status of the machinery: the workers, the jobs each runs, and the elected scheduler."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

from pydantic import Field

from ...ops import status as ops
from ...ops.roles import Role
from ...queue.roster import SchedulerStatus
from ..fields import Seconds, duration_schema, read_duration
from ..routing import Call, Group, Output, Params

LeaseIn = Annotated[timedelta, read_duration(0.001, 86400.0), duration_schema(0.001, 86400.0)]

group = Group("status", "The scheduler leader and the workers.")


class SchedulerOut(Output):
    """The elected scheduler, as its lease row says (times are the database's)."""

    running: bool = Field(description="A scheduler ticked within its lease.")
    holder: str | None
    hostname: str | None
    pid: int | None
    elected_at: datetime | None
    expires_at: datetime | None
    last_tick_at: datetime | None
    last_tick_age: Seconds | None
    active_schedules: int
    warning: str | None = Field(description="Why schedules will not fire now, if they will not.")

    @classmethod
    def of(cls, s: SchedulerStatus) -> SchedulerOut:
        return cls(
            running=s.running,
            holder=None if s.holder is None else str(s.holder),
            hostname=s.hostname,
            pid=s.pid,
            elected_at=s.elected_at,
            expires_at=s.expires_at,
            last_tick_at=s.renewed_at,
            last_tick_age=s.last_tick_age,
            active_schedules=s.active_schedules,
            warning=s.warning(),
        )


@group.route("GET", "/scheduler", role=Role.VIEWER, summary="Show the scheduler leader")
async def scheduler_status(call: Call) -> SchedulerOut:
    return SchedulerOut.of(await ops.scheduler_status(call.client, call.principal))


class HeldJobOut(Output):
    """A running job as its worker holds it."""

    id: int
    queue: str
    task: str
    attempt: int
    started_at: datetime | None
    lease_expires_at: datetime
    aborting: bool = Field(description="An abort was asked for.")
    lease_expired: bool = Field(description="Past its lease: the next rescue puts it back.")


class WorkerOut(Output):
    id: UUID
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: Seconds
    alive: bool = Field(description="Heartbeat within its lease, or a job it holds still leased.")
    jobs: list[HeldJobOut]


class WorkersOut(Output):
    """The workers (live, and those silent for less than an hour), oldest first, and the
    scheduler."""

    workers: list[WorkerOut]
    scheduler: SchedulerOut


class WorkersQuery(Params):
    lease: LeaseIn | None = Field(
        default=None, description="The workers' lease, which decides alive (default: the worker's, 30 s)."
    )


@group.route("GET", "/workers", role=Role.VIEWER, summary="List workers")
async def list_workers(call: Call, query: WorkersQuery) -> WorkersOut:
    """Each worker's host, pid, queues, concurrency, heartbeat and the jobs it runs now; and
    the scheduler leader with its last tick."""
    found = await ops.workers(call.client, call.principal, lease=query.lease)
    return WorkersOut(
        workers=[
            WorkerOut(
                id=w.id,
                hostname=w.hostname,
                pid=w.pid,
                queues=list(w.queues),
                concurrency=w.concurrency,
                started_at=w.started_at,
                heartbeat_at=w.heartbeat_at,
                heartbeat_age=w.heartbeat_age,
                alive=w.alive,
                jobs=[HeldJobOut.model_validate(job, from_attributes=True) for job in w.jobs],
            )
            for w in found.workers
        ],
        scheduler=SchedulerOut.of(found.scheduler),
    )
