"""Bulk enqueue: many jobs in one transaction, by COPY.

A batch on Conveyor's own connection is checked as its rows are written: each request's
task, options and arguments are checked and encoded as its row is formatted for COPY,
chunk by chunk, so that Python prepares the next rows while PostgreSQL takes in the last
ones (checking everything first, then writing, took half as long again). A refusal found
there (an unknown task, a bad option or argument) aborts the COPY, and an unknown queue is
found once it is done: either way the batch's own transaction rolls back, and one bad
request enqueues none.

Jobs with a unique key, a limit key or meta are inserted from arrays, not copied (a unique
key a live job holds gives back that job's id; the COPY rows of the hot path stay as they
are). A batch on a caller's connection is checked whole before its first statement (so that a
refusal leaves the caller's transaction as it was), as are follow-up jobs, which a task's
context checked when it asked for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from ..db.steps import Copy, Flow, Query
from ..errors import ConveyorError, UnknownQueueError
from ..tasks import Registry, Task, encode_args
from .enqueue import (
    JobRequest,
    Options,
    PreparedJob,
    TaskRef,
    check_key_and_meta,
    check_options,
    check_unique_key,
    resolve,
    unknown_queue_message,
)

COPY_CHUNK = 1 << 18  # about this many bytes of COPY text per write

# One job of a batch as it is written: task name, arguments as JSON, options, unique key,
# limit key, meta as JSON.
Entry = tuple[str, str, Options, str | None, str | None, str | None]


class Batch:
    """Jobs to enqueue together, each made as it is read (:meth:`entries`).

    ``queues`` maps each queue to whether a task declares it (declared queues are created if
    missing). A batch made by :func:`stream` learns them as its entries are read.
    """

    def __init__(
        self,
        size: int,
        entries: Callable[[Batch], Iterator[Entry]],
        *,
        inserted: bool,
        due_now: bool,
        queues: dict[str, bool] | None = None,
    ) -> None:
        self.size = size
        self.inserted = inserted  # some job has a unique key, a limit key or meta: no COPY
        self.due_now = due_now  # no job asks for a delay or a run_at
        self.queues_known = queues is not None
        self.queues: dict[str, bool] = queues if queues is not None else {}
        self._entries = entries

    def entries(self) -> Iterator[Entry]:
        return self._entries(self)

    def prepared(self) -> list[PreparedJob]:
        return [
            PreparedJob(task, args, *options, unique_key, key, meta)
            for task, args, options, unique_key, key, meta in self.entries()
        ]

    @classmethod
    def of(cls, jobs: Sequence[PreparedJob]) -> Batch:
        """Jobs checked already."""
        queues: dict[str, bool] = {}
        for job in jobs:
            queues[job.queue] = queues.get(job.queue, False) or job.declared_queue

        def entries(_: Batch) -> Iterator[Entry]:
            for job in jobs:
                options = (
                    job.queue,
                    job.declared_queue,
                    job.priority,
                    job.max_attempts,
                    job.run_at,
                    job.delay,
                )
                yield job.task, job.args_json, options, job.unique_key, job.key, job.meta_json

        return cls(
            len(jobs),
            entries,
            inserted=not all(job.plain for job in jobs),
            due_now=all(job.run_at is None and not job.delay for job in jobs),
            queues=queues,
        )


def stream(registry: Registry, requests: Iterable[JobRequest]) -> Batch:
    """A batch whose requests are checked as its entries are read. Write it only in a
    transaction of its own: a refusal is raised part-way through."""
    listed = requests if isinstance(requests, list) else list(requests)
    inserted = False
    due_now = True
    seen: Any = None
    for request in listed:
        inserted = (
            inserted or request.unique_key is not None or request.key is not None or request.meta is not None
        )
        due_now = due_now and request.run_at is None and not request.delay
        if not inserted and request.task is not seen:
            # A task that derives its jobs' limit keys from an argument: its jobs are inserted.
            seen = request.task
            found = registry.resolve(seen)
            inserted = found is not None and found.key_arg is not None

    def entries(batch: Batch) -> Iterator[Entry]:
        queues = batch.queues
        checked: dict[tuple[Any, ...], Options] = {}
        defaults: dict[str, Options] = {}  # by task: requests that set no option at all
        last: tuple[TaskRef, Task] | None = None  # a bulk enqueue names one task again and again
        for request in listed:
            if last is not None and request.task is last[0]:
                task = last[1]
            else:
                task = resolve(registry, request.task)
                last = (request.task, task)
            options = _options(registry, task, request, checked, defaults)
            if request.unique_key is not None:
                check_unique_key(task, request.unique_key)
            if queues.get(options[0]) is not True:
                queues[options[0]] = options[1]
            task.check_args(request.args)
            key, meta = check_key_and_meta(task, request) if batch.inserted else (None, None)
            yield task.name, encode_args(task.name, request.args), options, request.unique_key, key, meta

    return Batch(len(listed), entries, inserted=inserted, due_now=due_now)


def prepare_many(registry: Registry, requests: Iterable[JobRequest]) -> list[PreparedJob]:
    """Check requests, all of them, before any is used."""
    return stream(registry, requests).prepared()


def _options(
    registry: Registry,
    task: Task,
    request: JobRequest,
    checked: dict[tuple[Any, ...], Options],
    defaults: dict[str, Options],
) -> Options:
    """check_options, once per task and set of options."""
    if (
        request.queue is None
        and request.priority is None
        and request.max_attempts is None
        and request.delay is None
        and request.run_at is None
    ):
        options = defaults.get(task.name)
        if options is None:
            options = defaults[task.name] = check_options(registry, task, request)
        return options
    # Types too: 1, 1.0 and True are equal keys, but not equally valid options.
    key: tuple[Any, ...] | None = (
        task.name,
        request.queue,
        request.priority,
        type(request.priority),
        request.max_attempts,
        type(request.max_attempts),
        request.delay,
        type(request.delay),
        request.run_at,
    )
    try:
        found = checked.get(key) if key is not None else None
    except TypeError:  # an unhashable option: checked below, and refused there
        found, key = None, None
    if found is None:
        found = check_options(registry, task, request)
        if key is not None:
            checked[key] = found
    return found


def enqueue_many(batch: Batch, *, channel: str, jobs_table: str, now: datetime | None) -> Flow[list[int]]:
    """Insert a batch in one go (COPY when no job has a unique key, limit key or meta); ids in order."""
    if not batch.size:
        return []
    if batch.inserted:
        jobs = batch.prepared()  # checked whole: the rows go in as one INSERT
    if batch.queues_known:
        yield from _ensure_queues(batch.queues)
    rows = yield Query("prepare_bulk", {"now": now, "jobs_table": jobs_table, "count": batch.size})
    clock_now: datetime = rows[0][0]
    ids: list[int] = list(rows[0][1])

    waking: set[str] = set()
    if batch.inserted:
        records = [_record(job_id, job, clock_now) for job_id, job in zip(ids, jobs, strict=True)]
        waking = {record[1] for record in records if record[4] == "available"}
        ids = yield from _insert_unique(records, clock_now)
    else:
        rows_of = copy_text(
            ids, batch.entries(), clock_now, waking, times=not (batch.due_now and now is None)
        )
        if batch.due_now and now is None:
            # Due now by the database's clock: run_at, enqueued_at and state are the defaults.
            yield Copy("copy_jobs_due_now", rows_of)
        else:
            yield Copy("copy_jobs", rows_of)
    if not batch.queues_known:
        # Learned while copying. An unknown one raises here, and the batch's own
        # transaction takes the rows back.
        yield from _ensure_queues(batch.queues)
    if waking:
        yield Query("notify_queues", {"channel": channel, "names": sorted(waking)})
    return ids


def _ensure_queues(queues: dict[str, bool]) -> Flow[None]:
    rows = yield Query("ensure_queues", {"names": list(queues), "declared": list(queues.values())})
    unknown = sorted(set(queues) - {row[0] for row in rows})
    if unknown:
        raise UnknownQueueError(unknown_queue_message(unknown))


def copy_text(
    ids: Sequence[int], entries: Iterable[Entry], now: datetime, waking: set[str], *, times: bool = True
) -> Iterator[bytes]:
    """The jobs as COPY rows in text format, in chunks of about 256 kB: for copy_jobs, or,
    without ``times``, for copy_jobs_due_now. The queues of jobs due now go into ``waking``.

    A generator: each chunk is made while the database takes in the one before. Only the id
    and the arguments are formatted per row; what a bulk enqueue repeats on every row (queue,
    task, state, times) is formatted once per task and set of options.
    """
    lines: list[str] = []
    size = 0
    around: dict[tuple[str, Options], tuple[str, str]] = {}
    last: tuple[str, Options, tuple[str, str]] | None = None
    for job_id, (task, args, options, *_) in zip(ids, entries, strict=True):
        if last is not None and task is last[0] and options is last[1]:
            head, tail = last[2]
        else:
            parts = around.get((task, options))
            if parts is None:
                parts = around[task, options] = _copy_parts(task, options, now, waking, times)
            last = (task, options, parts)
            head, tail = parts
        if "\\" in args:  # JSON escapes its control characters: a backslash is all COPY needs escaped
            args = args.replace("\\", "\\\\")
        lines.append(f"{job_id}{head}{args}{tail}")
        size += len(args) + 100
        if size >= COPY_CHUNK:
            yield "".join(lines).encode()
            lines, size = [], 0
    if lines:
        yield "".join(lines).encode()


def _copy_parts(task: str, options: Options, now: datetime, waking: set[str], times: bool) -> tuple[str, str]:
    """What a COPY row holds around its id and arguments."""
    queue, _, priority, max_attempts, run_at, delay = options
    due = run_at if run_at is not None else now + delay
    state = "available" if due <= now else "scheduled"
    if state == "available":
        waking.add(queue)
    head = f"\t{_copy_field(queue)}\t{_copy_field(task)}\t"
    if not times:
        return head, f"\t{priority}\t{max_attempts}\n"
    return head, f"\t{state}\t{priority}\t{due.isoformat()}\t{max_attempts}\t{now.isoformat()}\n"


# Column order of insert_jobs.
Record = tuple[int, str, str, str, str, int, datetime, int, str | None, datetime, str | None, str | None]


def _record(job_id: int, job: PreparedJob, now: datetime) -> Record:
    run_at = job.run_at if job.run_at is not None else now + job.delay
    state = "available" if run_at <= now else "scheduled"
    return (
        job_id,
        job.queue,
        job.task,
        job.args_json,
        state,
        job.priority,
        run_at,
        job.max_attempts,
        job.unique_key,
        now,
        job.key,
        job.meta_json,
    )


def _copy_field(value: str | None) -> str:
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _insert_unique(records: list[Record], now: datetime) -> Flow[list[int]]:
    columns = list(zip(*records, strict=True))
    rows = yield Query(
        "insert_jobs",
        {
            "now": now,
            "ids": list(columns[0]),
            "queues": list(columns[1]),
            "tasks": list(columns[2]),
            "args": list(columns[3]),
            "states": list(columns[4]),
            "priorities": list(columns[5]),
            "run_ats": list(columns[6]),
            "max_attempts": list(columns[7]),
            "unique_keys": list(columns[8]),
            "keys": list(columns[10]),
            "metas": list(columns[11]),
        },
    )
    inserted = {row[0] for row in rows}
    clashing = sorted({r[8] for r in records if r[0] not in inserted and r[8] is not None})
    holders: dict[str, int] = {}
    if clashing:
        rows = yield Query("find_unique_jobs", {"unique_keys": clashing})
        holders = {row[0]: row[1] for row in rows}
    ids: list[int] = []
    for record in records:
        if record[0] in inserted:
            ids.append(record[0])
        elif record[8] in holders:
            ids.append(holders[record[8]])
        else:
            raise ConveyorError(
                f"unique key {record[8]!r} was released while this batch was enqueued; try again"
            )
    return ids
