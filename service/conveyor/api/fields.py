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

JobId = Annotated[int, Field(ge=1, le=MAX_ID, description="A job's id.")]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
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
    Annotated[int, Field(ge=0, le=3)] | Literal["critical", "high", "normal", "low"]
)  # 0 is critical, 3 low
MaxAttempts = Annotated[int, Field(ge=1, le=MAX_INT)]
Text = Annotated[str, Field(max_length=2000)]

MAX_SECONDS = 3650 * 86400.0  # ten years: longer than any wait or retention anyone means


def _duration(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a duration is seconds (a number) or text like 90s, 15m, 2h, 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value, default_unit="s").total_seconds()
        except InvalidOptionError as exc:
            raise ValueError(str(exc)) from None
    else:
        raise ValueError("a duration is seconds (a number) or text like 90s, 15m, 2h, 7d")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"a duration is from 0 to {MAX_SECONDS:.0f} seconds")
    return timedelta(seconds=seconds)


DurationIn = Annotated[
    timedelta,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
                {"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]+)?|\.[0-9]+)\s*[smhdw]?\s*$"},
            ],
            "description": "Seconds, or text like 90s, 15m, 2h, 7d, 2w.",
        }
    ),
]
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
