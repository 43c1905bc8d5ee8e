"""Cron expressions in an IANA time zone: checking them, and finding the next fire time.

Expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds
first (second minute hour day-of-month month day-of-week), as in node-cron and BullMQ, or
are one of @yearly @annually @monthly @weekly @daily @midnight @hourly. A field is ``*`` or a
comma-separated list of ``N``, ``N-M``, ``*/S``, ``N/S`` or ``N-M/S``; months and weekdays may
be named (JAN-DEC, SUN-SAT); Sunday is 0 or 7. When both day fields are restricted, a day
matching either fires (as in every cron). The same grammar is checked in SQL
(``conveyor.check_cron``), so every entry point refuses the same expressions.

Fire times follow the wall clock of the schedule's time zone. Where daylight-saving time
makes the wall clock jump:

- A wall time that does not exist that day (the skipped hour in spring, e.g. 02:30 in New
  York) fires once, shifted forward by the jump: 02:30 fires at 03:30 EDT.
- A wall time that happens twice (the repeated hour in autumn, e.g. 01:30 in New York)
  fires once, the first time (01:30 EDT), when the schedule is pinned to particular hours.
- A schedule whose hour field is ``*`` or ``*/S`` follows real time instead: it fires in
  both passes of a repeated hour, and (there being no such times) not in a skipped one.

croniter does the calendar arithmetic on naive wall times; the time zone is applied here,
so its daylight-saving rules are the ones above.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .errors import InvalidOptionError

SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# (name, lowest, highest, names that may stand for numbers)
FIELDS_6 = [
    ("second", 0, 59, None),
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day-of-month", 1, 31, None),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 7, DAYS),
]
_ITEM = re.compile(r"(?:(\*)|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:/([0-9]{1,6}))?")


def check_timezone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise InvalidOptionError(f"time zone {name!r} is not an IANA time zone name (like Europe/Paris)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidOptionError(
            f"unknown time zone {name!r}: use an IANA name like UTC, Europe/Paris or Australia/Sydney"
        ) from None


def normalize(expression: str) -> tuple[str, bool]:
    """The expression as 6 fields (seconds first), and whether it gave seconds; raises
    InvalidOptionError saying which field is wrong."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidOptionError("cron expression is empty")
    text = " ".join(expression.split())
    text = SHORTHANDS.get(text.lower(), text)
    if text.startswith("@"):
        raise InvalidOptionError(f"unknown cron shorthand {text!r}: use one of {', '.join(SHORTHANDS)}")
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise InvalidOptionError(
            f"cron expression {expression!r} has {len(fields)} fields: give 5 (minute hour day month "
            "weekday) or 6 (second first)"
        )
    with_seconds = len(fields) == 6
    if not with_seconds:
        fields = ["0", *fields]
    values = [_check_field(expression, value, *spec) for value, spec in zip(fields, FIELDS_6, strict=True)]
    days, months = values[3], values[4]
    if fields[5] == "*" and not any(day <= _LONGEST_MONTH[month] for day in days for month in months):
        raise InvalidOptionError(f"cron expression {expression!r} never fires: no month in it has such a day")
    return " ".join(fields), with_seconds


_LONGEST_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


def _check_field(
    expression: str, value: str, name: str, low: int, high: int, names: list[str] | None
) -> set[int]:
    """Check one field; returns the values it allows."""
    allowed: set[int] = set()
    for item in value.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise InvalidOptionError(f"cron expression {expression!r}: {name} field {value!r} is not valid")
        star, start, end, step = match.groups()
        every = int(step) if step is not None else 1
        if every < 1:
            raise InvalidOptionError(f"cron expression {expression!r}: {name} step must be at least 1")
        if star:
            first, last = low, high
        else:
            first = _number(expression, start, name, low, high, names)
            last = first if step is None else high
            if end is not None:
                last = _number(expression, end, name, low, high, names)
                if first > last:
                    raise InvalidOptionError(
                        f"cron expression {expression!r}: {name} range {start}-{end} runs backwards"
                    )
        allowed.update(range(first, last + 1, every))
    return allowed


