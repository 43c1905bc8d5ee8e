"""Tasks: the functions jobs run, registered with their options.

A task is a plain function, async or sync, decorated with :func:`task`. Its keyword
parameters are the job's arguments; one parameter annotated :class:`JobContext` (or named
``ctx``) receives the running job's context instead. Arguments are JSON and are checked
against the signature when the job is enqueued and again before it runs.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import re
import traceback
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, overload

from . import jsonb
from .backoff import Backoff
from .cron import Cron
from .errors import ArgumentsError, InvalidOptionError, NotFoundError, TaskImportError
from .limits import QueueLimits, Rate, limits_of
from .settings import MAX_ARGS_BYTES

PRIORITIES: Mapping[str, int] = {"critical": 0, "high": 1, "normal": 2, "low": 3}
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_QUEUE = "default"
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,126}")

F = TypeVar("F", bound=Callable[..., Any])


def parse_priority(value: int | str) -> int:
    """0 (critical) to 3 (low); names are accepted too."""
    if isinstance(value, str):
        if value.lower() in PRIORITIES:
            return PRIORITIES[value.lower()]
        if value.isascii() and value.isdigit():
            value = int(value)
        else:
            raise InvalidOptionError(f"unknown priority {value!r}: use critical, high, normal, low or 0-3")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3:
        raise InvalidOptionError(
            f"priority {value!r} is out of range: use 0 (critical), 1 (high), 2 (normal) or 3 (low)"
        )
    return value


def check_queue_name(queue: str) -> str:
    if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):
        raise InvalidOptionError(
            f"queue name {queue!r} is not allowed: use letters, digits and _ . : - "
            "(at most 127, starting with a letter or digit)"
        )
    return queue


def encode_args(task_name: str, args: Mapping[str, Any]) -> str:
    """The job's arguments as JSON text, refused if they are not storable JSON or too large."""
    try:
        text, size = jsonb.dumps_sized(args if type(args) is dict else dict(args))
    except (TypeError, ValueError) as exc:
        raise ArgumentsError(f"task {task_name!r}: arguments are not JSON: {exc}") from None
    if size > MAX_ARGS_BYTES:
        raise ArgumentsError(
            f"task {task_name!r}: arguments take {size} bytes as JSON, "
            f"more than the {MAX_ARGS_BYTES} byte limit; store large data elsewhere and pass a reference"
        )
    return text


