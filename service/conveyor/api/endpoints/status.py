"""Status of the machinery: the elected scheduler (and workers, once the engine lists them)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ...ops import status as ops
from ...ops.roles import Role
from ..fields import Seconds
from ..routing import Call, Group, Output

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


@group.route("GET", "/scheduler", role=Role.VIEWER, summary="Show the scheduler leader")
async def scheduler_status(call: Call) -> SchedulerOut:
    s = await ops.scheduler_status(call.client, call.principal)
    return SchedulerOut(
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
