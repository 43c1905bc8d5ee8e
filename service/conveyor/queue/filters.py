"""The filters of the job listings, checked: every value a caller can pass is either a filter
the queries can take or an :class:`InvalidOptionError` saying what is wrong with it.

Text filters match exactly (a queue, a task, a limit key, a unique key). Times must carry a
time zone; a range is ``[after, before)``. States are names from :data:`JOB_STATES`. An id
search is text: the digits a job's id starts with (see :func:`id_ranges`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..errors import InvalidOptionError
from ..tasks import check_queue_name
from ..text import unstorable

LIVE_STATES = ("available", "scheduled", "running", "blocked")  # the jobs table
FINISHED_STATES = ("completed", "cancelled")  # job_history
DEAD_STATES = ("dead",)  # dead_jobs
JOB_STATES = LIVE_STATES + FINISHED_STATES + DEAD_STATES
ENDED_STATES = FINISHED_STATES + DEAD_STATES  # what the history holds

MAX_TEXT = 1000  # characters of a task, key or unique key filter
MIN_ID = -(2**63)
MAX_ID = 2**63 - 1
MAX_ID_DIGITS = len(str(MAX_ID))
MAX_SPAN = timedelta(days=36500)  # a hundred years


@dataclass(frozen=True)
class JobFilters:
    """Checked filters; None leaves a filter out."""

    queue: str | None = None
    task: str | None = None
    states: tuple[str, ...] | None = None
    key: str | None = None
    unique_key: str | None = None
    enqueued_after: datetime | None = None
    enqueued_before: datetime | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None

    @classmethod
    def of(
        cls,
        *,
        queue: object = None,
        task: object = None,
        state: object = None,
        key: object = None,
        unique_key: object = None,
        enqueued_after: object = None,
        enqueued_before: object = None,
        finished_after: object = None,
        finished_before: object = None,
        allowed_states: tuple[str, ...] = JOB_STATES,
        finished: str = "finished",
    ) -> JobFilters:
        """``finished``: what the finish-time bounds are called in messages (died, for dead jobs)."""
        enqueued = _range("enqueued", enqueued_after, enqueued_before)
        ended = _range(finished, finished_after, finished_before)
        return cls(
            queue=None if queue is None else check_queue_name(_text("queue", queue) or ""),
            task=_text("task", task),
            states=check_states(state, allowed_states),
            key=_text("key", key),
            unique_key=_text("unique_key", unique_key),
            enqueued_after=enqueued[0],
            enqueued_before=enqueued[1],
            finished_after=ended[0],
            finished_before=ended[1],
        )

    @property
    def finish_bounded(self) -> bool:
        return self.finished_after is not None or self.finished_before is not None

    def reads(self, states: Iterable[str]) -> bool:
        """Whether a table holding jobs in ``states`` can hold a job these filters match."""
        if self.states is not None and not set(self.states) & set(states):
            return False
        # A live job has not finished: a bound on the finish time excludes it.
        return not (self.finish_bounded and set(states) <= set(LIVE_STATES))

    def params(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "task": self.task,
            "states": None if self.states is None else list(self.states),
            "key": self.key,
            "unique_key": self.unique_key,
            "enqueued_after": self.enqueued_after,
            "enqueued_before": self.enqueued_before,
            "finished_after": self.finished_after,
            "finished_before": self.finished_before,
        }


def check_states(state: object, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    """One state or several (a list, a tuple, or names separated by commas), each in ``allowed``."""
    if state is None:
        return None
    if isinstance(state, str):
        names: list[object] = [part.strip() for part in state.split(",")]
    elif isinstance(state, list | tuple | set | frozenset):
        names = list(state)
    else:
        raise InvalidOptionError(f"state must be a state name or a list of them, got {type(state).__name__}")
    if not names:
        raise InvalidOptionError(f"state: name at least one of {', '.join(allowed)}")
    checked: list[str] = []
    for name in names:
        if not isinstance(name, str) or name not in allowed:
            raise InvalidOptionError(f"unknown state {name!r}: use one of {', '.join(allowed)}")
        if name not in checked:
            checked.append(name)
    return tuple(checked)


def check_older_than(older_than: object, what: str = "older_than") -> timedelta:
    """A span of time back from now: a timedelta or seconds, from 0 to MAX_SPAN (further back
    would take the database's clock out of its range)."""
    if isinstance(older_than, bool) or not isinstance(older_than, timedelta | int | float):
        raise InvalidOptionError(f"{what} must be a timedelta or seconds, got {type(older_than).__name__}")
    grace = older_than if isinstance(older_than, timedelta) else _seconds(older_than, what)
    if grace < timedelta(0):
        raise InvalidOptionError(f"{what} must not be negative, got {grace}")
    if grace > MAX_SPAN:
        raise InvalidOptionError(f"{what} must be at most {MAX_SPAN.days} days, got {grace}")
    return grace


def _seconds(value: float, what: str) -> timedelta:
    try:
        return timedelta(seconds=value)
    except (OverflowError, ValueError):
        raise InvalidOptionError(f"{what} is out of range: {value!r}") from None


def id_ranges(search: object) -> list[tuple[int, int]]:
    """The id ranges, highest first, of the jobs whose id written in decimal starts with
    ``search`` (digits, as text; an int is taken as its digits): "42" is 42, 420-429,
    4200-4299 ... up to the largest id. Empty for digits no id starts with ("0", "007")."""
    if isinstance(search, int) and not isinstance(search, bool):
        search = str(search)
    if not isinstance(search, str):
        raise InvalidOptionError(
            f"id must be text (the digits a job id starts with), got {type(search).__name__}"
        )
    digits = search.strip()
    if not digits or not digits.isascii() or not digits.isdigit() or len(digits) > MAX_ID_DIGITS:
        raise InvalidOptionError(
            f"id must be 1 to {MAX_ID_DIGITS} digits (the start of a job id), got {search[:40]!r}"
        )
    if digits.startswith("0"):
        return []
    prefix = int(digits)
    ranges = []
    scale = 1
    while prefix * scale <= MAX_ID:
        ranges.append((prefix * scale, min((prefix + 1) * scale - 1, MAX_ID)))
        scale *= 10
    return ranges[::-1]


def _text(what: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidOptionError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidOptionError(f"{what} must not be empty")
    if (why := unstorable(value)) is not None:
        raise InvalidOptionError(f"{what} cannot be stored: {why}")
    if len(value) > MAX_TEXT:
        raise InvalidOptionError(f"{what} is longer than {MAX_TEXT} characters")
    return value


def _time(what: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidOptionError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidOptionError(f"{what} must carry a time zone (an aware datetime)")
    return value


def _range(name: str, after: object, before: object) -> tuple[datetime | None, datetime | None]:
    start = _time(f"{name}_after", after)
    end = _time(f"{name}_before", before)
    if start is not None and end is not None and start >= end:
        raise InvalidOptionError(
            f"{name}_after must be earlier than {name}_before (the range is [after, before))"
        )
    return start, end
