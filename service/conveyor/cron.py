"""Cron expressions in an IANA time zone: checking them, and finding the next fire time.

Expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds
first (second minute hour day-of-month month day-of-week), as in node-cron and BullMQ, or
are one of @yearly @annually @monthly @weekly @daily @midnight @hourly. A field is ``*`` or a
comma-separated list of ``N``, ``N-M``, ``*/S``, ``N/S`` (N to the top, every S) or ``N-M/S``;
months and weekdays may be named (JAN-DEC, SUN-SAT); Sunday is 0 or 7. Days follow the
classic cron rule: if either day field starts with ``*`` a day must match both, otherwise a
day matching either fires. The same grammar is checked in SQL (``check_cron``), with the
same messages, so every entry point refuses the same expressions.

Fire times follow the wall clock of the schedule's time zone. Where daylight-saving time
makes the wall clock jump:

- A schedule pinned to particular hours (hour field not ``*`` or ``*/S``) fires a wall time
  that does not exist that day (the skipped hour in spring, e.g. 02:30 in New York) once,
  shifted forward by the jump (02:30 fires at 03:30 EDT); and a wall time that happens twice
  (the repeated hour in autumn, e.g. 01:30 in New York) once, the first time (01:30 EDT).
- A schedule whose hour field is ``*`` or ``*/S`` follows real time: it fires in both passes
  of a repeated hour, and not at all in a skipped one (those times do not exist).

The fields are matched here, on naive wall times, from the sets this module parses; the
time zone is applied afterwards. (An earlier version used croniter; its ranges and steps
disagreed with the grammar we check, e.g. ``5-5`` meant every minute.) cronsim, the maintained
alternative, agrees away from daylight-saving changes but not with the rules above around
them (it loses or doubles fires in some cases): docs/scheduling.md, "Why Conveyor computes
fire times itself", lists the cases, and tests/unit/test_cron_cronsim.py keeps cronsim as an
oracle for the rest.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

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
_SPACE = re.compile(r"[ \t\n\r\f\v]+")  # ASCII whitespace only, as the SQL check splits
_LONGEST_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
# A fire at most this far out is found; further means the expression cannot fire (Feb 29 on
# a given weekday comes round within 28 years).
_HORIZON_DAYS = 366 * 30


def _quoted(text: str) -> str:
    return f"'{text}'"  # as PostgreSQL's RAISE prints it, so both checks say the same


@cache
def _iana_names() -> frozenset[str]:
    return frozenset(available_timezones() - {"localtime"})


def check_timezone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or name not in _iana_names():
        raise InvalidOptionError(
            f"unknown time zone {_quoted(str(name))}: use an IANA name like UTC, Europe/Paris or Australia/Sydney"
        )
    return ZoneInfo(name)


@dataclass(frozen=True)
class Fields:
    """The values each field allows, as parsed."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_star: bool  # the day-of-month field starts with *
    weekday_star: bool

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = day.isoweekday() % 7 in self.weekdays
        if self.day_star or self.weekday_star:
            return in_days and in_weekdays
        return in_days or in_weekdays


def normalize(expression: str) -> tuple[str, bool]:
    """The expression as 6 fields (seconds first), and whether it gave seconds; raises
    InvalidOptionError saying which field is wrong."""
    text, with_seconds, _ = _parse(expression)
    return text, with_seconds


def _parse(expression: str) -> tuple[str, bool, Fields]:
    if not isinstance(expression, str):
        raise InvalidOptionError("cron expression is empty")
    text = _SPACE.sub(" ", expression).strip(" ")
    if not text:
        raise InvalidOptionError("cron expression is empty")
    text = SHORTHANDS.get(text.lower(), text)
    if text.startswith("@"):
        raise InvalidOptionError(
            f"unknown cron shorthand {_quoted(text)}: use one of {', '.join(SHORTHANDS)}"
        )
    parts = text.split(" ")
    if len(parts) not in (5, 6):
        raise InvalidOptionError(
            f"cron expression {_quoted(expression)} has {len(parts)} fields: give 5 (minute hour day month "
            "weekday) or 6 (second first)"
        )
    with_seconds = len(parts) == 6
    if not with_seconds:
        parts = ["0", *parts]
    values = [_check_field(expression, value, *spec) for value, spec in zip(parts, FIELDS_6, strict=True)]
    fields = Fields(
        seconds=tuple(sorted(values[0])),
        minutes=tuple(sorted(values[1])),
        hours=tuple(sorted(values[2])),
        days=frozenset(values[3]),
        months=frozenset(values[4]),
        weekdays=frozenset(v % 7 for v in values[5]),
        day_star=parts[3].startswith("*"),
        weekday_star=parts[5].startswith("*"),
    )
    and_days = fields.day_star or fields.weekday_star
    if and_days and not any(d <= _LONGEST_MONTH[m] for d in fields.days for m in fields.months):
        raise InvalidOptionError(
            f"cron expression {_quoted(expression)} never fires: no month in it has such a day"
        )
    return " ".join(parts), with_seconds, fields


def _check_field(
    expression: str, value: str, name: str, low: int, high: int, names: list[str] | None
) -> set[int]:
    """Check one field; returns the values it allows."""
    allowed: set[int] = set()
    for item in value.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise InvalidOptionError(
                f"cron expression {_quoted(expression)}: {name} field {_quoted(value)} is not valid"
            )
        star, start, end, step = match.groups()
        every = int(step) if step is not None else 1
        if every < 1:
            raise InvalidOptionError(f"cron expression {_quoted(expression)}: {name} step must be at least 1")
        if star:
            first, last = low, high
        else:
            first = _number(expression, start, name, low, high, names)
            last = first if step is None else high
            if end is not None:
                last = _number(expression, end, name, low, high, names)
                if first > last:
                    raise InvalidOptionError(
                        f"cron expression {_quoted(expression)}: {name} range {start}-{end} runs backwards"
                    )
        allowed.update(range(first, last + 1, every))
    return allowed


