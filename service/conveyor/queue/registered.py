"""Tasks a producer knows by name only: what workers recorded in the ``tasks`` table.

A web app, an ops box or the CLI may enqueue a task whose module it does not import. The
workers that run the task record its name and defaults (queue, priority, attempts,
timeout) when they start (``sync_tasks``); a producer uses those defaults. Arguments are
checked against the signature only where the function is known, i.e. in the local
registry; a task known by name only takes any JSON object, and the worker checks it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import UnknownTaskError
from ..tasks import Registry, Task, build_task, unknown_task_message
from ..text import unstorable
from .enqueue import TaskRef

# How long a producer trusts what it read of a task's defaults: a deploy that changes them
# reaches running producers within this time.
TRUST_SECONDS = 60.0


def registered_task(name: str, queue: str, priority: int, max_attempts: int, timeout: float | None) -> Task:
    """A Task with the defaults workers recorded, and no signature to check against."""

    def run_by_a_worker(**args: Any) -> Any:
        raise UnknownTaskError(f"task {name!r} is known here by name only: a worker that imports it runs it")

    return build_task(
        run_by_a_worker, name=name, queue=queue, priority=priority, max_attempts=max_attempts, timeout=timeout
    )


def unknown_anywhere(registry: Registry, name: str) -> UnknownTaskError:
    """The refusal of a name neither this process nor any worker knows."""
    return UnknownTaskError(
        unknown_task_message(registry, name)
        + "; nor has any worker recorded it (workers record their tasks when they start)"
    )


def unknown_names(registry: Registry, refs: Iterable[TaskRef]) -> list[str]:
    """The task names among ``refs`` that the local registry does not know."""
    names = {ref for ref in refs if type(ref) is str}
    return sorted(name for name in names if registry.get(name) is None)


class RegisteredTasks:
    """A producer's cache of the tasks workers recorded, each trusted for TRUST_SECONDS."""

    def __init__(self) -> None:
        self._read: dict[str, tuple[float, Task]] = {}

    def missing(self, names: Iterable[str]) -> list[str]:
        """The names to read (again) from the database."""
        now = time.monotonic()
        # A name holding NUL or a lone surrogate cannot be stored, so no worker recorded it
        # (and the query could not even be sent): it stays unknown.
        return [
            n
            for n in names
            if unstorable(n) is None and (n not in self._read or now - self._read[n][0] > TRUST_SECONDS)
        ]

    def learn(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Record what the database said of the names asked. Only tasks found are kept: a
        name no worker has recorded yet is asked again next time (workers may be starting)."""
        now = time.monotonic()
        for row in rows:
            self._read[row[0]] = (now, registered_task(*row))

    def overlay(self, registry: Registry, names: Iterable[str]) -> Registry:
        """``registry`` with the registered tasks of ``names`` that it lacks (a scratch copy;
        ``registry`` itself when none are needed). A name no one knows is refused."""
        extra: Mapping[str, Task] = {n: self._read[n][1] for n in names if n in self._read}
        for name in names:
            if name not in extra and registry.get(name) is None:
                raise unknown_anywhere(registry, name)
        if not extra:
            return registry
        scratch = Registry()
        for task in registry:
            scratch.add(task)
        for task in extra.values():
            scratch.add(task)
        return scratch
