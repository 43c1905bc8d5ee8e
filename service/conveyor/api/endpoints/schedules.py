"""Cron schedules: list (next fire in the schedule's zone and in UTC), create, change, pause,
resume, trigger now, delete, recent fires."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from ...ops import schedules as ops
from ...ops.roles import Role
from ...ops.schedules import ScheduleView
from ..fields import MaxAttempts, Priority, QueueName, ScheduleName, TaskName
from ..routing import Call, Group, Input, Output, Params

group = Group("schedules", "Cron schedules in IANA time zones, stored in the database.")

Timezone = str  # checked by Conveyor (an IANA name): a 422 names what is wrong


class ScheduleOut(Output):
    """A schedule; ``next_fire_at`` in UTC and ``next_fire_local`` in its own time zone."""

    name: str
    cron: str
    timezone: str
    task: str
    args: dict[str, Any]
    queue: str | None
    priority: int | None
    max_attempts: int | None
    catch_up: str
    paused: bool
    declared_in_code: bool
    next_fire_at: datetime | None
    next_fire_local: datetime | None
    next_fire_estimated: bool = Field(
        description="The next fire was computed from the cron here; the scheduler has not yet."
    )
    last_fire_at: datetime | None
    error: str | None = Field(description="Why the schedule cannot fire, if it cannot.")

    @classmethod
    def of(cls, view: ScheduleView) -> ScheduleOut:
        return cls.model_validate(
            {
                **view.row,
                "next_fire_at": view.next_fire_at,
                "next_fire_local": view.next_fire_local,
                "next_fire_estimated": view.next_fire_estimated,
            }
        )


class ScheduleList(Output):
    schedules: list[ScheduleOut]


@group.route("GET", "/schedules", role=Role.VIEWER, summary="List schedules")
async def list_schedules(call: Call) -> ScheduleList:
    views = await ops.list_schedules(call.client, call.principal)
    return ScheduleList(schedules=[ScheduleOut.of(v) for v in views])


class SchedulePath(Params):
    name: ScheduleName


@group.route("GET", "/schedules/{name}", role=Role.VIEWER, summary="Show a schedule")
async def get_schedule(call: Call, path: SchedulePath) -> ScheduleOut:
    return ScheduleOut.of(await ops.get_schedule(call.client, call.principal, path.name))


class ScheduleIn(Input):
    """A schedule: enqueue ``task`` with ``args`` at every fire of ``cron`` in ``timezone``."""

    name: ScheduleName
    cron: str = Field(
        min_length=1, max_length=200, description="5 fields, 6 with seconds first, or @hourly ..."
    )
    task: TaskName
    args: dict[str, Any] = Field(default_factory=dict)
    timezone: Timezone = Field(default="UTC", min_length=1, max_length=100, description="An IANA time zone.")
    queue: QueueName | None = None
    priority: Priority | None = None
    max_attempts: MaxAttempts | None = None
    catch_up: Literal["once", "skip"] = Field(
        default="once", description="Fires missed while no scheduler ran."
    )


@group.route("POST", "/schedules", role=Role.ADMIN, summary="Create a schedule", status=201, problems=(409,))
async def create_schedule(call: Call, body: ScheduleIn) -> ScheduleOut:
    """A name that is taken is a 409."""
    definition = body.model_dump(exclude={"name"})
    return ScheduleOut.of(await ops.create_schedule(call.client, call.principal, body.name, definition))


class ScheduleChange(Input):
    """The fields to change; those left out keep their value."""

    cron: str | None = Field(default=None, min_length=1, max_length=200)
    task: TaskName | None = None
    args: dict[str, Any] | None = None
    timezone: Timezone | None = Field(default=None, min_length=1, max_length=100)
    queue: QueueName | None = None
    priority: Priority | None = None
    max_attempts: MaxAttempts | None = None
    catch_up: Literal["once", "skip"] | None = None


@group.route("PATCH", "/schedules/{name}", role=Role.ADMIN, summary="Change a schedule")
async def update_schedule(call: Call, path: SchedulePath, body: ScheduleChange) -> ScheduleOut:
    """The cadence goes on unless the cron or the time zone changed; then fires are owed from
    now. A schedule declared in code is written again when a scheduler starts: change it in
    code."""
    changes = body.model_dump(exclude_unset=True)
    view = await ops.update_schedule(call.client, call.principal, path.name, changes)
    return ScheduleOut.of(view)


@group.route("POST", "/schedules/{name}/pause", role=Role.OPERATOR, summary="Pause a schedule")
async def pause_schedule(call: Call, path: SchedulePath) -> ScheduleOut:
    await ops.pause_schedule(call.client, call.principal, path.name)
    return ScheduleOut.of(await ops.get_schedule(call.client, call.principal, path.name))


@group.route("POST", "/schedules/{name}/resume", role=Role.OPERATOR, summary="Resume a schedule")
async def resume_schedule(call: Call, path: SchedulePath) -> ScheduleOut:
    """Fires missed while it was paused go to its catch-up policy."""
    await ops.resume_schedule(call.client, call.principal, path.name)
    return ScheduleOut.of(await ops.get_schedule(call.client, call.principal, path.name))


class Triggered(Output):
    """The job the trigger enqueued."""

    status_code: ClassVar[int | None] = 201
    job_id: int


@group.route(
    "POST", "/schedules/{name}/trigger", role=Role.OPERATOR, summary="Trigger a schedule now", status=201
)
async def trigger_schedule(call: Call, path: SchedulePath) -> Triggered:
    """Enqueues the schedule's job now; its cadence is left alone."""
    return Triggered(job_id=await ops.trigger_schedule(call.client, call.principal, path.name))


@group.route("DELETE", "/schedules/{name}", role=Role.ADMIN, summary="Delete a schedule")
async def delete_schedule(call: Call, path: SchedulePath) -> None:
    await ops.remove_schedule(call.client, call.principal, path.name)


class FireOut(Output):
    fire_time: datetime
    kind: str = Field(description="on_time, late, catch_up, skipped or manual.")
    window_end: datetime | None
    job_id: int | None
    fired_at: datetime


class FireList(Output):
    """The schedule's latest fires, newest first."""

    fires: list[FireOut]


class FireQuery(Params):
    limit: int = Field(default=20, ge=1, le=1000)


@group.route("GET", "/schedules/{name}/fires", role=Role.VIEWER, summary="A schedule's recent fires")
async def schedule_fires(call: Call, path: SchedulePath, query: FireQuery) -> FireList:
    rows = await ops.schedule_fires(call.client, call.principal, path.name, limit=query.limit)
    return FireList(fires=[FireOut.model_validate(row) for row in rows])
