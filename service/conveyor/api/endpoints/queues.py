"""Queues, tasks and pauses: list with counts and limits, pause and resume, set limits."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from pydantic import Field

from ...errors import UnknownQueueError
from ...limits import MAX_CONCURRENCY, MAX_PERIOD, MAX_RATE, MIN_PERIOD, LimitsInUse, QueueLimits, Rate
from ...ops import queues as ops
from ...ops.roles import Role
from ...queue.overview import QueueOverview
from ..fields import Int, QueueName, Seconds, TaskName, duration_schema, read_duration
from ..routing import Call, Group, Input, Output, Params

group = Group("queues", "Queues with their counts, pauses and limits; pausing tasks and everything.")


class RateOut(Output):
    limit: int = Field(description="Starts allowed within each period.")
    period: Seconds


class LimitsOut(Output):
    """A queue's limits and their use now."""

    rate: RateOut | None
    concurrency: int | None
    key_rate: RateOut | None
    key_concurrency: int | None
    running: int = Field(description="The queue's jobs running now.")
    window_starts: int = Field(description="Starts within the rate period now.")
    keys_in_window: int = Field(description="Keys with a start within their rate period.")

    @classmethod
    def of(cls, use: LimitsInUse | None) -> LimitsOut | None:
        if use is None:
            return None
        limits = use.limits
        return cls(
            rate=_rate(limits.rate),
            concurrency=limits.concurrency,
            key_rate=_rate(limits.key_rate),
            key_concurrency=limits.key_concurrency,
            running=use.running,
            window_starts=use.window_starts,
            keys_in_window=use.keys_in_window,
        )


def _rate(rate: Rate | None) -> RateOut | None:
    return None if rate is None else RateOut(limit=rate.count, period=rate.period)


class QueueOut(Output):
    """A queue at a glance: jobs by state, throughput, pauses, limits."""

    queue: str
    paused: bool
    all_paused: bool = Field(description="Everything is paused (no job of any queue starts).")
    paused_tasks: list[str] = Field(description="Paused tasks with jobs waiting in this queue.")
    waiting: int = Field(description="Due now, not yet started.")
    scheduled: int = Field(description="Due later (delayed, or a retry waiting out its backoff).")
    running: int
    blocked: int = Field(description="Waiting for the job they were chained after.")
    completed_24h: int = Field(description="Jobs completed within the last 24 hours (to 5 minutes).")
    completed_last_minute: int
    completed_last_hour: int
    dead: int = Field(description="In the dead-letter table now.")
    dead_last_hour: int = Field(description="Jobs that died within the last hour (and are still dead).")
    oldest_waiting_age: Seconds | None
    limits: LimitsOut | None

    @classmethod
    def of(cls, q: QueueOverview) -> QueueOut:
        return cls(
            queue=q.queue,
            paused=q.paused,
            all_paused=q.all_paused,
            paused_tasks=list(q.paused_tasks),
            waiting=q.waiting,
            scheduled=q.scheduled,
            running=q.running,
            blocked=q.blocked,
            completed_24h=q.completed_24h,
            completed_last_minute=q.completed_last_minute,
            completed_last_hour=q.completed_last_hour,
            dead=q.dead,
            dead_last_hour=q.dead_last_hour,
            oldest_waiting_age=q.oldest_waiting_age,
            limits=LimitsOut.of(q.limits),
        )


class QueueList(Output):
    """Every queue."""

    queues: list[QueueOut]


class QueuePath(Params):
    queue: QueueName


@group.route("GET", "/queues", role=Role.VIEWER, summary="List queues")
async def list_queues(call: Call) -> QueueList:
    """Every queue with its jobs by state, oldest waiting age, throughput (completed in the
    last minute, hour and 24 hours; died in the last hour), pauses, and its limits with their
    use now."""
    return QueueList(queues=[QueueOut.of(q) for q in await ops.list_queues(call.client, call.principal)])


@group.route("GET", "/queues/{queue}", role=Role.VIEWER, summary="Show a queue", missing=(UnknownQueueError,))
async def get_queue(call: Call, path: QueuePath) -> QueueOut:
    return QueueOut.of(await ops.get_queue(call.client, call.principal, path.queue))


@group.route(
    "POST", "/queues/{queue}/pause", role=Role.OPERATOR, summary="Pause a queue", missing=(UnknownQueueError,)
)
async def pause_queue(call: Call, path: QueuePath) -> QueueOut:
    """Workers stop claiming from the queue; running jobs finish, waiting ones wait."""
    await ops.pause_queue(call.client, call.principal, path.queue)
    return QueueOut.of(await ops.get_queue(call.client, call.principal, path.queue))


@group.route(
    "POST",
    "/queues/{queue}/resume",
    role=Role.OPERATOR,
    summary="Resume a queue",
    missing=(UnknownQueueError,),
)
async def resume_queue(call: Call, path: QueuePath) -> QueueOut:
    await ops.resume_queue(call.client, call.principal, path.queue)
    return QueueOut.of(await ops.get_queue(call.client, call.principal, path.queue))


