"""Field types the API's models share: ids, names, durations, priorities, page cursors.

Contract: each type validates what a client sends (with the bounds the database has, so
nothing out of range reaches it) and states those bounds in the JSON Schema, so the OpenAPI
document says what is accepted. Durations are read as seconds (a number) or as Conveyor's
duration text (``90s``, ``15m``, ``2h``, ``7d``) and written as seconds. A page cursor is an
opaque string Conveyor gave out (``conveyor.queue.pages``); anything else is refused with a
422 naming ``cursor``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BeforeValidator, Field, PlainSerializer, WithJsonSchema

from ..durations import parse_duration
from ..errors import InvalidOptionError
from ..queue import pages
from ..queue.filters import JOB_STATES
from ..queue.pages import MAX_CURSOR

MAX_ID = 2**63 - 1  # bigint
MAX_INT = 2**31 - 1  # integer


def _whole_number(value: Any) -> Any:
    """A JSON number with no fraction is an integer (JSON Schema says so: 3.0 is 3); other
    values go on to the integer check unchanged (so true or "3" in a body is refused)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(_whole_number)]

JobId = Annotated[Int, Field(ge=1, le=MAX_ID, description="A job's id.")]
Count = Annotated[Int, Field(ge=0, le=MAX_INT)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,126}$"
QueueName = Annotated[
    str, Field(min_length=1, max_length=127, pattern=NAME_PATTERN, description="A queue's name.")
]
ScheduleName = Annotated[
    str, Field(min_length=1, max_length=127, pattern=NAME_PATTERN, description="A schedule's name.")
]
TaskName = Annotated[str, Field(min_length=1, max_length=200, description="A task's name.")]
Priority = (
    Annotated[Int, Field(ge=0, le=3)] | Literal["critical", "high", "normal", "low"]
)  # 0 is critical, 3 low
MaxAttempts = Annotated[Int, Field(ge=1, le=MAX_INT)]
Text = Annotated[str, Field(max_length=2000)]

MAX_SECONDS = 3650 * 86400.0  # ten years: longer than any wait or retention anyone means
_DURATION_TEXT = r"^\s*([0-9]+(\.[0-9]+)?|\.[0-9]+)\s*[smhdw]?\s*$"


def read_duration(minimum: float = 0.0, maximum: float = MAX_SECONDS) -> BeforeValidator:
    """Reads a duration field: seconds (a number) or text (``90s``, ``2h``), from ``minimum``
    to ``maximum`` seconds, as a timedelta. Goes with :func:`duration_schema` of the same bounds."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("a duration is seconds (a number) or text like 90s, 15m, 2h, 7d")
        if isinstance(value, str):
            try:
                seconds = parse_duration(value, default_unit="s").total_seconds()
            except InvalidOptionError as exc:
                raise ValueError(str(exc)) from None
        else:
            seconds = float(value)
        if not math.isfinite(seconds) or not minimum <= seconds <= maximum:
            raise ValueError(f"a duration is from {minimum:g} to {maximum:g} seconds")
        return timedelta(seconds=seconds)

    return BeforeValidator(check)


def duration_schema(minimum: float = 0.0, maximum: float = MAX_SECONDS) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": minimum, "maximum": maximum},
                {"type": "string", "pattern": _DURATION_TEXT},
            ],
            "description": f"Seconds ({minimum:g} to {maximum:g}), or text like 90s, 15m, 2h, 7d, 2w.",
        }
    )


DurationIn = Annotated[timedelta, read_duration(), duration_schema()]
Seconds = Annotated[
    timedelta,
    PlainSerializer(lambda span: span.total_seconds(), return_type=float),
    WithJsonSchema({"type": "number", "description": "Seconds."}, mode="serialization"),
]


def _rfc3339(value: Any) -> Any:
    """A time is RFC 3339 text with an offset, never a number or digits (which pydantic would
    read as seconds since 1970); read here, so that a body's strict mode takes it."""
    if isinstance(value, str):
        if not _RFC3339.match(value):
            raise ValueError("a time is RFC 3339 with an offset, like 2030-01-01T09:00:00Z")
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("a time is RFC 3339 with an offset, like 2030-01-01T09:00:00Z") from None
    return value


_RFC3339 = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")
Time = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]

# -- states and page cursors -----------------------------------------------------------------

_STATE = "(" + "|".join(JOB_STATES) + ")"
_ENDED = "(completed|cancelled|dead)"
States = Annotated[
    str,
    Field(
        pattern=f"^{_STATE}(,{_STATE})*$", max_length=200, description="A state, or several comma-separated."
    ),
]
EndedStates = Annotated[
    str,
    Field(
        pattern=f"^{_ENDED}(,{_ENDED})*$",
        max_length=100,
        description="completed, cancelled or dead, or several comma-separated.",
    ),
]


def split_states(value: str | None) -> list[str] | None:
    return None if value is None else value.split(",")


Cursor = Annotated[
    str, Field(min_length=1, max_length=MAX_CURSOR, description="next_cursor of the previous page.")
]


def check_cursor(listing: str, cursor: str | None) -> str | None:
    """A page cursor of ``listing``, as Conveyor gave it out; ValueError (a 422 naming the
    parameter) for anything else."""
    if cursor is not None:
        try:
            pages.decode(listing, cursor)
        except InvalidOptionError as exc:
            raise ValueError(str(exc)) from None
    return cursor
