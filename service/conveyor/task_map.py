"""The mapping table of an import: which Conveyor task (and queue, and priority) each job of
another queue system becomes (docs/coming-from-procrastinate.md, "The mapping file").

A TOML or JSON document with up to three tables::

    [tasks]                       # source task name -> Conveyor task (required)
    "app.tasks.send_email" = "send_email"
    "app.tasks.export" = { task = "export_csv", queue = "exports" }

    [queues]                      # source queue -> Conveyor queue (optional)
    urgent = "critical-mail"

    [priorities]                  # source priority -> Conveyor priority (optional)
    "10" = "critical"

A job's Conveyor queue is its task entry's ``queue``, else the rename of its source queue,
else the Conveyor task's own queue. Its priority is the entry of its source priority, else
(procrastinate's rule: higher runs first, 0 the default) the Conveyor task's own for 0,
``high`` above 0 and ``low`` below.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConveyorError
from .tasks import PRIORITIES, check_queue_name, parse_priority


class TaskMapError(ConveyorError):
    """A mapping file that cannot be used: what is wrong and where."""


@dataclass(frozen=True)
class Target:
    """What one source task becomes: a Conveyor task, and a queue if the map names one."""

    task: str
    queue: str | None = None


@dataclass(frozen=True)
class TaskMap:
    tasks: Mapping[str, Target]
    queues: Mapping[str, str] = field(default_factory=dict)
    priorities: Mapping[int, int] = field(default_factory=dict)

    def target(self, task: str) -> Target | None:
        """The Conveyor task a source task becomes; None if the map leaves it out."""
        return self.tasks.get(task)

    def queue(self, target: Target, source_queue: str) -> str | None:
        """The Conveyor queue of a job (None: the Conveyor task's own)."""
        if target.queue is not None:
            return target.queue
        return self.queues.get(source_queue)

    def priority(self, source_priority: int) -> int | None:
        """The Conveyor priority of a job (None: the Conveyor task's own)."""
        if source_priority in self.priorities:
            return self.priorities[source_priority]
        if source_priority > 0:
            return PRIORITIES["high"]
        if source_priority < 0:
            return PRIORITIES["low"]
        return None


def parse_task_map(text: str, *, name: str) -> TaskMap:
    """Read a mapping file's text; ``name`` (its file name) says how: ``.json`` as JSON,
    anything else as TOML. Raises :class:`TaskMapError` naming what is wrong."""
    try:
        document: Any = json.loads(text) if name.endswith(".json") else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskMapError(
            f"{name}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise TaskMapError(f"{name}: not valid TOML: {exc}") from None
    if not isinstance(document, dict):
        raise TaskMapError(f"{name}: must be a table (a JSON object) with a 'tasks' table")
    unknown = sorted(set(document) - {"tasks", "queues", "priorities"})
    if unknown:
        raise TaskMapError(f"{name}: unknown table {unknown[0]!r}: use 'tasks', 'queues' and 'priorities'")
    return TaskMap(
        tasks=_tasks(name, document.get("tasks")),
        queues=_queues(name, document.get("queues", {})),
        priorities=_priorities(name, document.get("priorities", {})),
    )


def _table(name: str, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TaskMapError(f"{name}: '{key}' must be a table (a JSON object), got {type(value).__name__}")
    return value


def _tasks(name: str, value: Any) -> dict[str, Target]:
    if value is None:
        raise TaskMapError(f"{name}: no 'tasks' table: map each source task name to a Conveyor task")
    tasks: dict[str, Target] = {}
    for source, entry in _table(name, "tasks", value).items():
        where = f"{name}: tasks.{json.dumps(source)}"
        if isinstance(entry, str):
            entry = {"task": entry}
        if not isinstance(entry, dict):
            raise TaskMapError(f"{where}: give a Conveyor task name, or a table with 'task' (and 'queue')")
        extra = sorted(set(entry) - {"task", "queue"})
        if extra:
            raise TaskMapError(f"{where}: unknown key {extra[0]!r}: use 'task' and 'queue'")
        task = entry.get("task")
        if not isinstance(task, str) or not task.strip():
            raise TaskMapError(f"{where}: 'task' must be a Conveyor task name")
        queue = entry.get("queue")
        if queue is not None:
            queue = _queue_name(where, queue)
        tasks[source] = Target(task, queue)
    if not tasks:
        raise TaskMapError(f"{name}: the 'tasks' table is empty")
    return tasks


def _queues(name: str, value: Any) -> dict[str, str]:
    return {
        source: _queue_name(f"{name}: queues.{json.dumps(source)}", queue)
        for source, queue in _table(name, "queues", value).items()
    }


def _queue_name(where: str, queue: Any) -> str:
    if not isinstance(queue, str):
        raise TaskMapError(f"{where}: a queue name must be a string, got {queue!r}")
    try:
        return check_queue_name(queue)
    except ConveyorError as exc:
        raise TaskMapError(f"{where}: {exc}") from None


def _priorities(name: str, value: Any) -> dict[int, int]:
    priorities: dict[int, int] = {}
    for source, priority in _table(name, "priorities", value).items():
        where = f"{name}: priorities.{json.dumps(source)}"
        try:
            number = int(source)
        except ValueError:
            raise TaskMapError(f"{where}: a source priority must be a whole number") from None
        try:
            priorities[number] = parse_priority(priority)
        except ConveyorError as exc:
            raise TaskMapError(f"{where}: {exc}") from None
    return priorities
