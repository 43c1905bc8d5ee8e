"""The schedule form of the dashboard, without I/O: its fields as typed (kept to show again
after a refusal), their decoding into a definition for ``conveyor.ops.schedules``, which
field a refusal of the service layer is about, and how fire times are written.

What the service layer checks (the cron expression, the time zone, the task and its
arguments, the queue name, the priority) it checks itself; this module only turns the text
of the form into values (JSON for the arguments, whole numbers) and says which field a
message of the service layer names, so that it is shown next to that field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from ..errors import ArgumentsError, ConflictError, ConveyorError, UnknownTaskError
from .base import Form

FIELDS = ("name", "task", "cron", "timezone", "args", "queue", "priority", "max_attempts", "catch_up")
PRIORITIES = ("critical", "high", "normal", "low")
CATCH_UP = ("once", "skip")

# (what a message of the service layer starts with or holds, the field it is about)
_PLACES: tuple[tuple[str, str], ...] = (
    ("schedule name ", "name"),
    ("cron expression", "cron"),
    ("unknown cron shorthand", "cron"),
    ("unknown time zone", "timezone"),
    ("the task name is empty", "task"),
    ("is not a registered task", "task"),
    ("args must be", "args"),
    ("is not a materialized view", "args"),
    ("queue name ", "queue"),
    ("unknown priority", "priority"),
    ("priority ", "priority"),
    ("max_attempts", "max_attempts"),
    ("catch_up", "catch_up"),
)


@dataclass(frozen=True)
class ScheduleForm:
    """The fields as typed, and the message for each field that was refused."""

    name: str = ""
    task: str = ""
    cron: str = ""
    timezone: str = "UTC"
    args: str = "{}"
    queue: str = ""
    priority: str = ""
    max_attempts: str = ""
    catch_up: str = "once"
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, form: Form) -> ScheduleForm:
        def typed(name: str) -> str:
            value = form.get(name) or ""
            return value if name == "args" else value.strip()

        return cls(
            name=typed("name"),
            task=typed("task"),
            cron=typed("cron"),
            timezone=typed("timezone"),
            args=typed("args"),
            queue=typed("queue"),
            priority=typed("priority"),
            max_attempts=typed("max_attempts"),
            catch_up=typed("catch_up"),
        )

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> ScheduleForm:
        """The form of a stored schedule (to change it)."""
        priority = row.get("priority")
        return cls(
            name=str(row["name"]),
            task=str(row["task"]),
            cron=str(row["cron"]),
            timezone=str(row["timezone"]),
            args=json.dumps(row.get("args") or {}, indent=2, ensure_ascii=False),
            queue=str(row.get("queue") or ""),
            priority=_priority_name(priority),
            max_attempts="" if row.get("max_attempts") is None else str(row["max_attempts"]),
            catch_up=str(row.get("catch_up") or "once"),
        )

    def refused(self, errors: Mapping[str, str]) -> ScheduleForm:
        return replace(self, errors={**self.errors, **errors})

    @property
    def general_errors(self) -> list[str]:
        """Messages that are about no field of the form."""
        return [message for name, message in self.errors.items() if name not in FIELDS]

    def definition(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The definition the service layer takes (every field but the name), and the fields
        that could not be decoded (the arguments not a JSON object, a count not a number)."""
        errors: dict[str, str] = {}
        args: Any = {}
        if self.args.strip():
            try:
                args = json.loads(self.args)
            except ValueError as exc:
                errors["args"] = f"The arguments are not valid JSON: {exc}."
            except RecursionError:
                errors["args"] = "The arguments are nested too deeply."
                args = {}
            else:
                if not isinstance(args, dict):
                    errors["args"] = 'The arguments must be a JSON object, like {"a": 1}.'
                    args = {}
        max_attempts: int | None = None
        if self.max_attempts:
            try:
                max_attempts = int(self.max_attempts)
            except ValueError:
                errors["max_attempts"] = "Max attempts must be a whole number (or left empty)."
        definition = {
            "task": self.task,
            "cron": self.cron,
            "timezone": self.timezone,
            "args": args,
            "queue": self.queue or None,
            "priority": self.priority or None,
            "max_attempts": max_attempts,
            "catch_up": self.catch_up or "once",
        }
        return definition, errors


def _priority_name(priority: Any) -> str:
    if priority is None:
        return ""
    number = int(priority)
    return PRIORITIES[number] if 0 <= number < len(PRIORITIES) else str(number)


def place(exc: ConveyorError) -> str:
    """The form field a refusal of the service layer is about ("form" if none)."""
    if isinstance(exc, UnknownTaskError):
        return "task"
    if isinstance(exc, ConflictError):
        return "name"
    message = str(exc)
    for needle, name in _PLACES:
        if message.startswith(needle):
            return name
    for needle, name in _PLACES:
        if needle in message:
            return name
    if isinstance(exc, ArgumentsError):
        return "args"
    return "form"


@cache
def time_zones() -> tuple[str, ...]:
    """Every IANA time zone name this system knows, sorted (the form's suggestions)."""
    return tuple(sorted(available_timezones() - {"localtime"}))


def zoned(moment: datetime | None) -> str:
    """A time as its zone's wall clock: ``2026-12-08 09:00 CET`` (seconds when not zero)."""
    if moment is None:
        return "\u2014"
    pattern = "%Y-%m-%d %H:%M:%S %Z" if moment.second else "%Y-%m-%d %H:%M %Z"
    return moment.strftime(pattern)


def utc(moment: datetime | None) -> str:
    """A time in UTC for a page without script: ``2026-12-08 08:00 UTC``."""
    return zoned(None if moment is None else moment.astimezone(UTC))


def iso(moment: datetime) -> str:
    """The instant for a ``<time datetime>``: ISO 8601 in UTC, ``2026-12-08T08:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