@dataclass(frozen=True)
class Task:
    """A registered task: the function and the options its jobs get by default."""

    name: str
    func: Callable[..., Any]
    queue: str = DEFAULT_QUEUE
    priority: int = PRIORITIES["normal"]
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: Backoff = field(default_factory=Backoff)
    timeout: float | None = None
    context_param: str | None = None
    # The argument whose value is a job's limit key when the enqueue gives none (see docs/limits.md).
    key_arg: str | None = None
    is_async: bool = False
    _params: Mapping[str, inspect.Parameter] = field(default_factory=dict, repr=False)
    _hints: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _takes_any: bool = field(default=False, repr=False)
    _required: frozenset[str] = field(default=frozenset(), repr=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function directly, in this process, without a job."""
        return self.func(*args, **kwargs)

    def check_args(self, args: Mapping[str, Any]) -> None:
        """Raise ArgumentsError unless ``args`` can be passed to the function as keywords."""
        if type(args) is not dict and not isinstance(args, Mapping):
            raise ArgumentsError(
                f"task {self.name!r}: arguments must be a JSON object, got {type(args).__name__}"
            )
        if self.context_param is not None and self.context_param in args:
            raise ArgumentsError(
                f"task {self.name!r}: argument {self.context_param!r} is reserved for the job context"
            )
        if not self._takes_any and not args.keys() <= self._params.keys():
            unknown = [name for name in args if name not in self._params]
            raise ArgumentsError(
                f"task {self.name!r}: unexpected argument {_names(unknown)}"
                f" (it takes {_names(self._params) or 'no arguments'})"
            )
        if not self._required <= args.keys():
            missing = [name for name in self._params if name in self._required and name not in args]
            raise ArgumentsError(f"task {self.name!r}: missing required argument {_names(missing)}")
        hints = self._hints
        for name, value in args.items():
            hint = hints.get(name)
            if hint is not None and (hint is not type(value) or hint is bool) and not _fits(value, hint):
                raise ArgumentsError(
                    f"task {self.name!r}: argument {name!r} should be {_describe(hint)},"
                    f" got {type(value).__name__} {_preview(value)}"
                )


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule declared in code; the scheduler writes it to the database on start."""

    name: str
    cron: str
    task: str
    args: Mapping[str, Any]
    timezone: str = "UTC"
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    catch_up: str = "once"


SCHEDULE_NAME = QUEUE_NAME  # same alphabet


def named_schedule(name: str) -> str:
    """A name that may be a schedule's; NotFoundError for one no schedule can have (a NUL
    byte, a lone surrogate: PostgreSQL cannot even be asked about some of them)."""
    if not isinstance(name, str) or not SCHEDULE_NAME.fullmatch(name):
        raise NotFoundError(f"no schedule named {name!r}")
    return name


MAX_ATTEMPTS_LIMIT = 2**31 - 1  # the database stores it as an integer
CATCH_UP_POLICIES = ("skip", "once")


class Registry:
    """The tasks a process knows, by name, and the schedules its code declares."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._by_func: dict[Callable[..., Any], Task] = {}
        self._schedules: dict[str, ScheduleSpec] = {}
        self._limits: dict[str, QueueLimits] = {}

    @overload
    def task(self, func: F, /) -> F: ...

    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int | str = "normal",
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        key: str | None = None,
    ) -> Callable[[F], F]: ...

    def task(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int | str = "normal",
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        key: str | None = None,
    ) -> Any:
        """Register a function as a task. The function itself is returned unchanged.

        ``key`` names the argument whose value is a job's limit key when its enqueue gives
        none (per-key rate limits and concurrency caps count jobs by it)."""

        def register(fn: F) -> F:
            self.add(
                build_task(
                    fn,
                    name=name,
                    queue=queue,
                    priority=priority,
                    max_attempts=max_attempts,
                    backoff=backoff,
                    timeout=timeout,
                    key=key,
                )
            )
            return fn

        return register(func) if func is not None else register

    def add(self, task: Task) -> Task:
        existing = self._tasks.get(task.name)
        if existing is not None and existing.func is not task.func:
            raise InvalidOptionError(
                f"two tasks are named {task.name!r} ({_where(existing.func)} and {_where(task.func)});"
                " pass name=... to one of them"
            )
        self._tasks[task.name] = task
        with contextlib.suppress(TypeError):  # an unhashable callable is found by resolve()'s scan
            self._by_func[task.func] = task
        return task

    def get(self, name: str) -> Task | None:
        """A task of this registry, or one of Conveyor's built-in tasks."""
        return self._tasks.get(name) or _builtins.get(name)

    def resolve(self, task: str | Task | Callable[..., Any]) -> Task | None:
        """The registered task for a name, a Task or a decorated function."""
        if isinstance(task, Task):
            return self.get(task.name)
        if isinstance(task, str):
            return self.get(task)
        found = self._by_func.get(task)
        if found is not None and self._tasks.get(found.name) is found:
            return found
        for candidate in [*self._tasks.values(), *_builtins.values()]:
            if candidate.func is task:
                return candidate
        return None

    def with_builtins(self) -> list[Task]:
        """This registry's tasks and the built-in ones (what a worker can run)."""
        return [*self._tasks.values(), *(t for n, t in _builtins.items() if n not in self._tasks)]

    def schedule(
        self,
        name: str,
        cron: str,
        task: str | Task | Callable[..., Any],
        args: Mapping[str, Any] | None = None,
        *,
        timezone: str = "UTC",
        queue: str | None = None,
        priority: int | str | None = None,
        max_attempts: int | None = None,
        catch_up: str = "once",
    ) -> ScheduleSpec:
        """Declare a schedule next to the tasks: ``task`` is enqueued at every fire time of
        ``cron`` in ``timezone``. Checked now; written by the scheduler when it starts."""
        if not isinstance(name, str) or not SCHEDULE_NAME.fullmatch(name):
            raise InvalidOptionError(
                f"schedule name {name!r} is not allowed: use letters, digits and _ . : -"
            )
        Cron(cron, timezone)
        if isinstance(task, str) and not task:
            raise InvalidOptionError(f"schedule {name!r}: the task name is empty")
        if args is not None and not isinstance(args, Mapping):
            raise InvalidOptionError(f"schedule {name!r}: args must be a mapping (a JSON object)")
        if max_attempts is not None and (isinstance(max_attempts, bool) or not isinstance(max_attempts, int)):
            raise InvalidOptionError(f"schedule {name!r}: max_attempts must be a whole number")
        if catch_up not in CATCH_UP_POLICIES:
            raise InvalidOptionError(
                f"schedule {name!r}: catch_up must be 'skip' or 'once', got {catch_up!r}"
            )
        resolved = self.resolve(task)
        task_name = resolved.name if resolved is not None else task if isinstance(task, str) else None
        if task_name is None:
            raise InvalidOptionError(f"schedule {name!r}: {task!r} is not a registered task")
        if resolved is not None:
            resolved.check_args(args or {})
        encode_args(task_name, args or {})
        if queue is not None:
            check_queue_name(queue)
        if max_attempts is not None and max_attempts < 1:
            raise InvalidOptionError(f"schedule {name!r}: max_attempts must be at least 1")
        if max_attempts is not None and max_attempts > MAX_ATTEMPTS_LIMIT:
            raise InvalidOptionError(f"schedule {name!r}: max_attempts must be at most {MAX_ATTEMPTS_LIMIT}")
        spec = ScheduleSpec(
            name=name,
            cron=cron,
            task=task_name,
            args=dict(args or {}),
            timezone=timezone,
            queue=queue,
            priority=None if priority is None else parse_priority(priority),
            max_attempts=max_attempts,
            catch_up=catch_up,
        )
        existing = self._schedules.get(name)
        if existing is not None and existing != spec:
            raise InvalidOptionError(f"two different schedules are named {name!r}")
        self._schedules[name] = spec
        return spec

    def schedules(self) -> list[ScheduleSpec]:
        return list(self._schedules.values())

    def queue(
        self,
        name: str,
        *,
        rate: Rate | tuple[int, str | timedelta | float] | str | None = None,
        concurrency: int | None = None,
        key_rate: Rate | tuple[int, str | timedelta | float] | str | None = None,
        key_concurrency: int | None = None,
    ) -> QueueLimits:
        """Declare a queue's limits in code, e.g. ``registry.queue("exports", rate=(20, "1m"),
        concurrency=1)`` (see Conveyor.set_queue_limits for their meaning). A worker whose
        registry declares them writes them to the queue's row when it starts: the code wins
        over limits set from the CLI or SQL since then. A queue not declared keeps what was
        set there."""
        limits = limits_of(rate, concurrency, key_rate, key_concurrency)
        existing = self._limits.get(check_queue_name(name))
        if existing is not None and existing != limits:
            raise InvalidOptionError(f"queue {name!r} is declared twice with different limits")
        self._limits[name] = limits
        return limits

    def queue_limits(self) -> dict[str, QueueLimits]:
        """The queues whose limits this registry declares."""
        return dict(self._limits)

    def queues(self) -> set[str]:
        """Every queue a registered task or a declared schedule names."""
        return {t.queue for t in self._tasks.values()} | {
            s.queue for s in self._schedules.values() if s.queue is not None
        }

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def import_modules(self, modules: Iterable[str]) -> None:
        """Import task modules by dotted name; a module that fails says where and why."""
        for module in modules:
            module = module.strip()
            if not module:
                continue
            check_module_name(module)
            try:
                importlib.import_module(module)
            except Exception as exc:
                if isinstance(exc, SyntaxError):  # its own str() has the file's base name only
                    detail = f"{exc.msg} ({exc.filename}, line {exc.lineno})"
                else:
                    detail = f"{exc}{_origin(exc)}"
                raise TaskImportError(
                    f"cannot import task module {module!r}: {type(exc).__name__}: {detail}"
                ) from exc


def check_module_name(module: str) -> str:
    """A task module's name must be a dotted Python name (``myapp.tasks``): not a path, not a
    relative import (``..x``), which import_module would refuse with a puzzling message."""
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise TaskImportError(
            f"task module name {module!r} is not a module name: "
            "write dotted Python names, like myapp.tasks (comma-separated), not paths"
        )
    return module


def unknown_task_message(registry: Registry, name: str) -> str:
    known = sorted(t.name for t in registry)
    listing = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
    hint = f"registered: {listing}" if known else "no tasks are registered (import your task modules)"
    return f"unknown task {name!r}; {hint}"


def build_task(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int | str = "normal",
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff: Backoff | None = None,
    timeout: float | None = None,
    key: str | None = None,
) -> Task:
    if not callable(func):
        raise InvalidOptionError(f"a task must be a function, got {func!r}")
    task_name = name or func.__name__
    check_queue_name(queue)
    if max_attempts < 1:
        raise InvalidOptionError(f"task {task_name!r}: max_attempts must be at least 1")
    if timeout is not None and timeout <= 0:
        raise InvalidOptionError(f"task {task_name!r}: timeout must be positive")
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = {}  # unresolvable annotations: check names only
    signature = inspect.signature(func)
    context_param = None
    params: dict[str, inspect.Parameter] = {}
    takes_any = False
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            takes_any = True
            continue
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            raise InvalidOptionError(
                f"task {task_name!r}: parameter {param.name!r} cannot be passed by keyword;"
                " job arguments are keywords"
            )
        if _is_context(param, hints.get(param.name)):
            context_param = param.name
            continue
        params[param.name] = param
    if key is not None and key not in params:
        raise InvalidOptionError(
            f"task {task_name!r}: key {key!r} is not one of its arguments ({_names(params) or 'none'})"
        )
    return Task(
        name=task_name,
        func=func,
        queue=queue,
        priority=parse_priority(priority),
        max_attempts=max_attempts,
        backoff=backoff or Backoff(),
        timeout=timeout,
        context_param=context_param,
        key_arg=key,
        is_async=inspect.iscoroutinefunction(func),
        _params=params,
        _hints={k: v for k, v in hints.items() if k in params},
        _takes_any=takes_any,
        _required=frozenset(n for n, p in params.items() if p.default is inspect.Parameter.empty),
    )


def _is_context(param: inspect.Parameter, hint: Any) -> bool:
    annotation = param.annotation
    if isinstance(annotation, str) and annotation.rsplit(".", 1)[-1] == "JobContext":
        # Unresolved (e.g. imported under TYPE_CHECKING): the name is what we have.
        return True
    # Matched by name: JobContext lives in the queue engine, which imports this module.
    if getattr(hint, "__name__", None) == "JobContext" and str(getattr(hint, "__module__", "")).startswith(
        "conveyor."
    ):
        return True
    return param.name == "ctx"


_JSON_SCALARS: tuple[type, ...] = (str, int, float, bool, type(None))


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a simple annotation; anything unusual is accepted."""
    if hint is Any or hint is object:
        return True
    kind = type(value)
    if (hint is kind and kind is not bool) or (hint is float and kind is int):
        return True  # the common case, answered before the general rules below
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        # == alone would let True through for 1 and 1.0 for 1.
        return any(value == allowed and type(value) is type(allowed) for allowed in typing.get_args(hint))
    if origin in (list, tuple, set, frozenset, Iterable, typing.Sequence):
        return isinstance(value, list)
    if origin in (dict, Mapping):
        return isinstance(value, dict)
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint in (str, list, dict):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is None and isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _preview(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, _JSON_SCALARS) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _where(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"


def _origin(exc: BaseException) -> str:
    """' (file.py, line N)' for the innermost frame outside the import machinery."""
    machinery = os.path.dirname(importlib.__file__)
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(("<frozen importlib", machinery)) and f.filename != __file__
    ]
    if not frames:
        return ""
    return f" ({frames[-1].filename}, line {frames[-1].lineno})"


# Conveyor's own tasks (e.g. the materialized-view refresh): every registry knows them.
_builtins: dict[str, Task] = {}


def register_builtin(task: Task) -> Task:
    _builtins[task.name] = task
    return task


default_registry = Registry()
task = default_registry.task
schedule = default_registry.schedule
declare_queue = default_registry.queue
"""Register a function as a task in the default registry: ``@task`` or ``@task(queue=...)``;
``schedule(name, cron, task, args, timezone=...)`` declares a schedule there, and
``declare_queue(name, rate=..., concurrency=...)`` a queue's limits."""
