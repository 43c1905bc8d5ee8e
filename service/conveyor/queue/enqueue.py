"""Enqueueing: checking a request against its task, then writing it.

:func:`prepare` turns what the caller asked for into a checked :class:`PreparedJob`;
:func:`enqueue_one` is the database conversation that writes one (see ``db.steps``), the
same for async and sync connections. Many jobs at once: ``queue.bulk``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

from .. import jsonb
from ..db.steps import Flow, Query
from ..errors import ConveyorError, InvalidOptionError, UnknownQueueError, UnknownTaskError
from ..tasks import (
    DEFAULT_QUEUE,
    Registry,
    Task,
    check_queue_name,
    encode_args,
    parse_priority,
    unknown_task_message,
)
from ..text import unstorable

MAX_UNIQUE_KEY = 512
MAX_KEY = 512
MAX_META_BYTES = 65536  # the job_meta domain's limit, as compact JSON

# The times a job's run_at may hold (the jobs table's job_time domain): years 1 to 9999, what
# Python's datetime can read, with a day's margin at each end for the session's time zone.
EARLIEST_RUN_AT = datetime(1, 1, 2, tzinfo=UTC)
LATEST_RUN_AT = datetime(9999, 12, 31, tzinfo=UTC)
# No delay shorter than this can reach LATEST_RUN_AT: longer ones are checked against the clock.
_DELAY_ALWAYS_FINE = timedelta(days=365 * 7000)

TaskRef = str | Task | Callable[..., Any]


_NO_ARGS: Mapping[str, Any] = MappingProxyType({})


class JobRequest(NamedTuple):
    """One job to enqueue: the task, its arguments and options that override the task's.
    (Immutable, and a tuple because it is cheap to make: a bulk enqueue makes one per job.)"""

    task: TaskRef
    args: Mapping[str, Any] = _NO_ARGS
    queue: str | None = None
    priority: int | str | None = None
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    unique_key: str | None = None
    max_attempts: int | None = None
    key: str | None = None
    meta: Mapping[str, Any] | None = None


class PreparedJob(NamedTuple):
    """A request checked against its task, with every default filled in. (A tuple: a bulk
    enqueue makes one per job, and a frozen dataclass takes four times as long to make.)"""

    task: str
    args_json: str
    queue: str
    declared_queue: bool
    priority: int
    max_attempts: int
    run_at: datetime | None
    delay: timedelta
    unique_key: str | None
    key: str | None = None
    meta_json: str | None = None

    @property
    def plain(self) -> bool:
        """Whether the job has no unique key, limit key or meta (the statements of the hot path)."""
        return self.unique_key is None and self.key is None and self.meta_json is None


def prepare(registry: Registry, request: JobRequest) -> PreparedJob:
    """Check a request; raise a ConveyorError that names the task and the problem."""
    task = resolve(registry, request.task)
    task.check_args(request.args)
    return PreparedJob(
        task.name,
        encode_args(task.name, request.args),
        *check_options(registry, task, request),
        check_unique_key(task, request.unique_key),
        *check_key_and_meta(task, request),
    )


def resolve(registry: Registry, ref: TaskRef) -> Task:
    """The registered task a request names."""
    task = registry.resolve(ref)
    if task is None:
        raise UnknownTaskError(unknown_task_message(registry, _task_name(ref)))
    return task


def check_unique_key(task: Task, unique_key: str | None) -> str | None:
    if unique_key is not None and not (isinstance(unique_key, str) and 0 < len(unique_key) <= MAX_UNIQUE_KEY):
        raise InvalidOptionError(f"task {task.name!r}: unique_key must be 1 to {MAX_UNIQUE_KEY} characters")
    if unique_key is not None and (why := unstorable(unique_key)) is not None:
        raise InvalidOptionError(f"task {task.name!r}: unique_key cannot be stored: {why}")
    return unique_key


def check_key_and_meta(task: Task, request: JobRequest) -> tuple[str | None, str | None]:
    """The job's limit key (given, else the value of the task's key argument) and its meta as
    JSON; raise InvalidOptionError for a key or meta that cannot be stored."""
    key = request.key
    if key is None and task.key_arg is not None:
        value = request.args.get(task.key_arg)
        if value is not None:
            key = (
                value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
            )
    if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_KEY):
        raise InvalidOptionError(
            f"task {task.name!r}: key must be 1 to {MAX_KEY} characters, got {key!r:.80}"
        )
    if key is not None and (why := unstorable(key)) is not None:
        raise InvalidOptionError(f"task {task.name!r}: key cannot be stored: {why}, got {key!r:.80}")
    meta = request.meta
    if meta is None:
        return key, None
    if not isinstance(meta, Mapping):
        raise InvalidOptionError(f"task {task.name!r}: meta must be a JSON object, got {type(meta).__name__}")
    try:
        meta_json, size = jsonb.dumps_sized(meta if type(meta) is dict else dict(meta))
    except (TypeError, ValueError) as exc:
        raise InvalidOptionError(f"task {task.name!r}: meta is not JSON: {exc}") from None
    if size > MAX_META_BYTES:
        raise InvalidOptionError(
            f"task {task.name!r}: meta takes {size} bytes as JSON, more than the {MAX_META_BYTES} byte limit"
        )
    return key, meta_json


# queue, declared_queue, priority, max_attempts, run_at, delay: PreparedJob's fields in order.
Options = tuple[str, bool, int, int, datetime | None, timedelta]


def check_options(registry: Registry, task: Task, request: JobRequest) -> Options:
    queue = request.queue if request.queue is not None else task.queue
    check_queue_name(queue)
    priority = task.priority if request.priority is None else parse_priority(request.priority)
    max_attempts = task.max_attempts if request.max_attempts is None else request.max_attempts
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise InvalidOptionError(f"task {task.name!r}: max_attempts must be a whole number >= 1")
    if request.run_at is not None and request.delay is not None:
        raise InvalidOptionError(f"task {task.name!r}: give run_at or delay, not both")
    if request.run_at is not None and request.run_at.tzinfo is None:
        raise InvalidOptionError(
            f"task {task.name!r}: run_at must carry a time zone (got naive {request.run_at.isoformat()})"
        )
    if request.run_at is not None and not EARLIEST_RUN_AT <= request.run_at < LATEST_RUN_AT:
        raise InvalidOptionError(
            f"task {task.name!r}: run_at {request.run_at.isoformat()} is outside the years 1 to 9999 a job can be due in"
        )
    delay = _as_timedelta(request.delay)
    if delay < timedelta(0):
        raise InvalidOptionError(f"task {task.name!r}: delay must not be negative")
    if delay > _DELAY_ALWAYS_FINE and delay >= LATEST_RUN_AT - datetime.now(UTC):
        raise InvalidOptionError(f"task {task.name!r}: a delay of {delay.days} days lands past the year 9999")
    declared = queue == task.queue or queue == DEFAULT_QUEUE or queue in registry.queues()
    return queue, declared, priority, max_attempts, request.run_at, delay


def enqueue_one(
    job: PreparedJob,
    *,
    channel: str,
    now: datetime | None,
    known_queues: set[str] | None = None,
    learn: bool = False,
    durable: bool = True,
) -> Flow[int]:
    """Insert one job; returns its id, or the id of the live job holding its unique key.

    ``durable`` False: each statement's commit does not wait for the disk (only for writes
    that commit on their own; see docs/enqueueing.md for what a crash may then lose).

    ``known_queues`` names queues whose rows are known to exist (queue rows are never
    deleted): a job for one of them, without a unique key, takes the short insert. With
    ``learn``, a queue this insert found or created is added to it; only for writes that
    commit on their own, since a caller's transaction may roll the queue's creation back.
    """
    if known_queues is not None and job.plain and job.queue in known_queues:
        rows = yield Query(
            "enqueue_job_in_known_queue",
            {
                "now": now,
                "queue": job.queue,
                "task": job.task,
                "args": job.args_json,
                "priority": job.priority,
                "max_attempts": job.max_attempts,
                "run_at": job.run_at,
                "delay": job.delay,
                "channel": channel,
                "durable": durable,
            },
        )
        return int(rows[0][0])
    params = {
        "now": now,
        "queue": job.queue,
        "declared_queue": job.declared_queue,
        "task": job.task,
        "args": job.args_json,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "unique_key": job.unique_key,
        "key": job.key,
        "meta": job.meta_json,
        "run_at": job.run_at,
        "delay": job.delay,
        "channel": channel,
        "durable": durable,
    }
    for _ in range(5):
        rows = yield Query("enqueue_job", params)
        if rows:
            if learn and known_queues is not None:
                known_queues.add(job.queue)
            return int(rows[0][0])
        if job.unique_key is not None:
            rows = yield Query("find_unique_job", {"unique_key": job.unique_key})
            if rows:
                return int(rows[0][0])
        rows = yield Query("queue_exists", {"queue": job.queue})
        if not rows[0][0]:
            raise UnknownQueueError(unknown_queue_message([job.queue]))
        # The job holding the unique key finished between the insert and the look-up: the
        # key is free again, so insert once more.
    raise ConveyorError(f"task {job.task!r}: unique key {job.unique_key!r} kept changing hands; try again")


def _as_timedelta(delay: float | timedelta | None) -> timedelta:
    if delay is None:
        return timedelta(0)
    if isinstance(delay, timedelta):
        return delay
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise InvalidOptionError(f"delay must be seconds or a timedelta, got {delay!r}")
    try:
        return timedelta(seconds=delay)
    except (ValueError, OverflowError):
        raise InvalidOptionError(f"delay of {delay!r} seconds cannot be scheduled") from None


def _task_name(task: TaskRef) -> str:
    if isinstance(task, str):
        return task
    return str(getattr(task, "name", None) or getattr(task, "__name__", repr(task)))


def unknown_queue_message(queues: Sequence[str]) -> str:
    names = ", ".join(repr(q) for q in queues)
    return (
        f"unknown queue {names}: no registered task declares it and it does not exist; "
        "create it (`conveyor queues create NAME`, or SQL create_queue('NAME') in Conveyor's schema) "
        "or start a worker for it"
    )
