"""Operations on queues, tasks and pauses, with the role each needs.

Contract: every function takes the client and who is asking, checks the role first
(:func:`~conveyor.ops.roles.require`, before any read), then delegates to the client. Reads
need a viewer; pausing and resuming (a queue, a task, everything) an operator; setting a
queue's limits an admin (limits are configuration, like retention). A queue named here must
exist: :class:`UnknownQueueError` otherwise (``set_queue_limits`` does not create queues, as
the client's method does, so a typo cannot make one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UnknownQueueError
from ..limits import LimitsInUse, QueueLimits
from ..queue.client import Conveyor, QueueStats
from ..queue.control import Pauses
from ..tasks import check_queue_name
from .roles import Principal, Role, require


@dataclass(frozen=True)
class QueueOverview:
    """A queue's counts by state, its pauses, and its limits with their use now (None: none)."""

    stats: QueueStats
    limits: LimitsInUse | None


async def list_queues(client: Conveyor, principal: Principal) -> list[QueueOverview]:
    require(principal, Role.VIEWER, "listing queues")
    limits = {use.queue: use for use in await client.queue_limits()}
    return [QueueOverview(stats, limits.get(stats.queue)) for stats in await client.queue_stats()]


async def get_queue(client: Conveyor, principal: Principal, name: str) -> QueueOverview:
    require(principal, Role.VIEWER, "reading a queue")
    check_queue_name(name)
    for stats in await client.queue_stats():
        if stats.queue == name:
            limits = await client.queue_limits(name)
            return QueueOverview(stats, limits[0] if limits else None)
    raise UnknownQueueError(f"no queue named {name!r}")


async def check_queue(client: Conveyor, name: str) -> str:
    """``name`` if a queue of that name exists; UnknownQueueError otherwise."""
    if not await client.queue_exists(name):
        raise UnknownQueueError(f"no queue named {name!r}")
    return name


async def pause_queue(client: Conveyor, principal: Principal, name: str) -> None:
    require(principal, Role.OPERATOR, "pausing a queue")
    await client.pause_queue(name)


async def resume_queue(client: Conveyor, principal: Principal, name: str) -> None:
    require(principal, Role.OPERATOR, "resuming a queue")
    await client.resume_queue(name)


async def queue_limits(client: Conveyor, principal: Principal, name: str) -> LimitsInUse | None:
    """The queue's limits and their use now; None when it has none."""
    require(principal, Role.VIEWER, "reading a queue's limits")
    await check_queue(client, check_queue_name(name))
    found = await client.queue_limits(name)
    return found[0] if found else None


async def set_queue_limits(
    client: Conveyor, principal: Principal, name: str, limits: QueueLimits
) -> LimitsInUse | None:
    """Set (every field None: clear) an existing queue's limits; returns them in use."""
    require(principal, Role.ADMIN, "setting a queue's limits")
    await check_queue(client, check_queue_name(name))
    await client.set_queue_limits(
        name,
        rate=limits.rate,
        concurrency=limits.concurrency,
        key_rate=limits.key_rate,
        key_concurrency=limits.key_concurrency,
    )
    found = await client.queue_limits(name)
    return found[0] if found else None


async def list_tasks(client: Conveyor, principal: Principal) -> list[dict[str, Any]]:
    """The tasks workers declared, and any paused task."""
    require(principal, Role.VIEWER, "listing tasks")
    return await client.tasks()


async def pause_task(client: Conveyor, principal: Principal, name: str) -> None:
    require(principal, Role.OPERATOR, "pausing a task")
    await client.pause_task(name)


async def resume_task(client: Conveyor, principal: Principal, name: str) -> None:
    require(principal, Role.OPERATOR, "resuming a task")
    await client.resume_task(name)


async def pauses(client: Conveyor, principal: Principal) -> Pauses:
    require(principal, Role.VIEWER, "reading pauses")
    return await client.pauses()


async def pause_all(client: Conveyor, principal: Principal) -> None:
    require(principal, Role.OPERATOR, "pausing everything")
    await client.pause_all()


async def resume_all(client: Conveyor, principal: Principal) -> None:
    require(principal, Role.OPERATOR, "resuming everything")
    await client.resume_all()
