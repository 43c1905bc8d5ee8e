"""Read-only status of the machinery: the elected scheduler (workers join when the engine
lists them). Reading needs a viewer."""

from __future__ import annotations

from ..queue.client import Conveyor, SchedulerStatus
from .roles import Principal, Role, require


async def scheduler_status(client: Conveyor, principal: Principal) -> SchedulerStatus:
    """Who leads the scheduler role, its last tick, and whether schedules would fire."""
    require(principal, Role.VIEWER, "reading the scheduler's status")
    return await client.scheduler_status()
