"""The overview page's data: every queue, the workers, the scheduler and the warnings, read
through the service layer (``ops.queues.list_queues``, as GET /api/v1/queues, and
``ops.status.workers``) with the asker's role checked there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..ops import queues as queue_ops
from ..ops import status as status_ops
from ..ops.roles import Principal
from ..queue.client import Conveyor
from ..queue.overview import QueueOverview
from ..queue.roster import Workers


@dataclass(frozen=True)
class Overview:
    queues: list[QueueOverview]
    workers: Workers
    warnings: list[str]

    @property
    def alive_workers(self) -> int:
        return sum(1 for w in self.workers.workers if w.alive)


async def read_overview(client: Conveyor, principal: Principal) -> Overview:
    queues = await queue_ops.list_queues(client, principal)
    workers = await status_ops.workers(client, principal)
    return Overview(queues, workers, warnings(queues, workers))


def warnings(queues: list[QueueOverview], workers: Workers) -> list[str]:
    found = []
    scheduler = workers.scheduler.warning()
    if scheduler is not None:
        found.append(scheduler)
    if any(q.all_paused for q in queues):
        found.append("Everything is paused: no job of any queue starts until it is resumed.")
    served = {name for w in workers.workers if w.alive for name in w.queues}
    for q in queues:
        if q.waiting and q.queue not in served:
            found.append(f"Queue {q.queue!r} has {q.waiting} job(s) due and no live worker serving it.")
    for q in queues:
        if q.dead_last_hour:
            found.append(
                f"Dead letters growing: {q.dead_last_hour} job(s) of queue {q.queue!r} died in the last hour "
                f"({q.dead} dead in all)."
            )
    return found


def age(value: timedelta | None) -> str:
    """A duration for a table cell: 42 s, 3 min, 5 h, 2 d; an em dash for none."""
    if value is None:
        return "\u2014"
    seconds = max(value.total_seconds(), 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
