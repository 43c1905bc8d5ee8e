"""Operations on queues, tasks and pauses, with the role each needs.

Contract: every function takes the client and who is asking, checks the role first
(:func:`~conveyor.ops.roles.require`, before any read), then delegates to the client. Reads
need a viewer; creating a queue (as enqueueing into it does), pausing and resuming (a queue,
a task, everything) an operator; setting a queue's limits an admin (limits are
configuration, like retention). A queue named here must
exist: :class:`UnknownQueueError` otherwise (``set_queue_limits`` does not create queues, as
the client's method does, so a typo cannot make one). ``throughput`` (a viewer's read) counts
through ``queue.throughput``, which caches settled minutes in the process.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnknownQueueError
from ..limits import LimitsInUse, QueueLimits
from ..queue.client import Conveyor
from ..queue.control import Pauses
from ..queue.overview import QueueOverview
from ..queue.throughput import Throughput, read_throughput
from ..tasks import check_queue_name
from .roles import Principal, Role, require


async def list_queues(client: Conveyor, principal: Principal) -> list[QueueOverview]:
    """Every queue at a glance: jobs by state, oldest waiting age, throughput, pauses, limits."""
    require(principal, Role.VIEWER, "listing queues")
    return await client.queue_overview()


async def queue_names(client: Conveyor, principal: Principal) -> list[str]:
    """Every queue's name, in order, without their figures (cheap: a filter's choices)."""
    require(principal, Role.VIEWER, "listing queues")
    return await client.queue_names()


async def get_queue(client: Conveyor, principal: Principal, name: str) -> QueueOverview:
    """One queue at a glance; UnknownQueueError if there is none of that name."""
    require(principal, Role.VIEWER, "reading a queue")
    return (await client.queue_overview(name))[0]


async def check_queue(client: Conveyor, name: str) -> str:
    """``name`` if a queue of that name exists; UnknownQueueError otherwise."""
    if not await client.queue_exists(name):
        raise UnknownQueueError(f"no queue named {name!r}")
    return name


async def create_queue(client: Conveyor, principal: Principal, name: str) -> None:
    """Make an empty queue of that name (nothing happens if it exists)."""
    require(principal, Role.OPERATOR, "creating a queue")
    await client.create_queue(check_queue_name(name))


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


async def throughput(client: Conveyor, principal: Principal, queue: str | None = None) -> Throughput:
    """Jobs completed and jobs that died per minute over the last hour, in one queue (which
    must exist) or all (None); finished minutes are cached in the process (queue.throughput)."""
    require(principal, Role.VIEWER, "reading throughput")
    if queue is not None:
        await check_queue(client, check_queue_name(queue))
    return await read_throughput(client.db, queue=queue, now=client.clock.now())


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