def _number(expression: str, token: str, name: str, low: int, high: int, names: list[str] | None) -> int:
    if token.isascii() and token.isdigit() and len(token) <= 6:
        number = int(token)
    elif names is not None and token.upper() in names:
        number = names.index(token.upper()) + (1 if names is MONTHS else 0)
    else:
        raise InvalidOptionError(
            f"cron expression {_quoted(expression)}: {name} value {_quoted(token)} is not valid"
        )
    if not low <= number <= high:
        raise InvalidOptionError(
            f"cron expression {_quoted(expression)}: {name} value {number} is out of range {low}-{high}"
        )
    return number


def _next_wall(fields: Fields, start: datetime) -> datetime:
    """The first naive wall time strictly after ``start`` that the fields allow."""
    moment = start.replace(microsecond=0) + timedelta(seconds=1)
    day, floor = moment.date(), moment.time()
    for _ in range(_HORIZON_DAYS):
        if fields.day_matches(day):
            at = _first_time(fields, floor)
            if at is not None:
                return datetime.combine(day, at)
        day, floor = day + timedelta(days=1), time(0, 0, 0)
    raise InvalidOptionError("the cron expression does not fire again")


def _first_time(fields: Fields, floor: time) -> time | None:
    """The earliest time of day at or after ``floor`` that the fields allow."""
    for hour in fields.hours[bisect_left(fields.hours, floor.hour) :]:
        minutes = (
            fields.minutes
            if hour > floor.hour
            else fields.minutes[bisect_left(fields.minutes, floor.minute) :]
        )
        for minute in minutes:
            if hour > floor.hour or minute > floor.minute:
                return time(hour, minute, fields.seconds[0])
            index = bisect_left(fields.seconds, floor.second)
            if index < len(fields.seconds):
                return time(hour, minute, fields.seconds[index])
    return None


@dataclass(frozen=True)
class Cron:
    """A checked cron expression in a time zone."""

    expression: str
    timezone: str = "UTC"
    _fields: Fields = field(init=False, repr=False)
    _zone: ZoneInfo = field(init=False, repr=False)
    _follows_real_time: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        six, _, fields = _parse(self.expression)
        hour = six.split(" ")[2]
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_zone", check_timezone(self.timezone))
        object.__setattr__(self, "_follows_real_time", hour == "*" or hour.startswith("*/"))

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after`` (an aware datetime), in UTC."""
        after = after.astimezone(UTC)
        local = after.astimezone(self._zone)
        start = local.replace(tzinfo=None, fold=0)
        second_pass = local.fold == 1 and self._repeated(start)
        if not self._follows_real_time:
            # Wall times the clock jumped over not long ago still fire (shifted forward),
            # though they read earlier than the wall clock now does: look back over them.
            earlier = after - _LOOK_BACK
            if _offset(self._zone, earlier) < _offset(self._zone, after):
                start = earlier.astimezone(self._zone).replace(tzinfo=None, fold=0)
        best = self._first_from(start, after, second_pass)
        if self._follows_real_time:
            # A clock set back between now and the best time repeats wall times that a
            # schedule following real time fires again (the second pass of the hour).
            fall_back = self._fall_back_between(after, best)
            if fall_back is not None:
                second = fall_back.astimezone(self._zone).replace(tzinfo=None, fold=0)
                again = self._first_from(second - timedelta(seconds=1), after, True)
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
        wall = start
        for _ in range(100_000):
            wall = _next_wall(self._fields, wall)
            moment = self._instant(wall, second_pass)
            if moment is not None and moment > after:
                return moment
        raise InvalidOptionError(f"cron expression {_quoted(self.expression)} does not fire again")

    def _instant(self, wall: datetime, second_pass: bool) -> datetime | None:
        """The instant a wall time fires at (None if it must not fire)."""
        first = wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)
        if first.astimezone(self._zone).replace(tzinfo=None) != wall:
            # The clock jumped over this wall time. fold=0 reads it with the offset from
            # before the jump: shifted forward by the jump, which is when a pinned time fires.
            return None if self._follows_real_time else first
        if self._repeated(wall):
            if not second_pass:
                return first  # the first pass
            if not self._follows_real_time:
                return None  # a pinned time fired in the first pass already
            return wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        return first

    def _repeated(self, wall: datetime) -> bool:
        """Whether the clock shows this wall time twice (a time in a gap also has two offsets,
        PEP 495, so test for that first)."""
        first = wall.replace(tzinfo=self._zone, fold=0)
        second = wall.replace(tzinfo=self._zone, fold=1)
        return first.utcoffset() != second.utcoffset() and (
            first.astimezone(UTC).astimezone(self._zone).replace(tzinfo=None) == wall
        )

    def _fall_back_between(self, after: datetime, until: datetime) -> datetime | None:
        """The instant the clock is set back in (after, until], if it is."""
        before, later = _offset(self._zone, after), _offset(self._zone, until)
        if later >= before:
            return None
        low, high = int(after.timestamp()), int(until.timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if _offset(self._zone, datetime.fromtimestamp(middle, UTC)) == before:
                low = middle
            else:
                high = middle
        return datetime.fromtimestamp(high, UTC)


# Longer than any daylight-saving jump there is (two hours at most).
_LOOK_BACK = timedelta(hours=3)


def _offset(zone: ZoneInfo, moment: datetime) -> timedelta:
    offset = moment.astimezone(zone).utcoffset()
    return offset if offset is not None else timedelta(0)
