"""Conveyor: background jobs and schedules for Python services on PostgreSQL alone.

Declare tasks with :func:`task`, enqueue with :class:`Conveyor` (async) or
:class:`SyncConveyor`, run them with :class:`Worker` (or ``conveyor worker``).
"""

from .backoff import Backoff
from .clock import Clock, DatabaseClock, FrozenClock
from .errors import (
    ArgumentsError,
    ConfigurationError,
    ConveyorError,
    Discard,
    InvalidOptionError,
    JobStateError,
    NotFoundError,
    RetryIn,
    TaskImportError,
    UnknownQueueError,
    UnknownTaskError,
)
from .limits import QueueLimits, Rate
from .queue.client import Conveyor, QueueStats
from .queue.context import JobContext
from .queue.control import Pauses
from .queue.enqueue import JobRequest
from .queue.matviews import REFRESH_TASK, schedule_refresh
from .queue.sync_client import SyncConveyor
from .queue.worker import Worker, WorkerConfig
from .tasks import PRIORITIES, Registry, ScheduleSpec, Task, declare_queue, default_registry, schedule, task

__all__ = [
    "PRIORITIES",
    "REFRESH_TASK",
    "ArgumentsError",
    "Backoff",
    "Clock",
    "ConfigurationError",
    "Conveyor",
    "ConveyorError",
    "DatabaseClock",
    "Discard",
    "FrozenClock",
    "InvalidOptionError",
    "JobContext",
    "JobRequest",
    "JobStateError",
    "NotFoundError",
    "Pauses",
    "QueueLimits",
    "QueueStats",
    "Rate",
    "Registry",
    "RetryIn",
    "ScheduleSpec",
    "SyncConveyor",
    "Task",
    "TaskImportError",
    "UnknownQueueError",
    "UnknownTaskError",
    "Worker",
    "WorkerConfig",
    "declare_queue",
    "default_registry",
    "schedule",
    "schedule_refresh",
    "task",
]
