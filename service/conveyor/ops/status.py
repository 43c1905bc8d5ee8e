"""Read-only status of the machinery: the workers and the elected scheduler. Reading needs
a viewer."""

from __future__ import annotations

from datetime import timedelta

from ..queue.client import Conveyor, SchedulerStatus
from ..queue.roster import Workers
from .roles import Principal, Role, require


async def scheduler_status(client: Conveyor, principal: Principal) -> SchedulerStatus:
    """Who leads the scheduler role, its last tick, and whether schedules would fire."""
    require(principal, Role.VIEWER, "reading the scheduler's status")
    return await client.scheduler_status()


async def workers(client: Conveyor, principal: Principal, *, lease: timedelta | None = None) -> Workers:
    """The workers (live and recently silent) with the jobs each holds, and the scheduler."""
    require(principal, Role.VIEWER, "listing workers")
    return await client.workers(lease=lease)
