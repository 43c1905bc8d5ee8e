"""Running one claimed job: resolve its task, check its arguments, call it, judge the outcome.

The executor never touches the database; it turns a claimed job into an :class:`Outcome`
that the completer records.

Aborts (docs/job-control.md): the worker puts an execution whose abort was asked for in
``aborted`` and cancels it when its task is async. An attempt of an aborted execution that
ends by a cancellation or by raising anything is :class:`Aborted` (it ends as cancelled, never
retried); one that returns normally is :class:`Completed`: it did its work, and says so.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import random
import traceback
from collections.abc import Callable, Container, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

from .. import jsonb
from ..clock import Clock
from ..errors import ArgumentsError, Discard, RetryIn
from ..jobs import ClaimedJob, Held
from ..settings import MAX_ARGS_BYTES
from ..tasks import Registry, Task, unknown_task_message
from .context import Connect, JobContext, ProgressSink
from .enqueue import PreparedJob
from .flows import ChildBatch
from .reports import job_fields

log = logging.getLogger("conveyor.worker")

# Outcomes are tuples: a draining worker makes one per job, and frozen dataclasses were a
# microsecond or two each.


class Completed(NamedTuple):
    job: ClaimedJob
    result_json: str | None
    children: Sequence[PreparedJob] = ()
    batches: Sequence[ChildBatch] = ()  # ctx.batch(...): written with the ack, like children


class Retry(NamedTuple):
    job: ClaimedJob
    delay: float
    error_json: str  # the entry for the job's errors
    error: str = ""  # its message, for logs and hooks
    exception: BaseException | None = None


class Bury(NamedTuple):
    job: ClaimedJob
    error_json: str
    error: str = ""
    exception: BaseException | None = None


class Aborted(NamedTuple):
    job: ClaimedJob


Outcome = Completed | Retry | Bury | Aborted

_NOTHING_ABORTED: frozenset[Held] = frozenset()


class Executor:
    def __init__(
        self,
        registry: Registry,
        threads: ThreadPoolExecutor,
        worker_id: UUID,
        clock: Clock,
        progress: Callable[[Held], ProgressSink],
        connection: Connect | None = None,
        schema: str = "conveyor",
        rand: Callable[[], float] = random.random,
        aborted: Container[Held] = _NOTHING_ABORTED,
    ) -> None:
        """``aborted``: the executions whose abort was asked for (the worker's set)."""
        self._registry = registry
        self._threads = threads
        self._worker_id = str(worker_id)
        self._clock = clock
        self._progress = progress
        self._connection = connection
        self._schema = schema
        self._rand = rand
        self._aborted = aborted
        self._in_threads: dict[Held, Future[Any]] = {}

    @property
    def busy_threads(self) -> int:
        return len(self._in_threads)

    def in_thread(self, held: Held) -> bool:
        """Whether that execution's sync task is still running in its thread."""
        return held in self._in_threads

    async def execute(self, job: ClaimedJob) -> Outcome:
        task = self._registry.get(job.task)
        if task is None:
            return self._unknown(job)
        try:
            task.check_args(job.args)
        except ArgumentsError as exc:
            message = f"{exc}; fix the arguments, then retry it from the dead-letter queue"
            return Bury(job, self._error(job, message), message)

        ctx = (
            JobContext(
                job,
                self._registry,
                self._progress(Held.of(job)),
                self._connection,
                self._schema,
                self._aborted,
            )
            if task.context_param
            else None
        )
        kwargs = dict(job.args)
        if ctx is not None and task.context_param is not None:
            kwargs[task.context_param] = ctx
        try:
            if task.is_async:
                result = await self._run_async(task, kwargs)
            else:
                result = await self._run_sync(job, task, kwargs)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if Held.of(job) in self._aborted and current is not None and current.cancelling() == 1:
                current.uncancel()  # the abort's cancellation, and only it: judged here
                return Aborted(job)
            if current is not None and current.cancelling():
                raise  # the worker is stopping this job
            return self._failed(job, task, "CancelledError: the task cancelled itself", None)
        except TimeoutError as exc:
            if isinstance(exc, _Timeout):
                return self._failed(job, task, str(exc), None)
            return self._failed(job, task, describe(exc), exc)
        except Discard as exc:
            if Held.of(job) in self._aborted:
                return Aborted(job)
            message = f"discarded: {describe(exc)}"
            return Bury(job, self._error(job, message, exc), message, exc)
        except RetryIn as exc:
            return self._failed(job, task, describe(exc), exc, at_least=exc.seconds)
        except BaseException as exc:  # a task must not be able to stop the worker
            return self._failed(job, task, describe(exc), exc)
        if ctx is None:
            return Completed(job, _encode_result(result))
        return Completed(job, _encode_result(result), ctx.children(), ctx.batches())

    async def _run_async(self, task: Task, kwargs: dict[str, Any]) -> Any:
        if task.timeout is None:
            return await task.func(**kwargs)
        try:
            async with asyncio.timeout(task.timeout):
                return await task.func(**kwargs)
        except TimeoutError:
            raise _Timeout(task.timeout) from None

    async def _run_sync(self, job: ClaimedJob, task: Task, kwargs: dict[str, Any]) -> Any:
        """The function's result. Past its timeout the attempt has failed, but Python cannot
        stop a thread: the failure is reported only once the thread returns, so that the job
        stays leased (and its slot taken) until then and its next attempt never runs beside
        this one, here or on another worker."""
        held = Held.of(job)
        call = functools.partial(contextvars.copy_context().run, task.func, **kwargs)
        submitted = self._threads.submit(call)
        self._in_threads[held] = submitted
        submitted.add_done_callback(lambda _: self._in_threads.pop(held, None))
        future = asyncio.wrap_future(submitted)
        if task.timeout is None:
            return await future
        done, _ = await asyncio.wait([future], timeout=task.timeout)
        if done:
            return future.result()
        log.warning(
            "job %d: sync task %r ran past its %g s timeout; that attempt has failed, and its next "
            "one waits until the thread returns (Python cannot stop a thread)",
            job.id,
            task.name,
            task.timeout,
            extra={**job_fields(job), "event": "timeout"},
        )
        # Cancelled here (the worker stopping), the thread runs on and the worker sees it in
        # in_thread(): the job is then left to its lease rather than handed back.
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: the attempt failed by its timeout, whatever it raised
        raise _Timeout(task.timeout)

    def crashed(self, job: ClaimedJob, exc: BaseException) -> Outcome:
        """The outcome of an attempt whose judging itself failed (``execute`` raised): a
        failure carrying the reason, retried or buried like any other, so that the job is
        settled rather than left to its lease."""
        message = f"the worker failed while judging this attempt: {describe(exc)}"
        task = self._registry.get(job.task)
        if task is None:
            return Bury(job, self._error(job, message, exc), message, exc)
        return self._failed(job, task, message, exc)

    def _unknown(self, job: ClaimedJob) -> Outcome:
        """A task this worker does not know: another worker may (a rolling deploy), or this one
        will once its task modules are fixed. The job comes back later, counting the attempt,
        and reaches the dead-letter table only when its attempts are used up."""
        known = unknown_task_message(self._registry, job.task)
        if job.attempt >= job.max_attempts:
            message = (
                f"{known}; load the module that defines it with --tasks, then retry the job "
                "from the dead-letter queue"
            )
            return Bury(job, self._error(job, message), message)
        delay = unknown_task_delay(job.attempt)
        message = f"{known}; tried again in {delay:g} s (load the module that defines it with --tasks)"
        return Retry(job, delay, self._error(job, message), message)

    def _failed(
        self, job: ClaimedJob, task: Task, message: str, exc: BaseException | None, at_least: float = 0.0
    ) -> Outcome:
        """Retried after the task's backoff (or ``at_least`` seconds, when longer: RetryIn), or
        buried when its attempts are used up."""
        if Held.of(job) in self._aborted:
            return Aborted(job)  # stopped by its abort: not retried
        error = self._error(job, message, exc)
        if job.attempt >= job.max_attempts:
            return Bury(job, error, message, exc)
        delay = max(task.backoff.delay(job.attempt, self._rand), at_least)
        return Retry(job, delay, error, message, exc)

    def _error(self, job: ClaimedJob, message: str, exc: BaseException | None = None) -> str:
        return error_entry(job, self._worker_id, self._clock, message, exc)


# A job whose task the worker does not know waits this long after its first attempt, twice as
# long after each next one, up to the cap: long enough for a deploy to finish.
UNKNOWN_TASK_DELAY = 60.0
UNKNOWN_TASK_DELAY_CAP = 3600.0


def unknown_task_delay(attempt: int) -> float:
    return float(min(UNKNOWN_TASK_DELAY_CAP, UNKNOWN_TASK_DELAY * 2 ** min(attempt - 1, 16)))


def error_entry(
    job: ClaimedJob, worker_id: UUID | str, clock: Clock, message: str, exc: BaseException | None = None
) -> str:
    """One element of a job's ``errors``, as JSON the database will always accept."""
    now = clock.now() or datetime.now(UTC)
    entry: dict[str, Any] = {
        "attempt": job.attempt,
        "at": now.isoformat(),
        "worker": str(worker_id),
        "error": message,
    }
    if exc is not None:
        entry["traceback"] = "".join(traceback.format_exception(exc))[-16000:]
    return _safe_json(entry)


class _Timeout(TimeoutError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"TimeoutError: the task ran longer than its {seconds:g} s timeout")


def describe(exc: BaseException) -> str:
    """``Type: message``; never raises, whatever the exception's ``__str__`` does."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:
        return f"{name}: <exception of type {name} with an unprintable message>"
    return f"{name}: {text}" if text else name


def _printable(value: Any) -> str:
    """``repr(value)``, or a placeholder when its ``__repr__`` raises."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object with an unprintable repr>"


def _encode_result(result: Any) -> str | None:
    """The result as storable JSON; what cannot be stored is kept as a readable excerpt.
    Never raises: a task's result must not keep its job from being recorded."""
    if result is None:
        return None
    try:
        text = jsonb.dumps(result)
    except Exception as exc:
        return _safe_json({"unstorable_result": _printable(result)[:1000], "why": describe(exc)})
    if len(text.encode()) > MAX_ARGS_BYTES:
        return _safe_json({"truncated_result": text[:1000]})
    return text


def _safe_json(value: Any) -> str:
    """JSON for text we do not control (messages, tracebacks, reprs): never refused by jsonb."""
    return json.dumps(_scrub(value), ensure_ascii=False)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\\0").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value