def _number(expression: str, token: str, name: str, low: int, high: int, names: list[str] | None) -> int:
    if token.isascii() and token.isdigit() and len(token) <= 6:
        number = int(token)
    elif names is not None and token.upper() in names:
        number = names.index(token.upper()) + (1 if names is MONTHS else 0)
    else:
        raise InvalidOptionError(f"cron expression {expression!r}: {name} value {token!r} is not valid")
    if not low <= number <= high:
        raise InvalidOptionError(
            f"cron expression {expression!r}: {name} value {number} is out of range {low}-{high}"
        )
    return number


@dataclass(frozen=True)
class Cron:
    """A checked cron expression in a time zone."""

    expression: str
    timezone: str = "UTC"
    _six: str = field(init=False, repr=False)
    _zone: ZoneInfo = field(init=False, repr=False)
    _follows_real_time: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        six, _ = normalize(self.expression)
        zone = check_timezone(self.timezone)
        hour = six.split(" ")[2]
        object.__setattr__(self, "_six", six)
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_follows_real_time", hour == "*" or hour.startswith("*/"))
        try:
            croniter(six, datetime(2000, 1, 1), second_at_beginning=True).get_next(datetime)
        except Exception as exc:  # the grammar passed; croniter disagrees (e.g. 31 FEB only)
            raise InvalidOptionError(f"cron expression {self.expression!r} never fires: {exc}") from None

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after`` (an aware datetime), in UTC."""
        after = after.astimezone(UTC)
        local = after.astimezone(self._zone)
        second_pass = local.fold == 1 and self._ambiguous(local.replace(tzinfo=None))
        best = self._first_from(local.replace(tzinfo=None, fold=0), after, second_pass)
        if self._follows_real_time:
            # A clock set back between now and the best time repeats wall times that a
            # schedule following real time fires again (the second pass of the hour).
            fall_back = self._fall_back_between(after, best)
            if fall_back is not None:
                second = fall_back.astimezone(self._zone).replace(tzinfo=None, fold=0)
                again = self._first_from(second - timedelta(microseconds=1), after, True)
                best = min(best, again)
        return best

    def fire_times(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Fire times in (after, until], in order."""
        moment = self.next_after(after)
        while moment <= until:
            yield moment
            moment = self.next_after(moment)

    # -- internals ---------------------------------------------------------------------

    def _first_from(self, start: datetime, after: datetime, second_pass: bool) -> datetime:
        candidates = croniter(self._six, start, second_at_beginning=True)
        for _ in range(100_000):
            wall: datetime = candidates.get_next(datetime)
            moment = self._instant(wall, second_pass)
            if moment is not None and moment > after:
                return moment
        raise InvalidOptionError(f"cron expression {self.expression!r} does not fire again")

    def _instant(self, wall: datetime, second_pass: bool) -> datetime | None:
        """The instant a wall time fires at (None if it must not fire)."""
        if second_pass and self._ambiguous(wall):
            if not self._follows_real_time:
                return None  # a pinned time fired in the first pass already
            return wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        # Existing times, first passes, and skipped times (fold=0 reads those with the
        # offset from before the jump: shifted forward by it).
        return wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)

    def _ambiguous(self, wall: datetime) -> bool:
        return (
            wall.replace(tzinfo=self._zone, fold=0).utcoffset()
            != wall.replace(tzinfo=self._zone, fold=1).utcoffset()
        )

    def _fall_back_between(self, after: datetime, until: datetime) -> datetime | None:
        """The instant the clock is set back in (after, until], if it is."""
        before = after.astimezone(self._zone).utcoffset()
        later = until.astimezone(self._zone).utcoffset()
        if before is None or later is None or later >= before:
            return None
        low, high = int(after.timestamp()), int(until.timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, UTC).astimezone(self._zone).utcoffset() == before:
                low = middle
            else:
                high = middle
        return datetime.fromtimestamp(high, UTC)
