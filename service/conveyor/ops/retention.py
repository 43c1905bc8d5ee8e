"""Operations on retention (how long finished work is kept), with the role each needs.

Contract: reading needs a viewer; changing retention and applying it now need an admin.
Setting retention for a queue needs the queue to exist (``*`` names the defaults). An
application of retention through this layer runs within a time budget (at most
MAX_APPLY_BUDGET seconds) and resumes where it stopped on the next run, so a call never
holds its caller long; the elected scheduler applies retention every 10 minutes anyway.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..errors import InvalidOptionError, UnknownQueueError
from ..queue.client import Conveyor
from .queues import check_queue
from .roles import Principal, Role, require

DEFAULTS = "*"  # the retention row every queue without its own follows
MAX_APPLY_BUDGET = 30.0  # seconds


async def show(client: Conveyor, principal: Principal) -> list[dict[str, Any]]:
    """The defaults (queue ``*``) first, then each queue that has its own."""
    require(principal, Role.VIEWER, "reading retention")
    return await client.retention()


async def set_retention(
    client: Conveyor,
    principal: Principal,
    queue: str,
    *,
    completed_keep: timedelta | None = None,
    completed_max: int | None = None,
    dead_keep: timedelta | None = None,
    runs_keep: timedelta | None = None,
) -> dict[str, Any]:
    """Change the defaults (``*``) or one queue's retention; fields left None keep their
    value. Returns the row as it is now."""
    require(principal, Role.ADMIN, "setting retention")
    if queue != DEFAULTS:
        await check_queue(client, queue)
    for name, span in (
        ("completed_keep", completed_keep),
        ("dead_keep", dead_keep),
        ("runs_keep", runs_keep),
    ):
        if span is not None and span < timedelta(0):
            raise InvalidOptionError(f"{name} must not be negative")
    if completed_max is not None and completed_max < 0:
        raise InvalidOptionError("completed_max must not be negative")
    await client.set_retention(
        queue,
        completed_keep=completed_keep,
        completed_max=completed_max,
        dead_keep=dead_keep,
        runs_keep=runs_keep,
    )
    for row in await client.retention():
        if row["queue"] == queue:
            return row
    raise UnknownQueueError(f"no queue named {queue!r}")  # removed meanwhile


async def apply(client: Conveyor, principal: Principal, *, budget: float = 10.0) -> dict[str, int]:
    """Apply retention now within ``budget`` seconds; what each step removed."""
    require(principal, Role.ADMIN, "applying retention")
    if not 0 < budget <= MAX_APPLY_BUDGET:
        raise InvalidOptionError(f"budget must be more than 0 and at most {MAX_APPLY_BUDGET:g} seconds")
    return await client.apply_retention(budget=budget)