class LimitsView(Output):
    """A queue's limits (null when it has none)."""

    queue: str
    limits: LimitsOut | None


@group.route(
    "GET",
    "/queues/{queue}/limits",
    role=Role.VIEWER,
    summary="Show a queue's limits",
    missing=(UnknownQueueError,),
)
async def get_limits(call: Call, path: QueuePath) -> LimitsView:
    use = await ops.queue_limits(call.client, call.principal, path.queue)
    return LimitsView(queue=path.queue, limits=LimitsOut.of(use))


RatePeriod = Annotated[
    timedelta,
    read_duration(MIN_PERIOD.total_seconds(), MAX_PERIOD.total_seconds()),
    duration_schema(MIN_PERIOD.total_seconds(), MAX_PERIOD.total_seconds()),
]


class RateIn(Input):
    limit: Int = Field(ge=1, le=MAX_RATE, description="Starts allowed within each period.")
    period: RatePeriod

    def rate(self) -> Rate:
        return Rate(self.limit, self.period)


class LimitsIn(Input):
    """A queue's limits: each one left out (or null) is cleared; all left out clears them all."""

    rate: RateIn | None = None
    concurrency: Int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    key_rate: RateIn | None = None
    key_concurrency: Int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)


@group.route(
    "PUT",
    "/queues/{queue}/limits",
    role=Role.ADMIN,
    summary="Set a queue's limits",
    missing=(UnknownQueueError,),
)
async def set_limits(call: Call, path: QueuePath, body: LimitsIn) -> LimitsView:
    """Limits hold for every worker at once (docs/limits.md); workers pick a change up at once.
    A worker whose code declares limits for the queue sets them again when it starts."""
    limits = QueueLimits(
        rate=body.rate.rate() if body.rate else None,
        concurrency=body.concurrency,
        key_rate=body.key_rate.rate() if body.key_rate else None,
        key_concurrency=body.key_concurrency,
    )
    use = await ops.set_queue_limits(call.client, call.principal, path.queue, limits)
    return LimitsView(queue=path.queue, limits=LimitsOut.of(use))


# -- tasks and everything --------------------------------------------------------------------


class TaskOut(Output):
    name: str
    queue: str | None
    paused: bool
    paused_at: datetime | None


class TaskList(Output):
    """The tasks workers declared, and any paused task."""

    tasks: list[TaskOut]


@group.route("GET", "/tasks", role=Role.VIEWER, summary="List tasks")
async def list_tasks(call: Call) -> TaskList:
    rows = await ops.list_tasks(call.client, call.principal)
    return TaskList(
        tasks=[
            TaskOut(name=r["name"], queue=r["queue"], paused=bool(r["paused"]), paused_at=r["paused_at"])
            for r in rows
        ]
    )


class TaskPath(Params):
    task: TaskName


class TaskPause(Output):
    task: str
    paused: bool


@group.route("POST", "/tasks/{task}/pause", role=Role.OPERATOR, summary="Pause a task")
async def pause_task(call: Call, path: TaskPath) -> TaskPause:
    """Workers stop starting jobs of this task in every queue; running ones finish; other
    tasks' jobs keep flowing. The task need not be registered anywhere yet."""
    await ops.pause_task(call.client, call.principal, path.task)
    return TaskPause(task=path.task, paused=True)


@group.route("POST", "/tasks/{task}/resume", role=Role.OPERATOR, summary="Resume a task")
async def resume_task(call: Call, path: TaskPath) -> TaskPause:
    await ops.resume_task(call.client, call.principal, path.task)
    return TaskPause(task=path.task, paused=False)


class PausesOut(Output):
    """What is paused besides queues."""

    all_paused: bool
    all_paused_at: datetime | None
    tasks: dict[str, datetime] = Field(description="Paused task: since when.")


async def _pauses(call: Call) -> PausesOut:
    found = await ops.pauses(call.client, call.principal)
    return PausesOut(all_paused=found.all_paused, all_paused_at=found.all_paused_at, tasks=dict(found.tasks))


@group.route("GET", "/pauses", role=Role.VIEWER, summary="Show pauses of tasks and of everything")
async def get_pauses(call: Call) -> PausesOut:
    return await _pauses(call)


@group.route("POST", "/pause", role=Role.OPERATOR, summary="Pause everything")
async def pause_all(call: Call) -> PausesOut:
    """No job of any queue starts until resumed; running ones finish."""
    await ops.pause_all(call.client, call.principal)
    return await _pauses(call)


@group.route("POST", "/resume", role=Role.OPERATOR, summary="Resume everything")
async def resume_all(call: Call) -> PausesOut:
    """Ends a pause of everything; paused queues and tasks stay paused."""
    await ops.resume_all(call.client, call.principal)
    return await _pauses(call)
