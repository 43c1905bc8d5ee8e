"""Field types the API's models share: ids, names, durations, priorities, page cursors.

Contract: each type validates what a client sends (with the bounds the database has, so
nothing out of range reaches it) and states those bounds in the JSON Schema, so the OpenAPI
document says what is accepted. Durations are read as seconds (a number) or as Conveyor's
duration text (``90s``, ``15m``, ``2h``, ``7d``) and written as seconds. A page cursor is an
opaque string the API gave out; anything else is refused with a 422 naming ``cursor``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

from ..durations import parse_duration
from ..errors import InvalidOptionError
from ..queue.client import JOB_STATES

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
JobState = Literal["available", "scheduled", "running", "blocked", "completed", "cancelled", "dead"]
assert set(JobState.__args__) == set(JOB_STATES)  # type: ignore[attr-defined]
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

# -- page cursors ---------------------------------------------------------------------------

_CURSOR = re.compile(r"j([1-9][0-9]{0,18})")


def encode_cursor(before: int) -> str:
    """The cursor of the page that follows the job ``before`` (ids below it)."""
    return base64.urlsafe_b64encode(f"j{before}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor continues below; ValueError for anything the API did not give out."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    found = _CURSOR.fullmatch(text)
    if found is None or int(found[1]) > MAX_ID:
        raise ValueError("not a cursor this API gave out: pass next_cursor from the previous page")
    return int(found[1])


Cursor = Annotated[
    str,
    Field(max_length=64, description="next_cursor of the previous page."),
]
