"""conveyor.cron: the grammar (what is accepted, and the exact message for what is not), the
next fire time, and the daylight-saving rules documented at the top of the module, checked
over every day of 2026 with the clock given as the ``after`` argument.

Expected fire times are worked out here from the calendar and ``zoneinfo`` (never from
croniter or from ``conveyor.cron`` itself), so a wrong computation cannot agree with itself.
The tables ``VALID_CRON``, ``INVALID_CRON``, ``VALID_ZONES`` and ``INVALID_ZONES`` are also
checked against the SQL functions in tests/integration/test_cron_sql_conformance.py.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conveyor.cron import Cron, check_timezone, normalize
from conveyor.errors import InvalidOptionError

NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
MICRO = timedelta(microseconds=1)

# -- the grammar ------------------------------------------------------------------------------

# (expression, the 6 fields normalize() gives back, whether seconds were given)
VALID_CRON: list[tuple[str, str, bool]] = [
    ("* * * * *", "0 * * * * *", False),
    ("0 0 * * *", "0 0 0 * * *", False),
    ("*/15 * * * *", "0 */15 * * * *", False),
    ("30 2 * * *", "0 30 2 * * *", False),
    ("0 8 * * *", "0 0 8 * * *", False),
    ("5,10,15-20 * * * *", "0 5,10,15-20 * * * *", False),
    ("0-59/5 * * * *", "0 0-59/5 * * * *", False),
    ("10/20 * * * *", "0 10/20 * * * *", False),
    ("10-40/10 9-17 * * 1-5", "0 10-40/10 9-17 * * 1-5", False),
    ("007 * * * *", "0 007 * * * *", False),
    ("59 23 31 12 *", "0 59 23 31 12 *", False),
    ("0 0 1,15 * *", "0 0 0 1,15 * *", False),
    ("0 0 1-31/2 */3 *", "0 0 0 1-31/2 */3 *", False),
    ("0 0 29 2 *", "0 0 0 29 2 *", False),  # leap years have it
    ("0 0 31 1,2 *", "0 0 0 31 1,2 *", False),  # January has a 31st
    ("0 0 31 2 1", "0 0 0 31 2 1", False),  # weekdays restricted: Mondays of February
    # Names, in any case, alone, in ranges, lists and with steps.
    ("0 12 * JAN-MAR *", "0 0 12 * JAN-MAR *", False),
    ("0 12 * jan,Jun,DEC *", "0 0 12 * jan,Jun,DEC *", False),
    ("0 12 * FEB/2 *", "0 0 12 * FEB/2 *", False),
    ("0 12 * * MON-FRI", "0 0 12 * * MON-FRI", False),
    ("0 12 * * sun,Sat", "0 0 12 * * sun,Sat", False),
    ("0 12 * * SUN-SAT", "0 0 12 * * SUN-SAT", False),
    ("0 12 * * mon-Fri/2", "0 0 12 * * mon-Fri/2", False),
    # Sunday is 0 and 7.
    ("0 12 * * 0", "0 0 12 * * 0", False),
    ("0 12 * * 7", "0 0 12 * * 7", False),
    ("0 12 * * 0,7", "0 0 12 * * 0,7", False),
    ("0 12 * * 5-7", "0 0 12 * * 5-7", False),
    # Six fields: seconds first.
    ("* * * * * *", "* * * * * *", True),
    ("*/10 * * * * *", "*/10 * * * * *", True),
    ("30 0 8 * * *", "30 0 8 * * *", True),
    ("0 0 0 1 1 *", "0 0 0 1 1 *", True),
    ("59 59 23 * * SUN", "59 59 23 * * SUN", True),
    # Whitespace is not significant.
    ("  0   0 * * *  ", "0 0 0 * * *", False),
    ("0\t0 * *\n*", "0 0 0 * * *", False),
    # Every shorthand, in any case.
    ("@yearly", "0 0 0 1 1 *", False),
    ("@annually", "0 0 0 1 1 *", False),
    ("@monthly", "0 0 0 1 * *", False),
    ("@weekly", "0 0 0 * * 0", False),
    ("@daily", "0 0 0 * * *", False),
    ("@midnight", "0 0 0 * * *", False),
    ("@hourly", "0 0 * * * *", False),
    ("@HOURLY", "0 0 * * * *", False),
    ("@Daily", "0 0 0 * * *", False),
    (" @weekly ", "0 0 0 * * 0", False),
]

_FIELDS = "give 5 (minute hour day month weekday) or 6 (second first)"
_SHORTHANDS = "use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"

# (expression, the message it is refused with)
INVALID_CRON: list[tuple[str, str]] = [
    ("", "cron expression is empty"),
    ("   ", "cron expression is empty"),
    ("0", f"cron expression '0' has 1 fields: {_FIELDS}"),
    ("* * * *", f"cron expression '* * * *' has 4 fields: {_FIELDS}"),
    ("* * * * * * *", f"cron expression '* * * * * * *' has 7 fields: {_FIELDS}"),
    ("@every 5m", f"unknown cron shorthand '@every 5m': {_SHORTHANDS}"),
    ("@reboot", f"unknown cron shorthand '@reboot': {_SHORTHANDS}"),
    ("@hourly *", f"unknown cron shorthand '@hourly *': {_SHORTHANDS}"),
    # Out of range, per field (5 and 6 fields).
    ("60 * * * *", "cron expression '60 * * * *': minute value 60 is out of range 0-59"),
    ("0 24 * * *", "cron expression '0 24 * * *': hour value 24 is out of range 0-23"),
    ("0 0 0 * *", "cron expression '0 0 0 * *': day-of-month value 0 is out of range 1-31"),
    ("0 0 32 * *", "cron expression '0 0 32 * *': day-of-month value 32 is out of range 1-31"),
    ("0 0 * 0 *", "cron expression '0 0 * 0 *': month value 0 is out of range 1-12"),
    ("0 0 * 13 *", "cron expression '0 0 * 13 *': month value 13 is out of range 1-12"),
    ("0 0 * * 8", "cron expression '0 0 * * 8': day-of-week value 8 is out of range 0-7"),
    ("0 0-60 * * *", "cron expression '0 0-60 * * *': hour value 60 is out of range 0-23"),
    ("60 * * * * *", "cron expression '60 * * * * *': second value 60 is out of range 0-59"),
    ("0 60 * * * *", "cron expression '0 60 * * * *': minute value 60 is out of range 0-59"),
    # Ranges that run backwards, and steps of 0.
    ("30-10 * * * *", "cron expression '30-10 * * * *': minute range 30-10 runs backwards"),
    ("0 0 * DEC-JAN *", "cron expression '0 0 * DEC-JAN *': month range DEC-JAN runs backwards"),
    ("0 0 * * FRI-MON", "cron expression '0 0 * * FRI-MON': day-of-week range FRI-MON runs backwards"),
    ("0 0 * * MON-SUN", "cron expression '0 0 * * MON-SUN': day-of-week range MON-SUN runs backwards"),
    ("*/0 * * * *", "cron expression '*/0 * * * *': minute step must be at least 1"),
    ("0 0/0 * * *", "cron expression '0 0/0 * * *': hour step must be at least 1"),
    ("0 0 1-5/00 * *", "cron expression '0 0 1-5/00 * *': day-of-month step must be at least 1"),
    # Unknown names, and names where none are allowed.
    ("0 0 * * MONDAY", "cron expression '0 0 * * MONDAY': day-of-week value 'MONDAY' is not valid"),
    ("0 0 * JANUARY *", "cron expression '0 0 * JANUARY *': month value 'JANUARY' is not valid"),
    ("0 0 * * JAN", "cron expression '0 0 * * JAN': day-of-week value 'JAN' is not valid"),
    ("0 0 * SUN *", "cron expression '0 0 * SUN *': month value 'SUN' is not valid"),
    ("0 0 MON * *", "cron expression '0 0 MON * *': day-of-month value 'MON' is not valid"),
    ("MON * * * *", "cron expression 'MON * * * *': minute value 'MON' is not valid"),
    ("a b c d e", "cron expression 'a b c d e': minute value 'a' is not valid"),
    ("0 0 L * *", "cron expression '0 0 L * *': day-of-month value 'L' is not valid"),
    # Never fires.
    ("0 0 31 2 *", "cron expression '0 0 31 2 *' never fires: no month in it has such a day"),
    ("0 0 30 2 *", "cron expression '0 0 30 2 *' never fires: no month in it has such a day"),
    ("0 0 30,31 FEB *", "cron expression '0 0 30,31 FEB *' never fires: no month in it has such a day"),
    (
        "0 0 31 4,6,9,11 *",
        "cron expression '0 0 31 4,6,9,11 *' never fires: no month in it has such a day",
    ),
    # Garbage.
    ("1,,2 * * * *", "cron expression '1,,2 * * * *': minute field '1,,2' is not valid"),
    ("-1 * * * *", "cron expression '-1 * * * *': minute field '-1' is not valid"),
    ("5- * * * *", "cron expression '5- * * * *': minute field '5-' is not valid"),
    ("*/ * * * *", "cron expression '*/ * * * *': minute field '*/' is not valid"),
    ("** * * * *", "cron expression '** * * * *': minute field '**' is not valid"),
    ("*-5 * * * *", "cron expression '*-5 * * * *': minute field '*-5' is not valid"),
    ("1-2-3 * * * *", "cron expression '1-2-3 * * * *': minute field '1-2-3' is not valid"),
    ("0 0 ? * MON", "cron expression '0 0 ? * MON': day-of-month field '?' is not valid"),
    ("0 0 * * 1#2", "cron expression '0 0 * * 1#2': day-of-week field '1#2' is not valid"),
    ("0 0 * * 5L", "cron expression '0 0 * * 5L': day-of-week value '5L' is not valid"),
    ("0 0 * * é", "cron expression '0 0 * * é': day-of-week field 'é' is not valid"),
    ("0 0 * * ７", "cron expression '0 0 * * ７': day-of-week field '７' is not valid"),  # noqa: RUF001
    ("0 0 * * 1;", "cron expression '0 0 * * 1;': day-of-week field '1;' is not valid"),
    ("1000000 * * * *", "cron expression '1000000 * * * *': minute value '1000000' is not valid"),
    ("*/1000000 * * * *", "cron expression '*/1000000 * * * *': minute field '*/1000000' is not valid"),
]

VALID_ZONES = [
    "UTC",
    "Etc/UTC",
    "GMT",
    "Etc/GMT+5",
    "Europe/Paris",
    "America/New_York",
    "America/Argentina/Buenos_Aires",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "US/Eastern",
    "EST5EDT",
]

_UNKNOWN = "use an IANA name like UTC, Europe/Paris or Australia/Sydney"

INVALID_ZONES: list[tuple[str, str]] = [
    ("Mars/Olympus_Mons", f"unknown time zone 'Mars/Olympus_Mons': {_UNKNOWN}"),
    ("europe/paris", f"unknown time zone 'europe/paris': {_UNKNOWN}"),
    ("Europe/Paris ", f"unknown time zone 'Europe/Paris ': {_UNKNOWN}"),
    ("UTC+2", f"unknown time zone 'UTC+2': {_UNKNOWN}"),
    ("+05:30", f"unknown time zone '+05:30': {_UNKNOWN}"),
    ("Europe", f"unknown time zone 'Europe': {_UNKNOWN}"),  # a folder of the database
    ("Etc", f"unknown time zone 'Etc': {_UNKNOWN}"),
    ("zone.tab", f"unknown time zone 'zone.tab': {_UNKNOWN}"),  # a file of the database, not a zone
    # Paths, and the database's aliases, get the same answer as in SQL.
    ("", f"unknown time zone '': {_UNKNOWN}"),
    ("/etc/passwd", f"unknown time zone '/etc/passwd': {_UNKNOWN}"),
    ("../../etc/passwd", f"unknown time zone '../../etc/passwd': {_UNKNOWN}"),
    ("Europe/../UTC", f"unknown time zone 'Europe/../UTC': {_UNKNOWN}"),
    ("localtime", f"unknown time zone 'localtime': {_UNKNOWN}"),
    ("posix/Europe/Paris", f"unknown time zone 'posix/Europe/Paris': {_UNKNOWN}"),
    ("right/UTC", f"unknown time zone 'right/UTC': {_UNKNOWN}"),
]


@pytest.mark.parametrize(("expression", "six", "with_seconds"), VALID_CRON)
def test_valid_expressions_are_normalized_to_six_fields(
    expression: str, six: str, with_seconds: bool
) -> None:
    assert normalize(expression) == (six, with_seconds)
    Cron(expression, "Europe/Paris").next_after(datetime(2026, 1, 1, tzinfo=UTC))  # and it fires


@pytest.mark.parametrize(("expression", "message"), INVALID_CRON)
def test_invalid_expressions_are_refused_with_a_clear_message(expression: str, message: str) -> None:
    with pytest.raises(InvalidOptionError) as normalizing:
        normalize(expression)
    assert str(normalizing.value) == message
    with pytest.raises(InvalidOptionError) as constructing:
        Cron(expression, "UTC")
    assert str(constructing.value) == message


def test_an_expression_that_is_not_text_is_refused_as_empty() -> None:
    for value in (None, 5):
        with pytest.raises(InvalidOptionError, match=r"^cron expression is empty$"):
            normalize(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("zone", VALID_ZONES)
def test_iana_time_zones_are_accepted(zone: str) -> None:
    assert check_timezone(zone) == ZoneInfo(zone)
    assert Cron("0 8 * * *", zone).timezone == zone


@pytest.mark.parametrize(("zone", "message"), INVALID_ZONES)
def test_unknown_time_zones_are_refused_with_a_clear_message(zone: str, message: str) -> None:
    with pytest.raises(InvalidOptionError) as checking:
        check_timezone(zone)
    assert str(checking.value) == message
    with pytest.raises(InvalidOptionError) as constructing:
        Cron("0 8 * * *", zone)
    assert str(constructing.value) == message


# -- next_after -------------------------------------------------------------------------------


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_next_after_is_strictly_after() -> None:
    hourly = Cron("0 * * * *")
    assert hourly.next_after(utc(2026, 5, 4, 10)) == utc(2026, 5, 4, 11)
    assert hourly.next_after(utc(2026, 5, 4, 10) - MICRO) == utc(2026, 5, 4, 10)
    assert hourly.next_after(utc(2026, 5, 4, 10) + MICRO) == utc(2026, 5, 4, 11)
    every_second = Cron("* * * * * *")
    assert every_second.next_after(utc(2026, 5, 4, 10)) == utc(2026, 5, 4, 10, 0, 1)


def test_next_after_gives_utc_whatever_zone_it_is_given() -> None:
    paris = ZoneInfo("Europe/Paris")
    moment = Cron("0 8 * * *", "Australia/Sydney").next_after(datetime(2026, 7, 1, 9, tzinfo=paris))
    assert moment == utc(2026, 7, 1, 22)  # 08:00 AEST on 2 July
    assert moment.utcoffset() == timedelta(0)
    assert moment.tzinfo is UTC


def test_six_fields_fire_on_their_seconds() -> None:
    every_20_s = Cron("*/20 * * * * *")
    start = utc(2026, 5, 4, 10, 0, 0)
    assert list(every_20_s.fire_times(start, start + timedelta(minutes=1))) == [
        start + timedelta(seconds=s) for s in (20, 40, 60)
    ]
    assert Cron("30 0 8 * * *").next_after(utc(2026, 5, 4, 8)) == utc(2026, 5, 4, 8, 0, 30)
    assert Cron("30 0 8 * * *").next_after(utc(2026, 5, 4, 8, 0, 30)) == utc(2026, 5, 5, 8, 0, 30)
    assert Cron("15,45 * * * * *").next_after(utc(2026, 5, 4, 8, 0, 15)) == utc(2026, 5, 4, 8, 0, 45)


@pytest.mark.parametrize(
    ("expression", "first_three"),
    [
        # 2026-05-04 10:17 UTC is a Monday.
        ("@hourly", [utc(2026, 5, 4, 11), utc(2026, 5, 4, 12), utc(2026, 5, 4, 13)]),
        ("@daily", [utc(2026, 5, 5), utc(2026, 5, 6), utc(2026, 5, 7)]),
        ("@midnight", [utc(2026, 5, 5), utc(2026, 5, 6), utc(2026, 5, 7)]),
        ("@weekly", [utc(2026, 5, 10), utc(2026, 5, 17), utc(2026, 5, 24)]),  # Sundays
        ("@monthly", [utc(2026, 6, 1), utc(2026, 7, 1), utc(2026, 8, 1)]),
        ("@yearly", [utc(2027, 1, 1), utc(2028, 1, 1), utc(2029, 1, 1)]),
        ("@annually", [utc(2027, 1, 1), utc(2028, 1, 1), utc(2029, 1, 1)]),
        ("0 0 29 2 *", [utc(2028, 2, 29), utc(2032, 2, 29), utc(2036, 2, 29)]),
        ("0 9 * * MON-FRI", [utc(2026, 5, 5, 9), utc(2026, 5, 6, 9), utc(2026, 5, 7, 9)]),
        ("0 12 * * 7", [utc(2026, 5, 10, 12), utc(2026, 5, 17, 12), utc(2026, 5, 24, 12)]),
        ("0 12 * * 0", [utc(2026, 5, 10, 12), utc(2026, 5, 17, 12), utc(2026, 5, 24, 12)]),
        ("0 0 1 */5 *", [utc(2026, 6, 1), utc(2026, 11, 1), utc(2027, 1, 1)]),
    ],
)
def test_next_after_for_shorthands_and_calendars(expression: str, first_three: list[datetime]) -> None:
    cron = Cron(expression)
    moment = utc(2026, 5, 4, 10, 17)
    got = []
    for _ in range(3):
        moment = cron.next_after(moment)
        got.append(moment)
    assert got == first_three


def _days(expression: str, start: date, end: date) -> list[int]:
    """The days of the month the expression fires on (at 12:00 UTC) from start to end."""
    cron = Cron(expression)
    after = datetime.combine(start, time(), UTC)
    until = datetime.combine(end, time(23, 59), UTC)
    fires = list(cron.fire_times(after, until))
    assert all(f.time() == time(12) for f in fires)
    return [f.day for f in fires]


def test_day_of_month_and_day_of_week_restricted_together_fire_on_either() -> None:
    # January 2026: the Fridays are the 2nd, 9th, 16th, 23rd and 30th; the 13th is a Tuesday.
    jan_1, jan_31 = date(2026, 1, 1), date(2026, 1, 31)
    assert _days("0 12 13 * FRI", jan_1, jan_31) == [2, 9, 13, 16, 23, 30]
    assert _days("0 12 13 * *", jan_1, jan_31) == [13]
    assert _days("0 12 * * FRI", jan_1, jan_31) == [2, 9, 16, 23, 30]
    assert _days("0 12 1,15 * 0", jan_1, jan_31) == [1, 4, 11, 15, 18, 25]  # Sundays: 4 11 18 25
    assert _days("0 12 1,15 * 7", jan_1, jan_31) == [1, 4, 11, 15, 18, 25]
    # Weekdays restricted to one month: Mondays of February, and never the 31st.
    assert _days("0 12 31 2 1", date(2026, 1, 1), date(2026, 3, 31)) == [2, 9, 16, 23]


# -- daylight-saving time, over every day of 2026 ---------------------------------------------


def _local_year(zone: ZoneInfo) -> tuple[datetime, datetime]:
    """(after, until) covering every local day of 2026 in the zone."""
    return datetime(2026, 1, 1, tzinfo=zone) - MICRO, datetime(2027, 1, 1, tzinfo=zone) - MICRO


def _year_of_fires(expression: str, zone: ZoneInfo) -> list[datetime]:
    fires = list(Cron(expression, str(zone)).fire_times(*_local_year(zone)))
    assert all(a < b for a, b in pairwise(fires)), "fire times must strictly increase"
    assert all(f.tzinfo is UTC for f in fires)
    return fires


def _every_day_of_2026() -> list[date]:
    return [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]


def _at_wall_time(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The first instant the zone's clock shows ``wall`` on ``day`` (the first pass of a
    repeated time). Only for wall times that exist that day."""
    moment = datetime.combine(day, wall, zone)
    assert moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == moment.replace(tzinfo=None), (
        f"{day} {wall} does not exist in {zone}"
    )
    return moment.astimezone(UTC)


def test_sydney_0800_fires_every_day_of_2026_at_0800_local() -> None:
    fires = _year_of_fires("0 8 * * *", SYDNEY)
    assert len(fires) == 365
    assert [f.astimezone(SYDNEY).date() for f in fires] == _every_day_of_2026()
    assert {f.astimezone(SYDNEY).time() for f in fires} == {time(8)}
    assert fires == [_at_wall_time(d, time(8), SYDNEY) for d in _every_day_of_2026()]
    # 21:00 UTC (the day before) under AEDT (+11), 22:00 UTC under AEST (+10). AEDT ends at
    # 03:00 on 5 April and starts at 02:00 on 4 October, both before 08:00.
    by_utc_hour = Counter(f.hour for f in fires)
    assert by_utc_hour == {21: 94 + 89, 22: 182}
    assert fires[0] == utc(2025, 12, 31, 21)
    assert {utc(2026, 4, 3, 21), utc(2026, 4, 4, 22)} <= set(fires)  # 4 and 5 April
    assert {utc(2026, 10, 2, 22), utc(2026, 10, 3, 21)} <= set(fires)  # 3 and 4 October
    assert fires[-1] == utc(2026, 12, 30, 21)


def test_new_york_0230_fires_every_day_and_at_0330_edt_on_the_spring_forward_day() -> None:
    fires = _year_of_fires("30 2 * * *", NEW_YORK)
    assert len(fires) == 365
    assert [f.astimezone(NEW_YORK).date() for f in fires] == _every_day_of_2026()
    spring = date(2026, 3, 8)  # 02:00 EST -> 03:00 EDT: 02:30 does not exist
    shifted = [f for f in fires if f.astimezone(NEW_YORK).date() == spring]
    assert shifted == [utc(2026, 3, 8, 7, 30)]  # 03:30 EDT, once
    assert shifted[0].astimezone(NEW_YORK).time() == time(3, 30)
    assert shifted[0].astimezone(NEW_YORK).utcoffset() == timedelta(hours=-4)
    others = [f for f in fires if f.astimezone(NEW_YORK).date() != spring]
    assert {f.astimezone(NEW_YORK).time() for f in others} == {time(2, 30)}
    assert others == [_at_wall_time(d, time(2, 30), NEW_YORK) for d in _every_day_of_2026() if d != spring]
    # The day before and after: 02:30 EST (07:30 UTC) and 02:30 EDT (06:30 UTC).
    assert {utc(2026, 3, 7, 7, 30), utc(2026, 3, 9, 6, 30)} <= set(fires)
    assert utc(2026, 3, 8, 6, 30) not in fires  # no fire an hour early either


def test_new_york_0130_fires_once_on_the_fall_back_day_at_0130_edt() -> None:
    fires = _year_of_fires("30 1 * * *", NEW_YORK)
    assert len(fires) == 365
    assert [f.astimezone(NEW_YORK).date() for f in fires] == _every_day_of_2026()
    assert {f.astimezone(NEW_YORK).time() for f in fires} == {time(1, 30)}
    autumn = date(2026, 11, 1)  # 02:00 EDT -> 01:00 EST: 01:30 happens twice
    that_day = [f for f in fires if f.astimezone(NEW_YORK).date() == autumn]
    assert that_day == [utc(2026, 11, 1, 5, 30)]  # 01:30 EDT, the first time
    assert utc(2026, 11, 1, 6, 30) not in fires  # not again at 01:30 EST
    assert fires == [_at_wall_time(d, time(1, 30), NEW_YORK) for d in _every_day_of_2026()]


def test_asked_during_the_repeated_hour_a_pinned_time_does_not_fire_again() -> None:
    cron = Cron("30 1 * * *", "America/New_York")
    assert cron.next_after(utc(2026, 11, 1, 5, 30) - MICRO) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert cron.next_after(utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 2, 6, 30)
    # From 01:00 EST (06:00 UTC), the second pass of the hour: 01:30 has fired already.
    assert cron.next_after(utc(2026, 11, 1, 6)) == utc(2026, 11, 2, 6, 30)


def test_asked_after_the_jump_a_skipped_time_still_fires_at_its_shifted_time() -> None:
    # 02:30 fires at 03:30 EDT (07:30 UTC). Asked at 03:00 EDT (07:00 UTC) -- a schedule
    # created, changed or resumed then -- that fire is still half an hour ahead.
    cron = Cron("30 2 * * *", "America/New_York")
    assert cron.next_after(utc(2026, 3, 8, 6, 59)) == utc(2026, 3, 8, 7, 30)  # 01:59 EST
    assert cron.next_after(utc(2026, 3, 8, 7)) == utc(2026, 3, 8, 7, 30)  # 03:00 EDT
    assert cron.next_after(utc(2026, 3, 8, 7, 29)) == utc(2026, 3, 8, 7, 30)  # 03:29 EDT
    assert cron.next_after(utc(2026, 3, 8, 7, 30)) == utc(2026, 3, 9, 6, 30)


def _steps(fires: list[datetime]) -> set[timedelta]:
    return {b - a for a, b in pairwise(fires)}


def _local_hours(fires: list[datetime], zone: ZoneInfo, day: date) -> Counter[int]:
    return Counter(f.astimezone(zone).hour for f in fires if f.astimezone(zone).date() == day)


def test_hourly_in_new_york_follows_real_time_for_the_whole_year() -> None:
    fires = _year_of_fires("@hourly", NEW_YORK)
    # 2026 in New York: 8760 real hours (the hour lost in March is given back in November).
    assert len(fires) == len(set(fires)) == 8760
    assert _steps(fires) == {timedelta(hours=1)}
    assert fires[0] == utc(2026, 1, 1, 5)
    # Fall back: 01:00 EDT (05:00 UTC) and 01:00 EST (06:00 UTC) both fire.
    autumn = [f for f in fires if utc(2026, 11, 1, 3) <= f <= utc(2026, 11, 1, 8)]
    assert autumn == [utc(2026, 11, 1, h) for h in (3, 4, 5, 6, 7, 8)]
    assert [f.astimezone(NEW_YORK).strftime("%H:%M %Z") for f in autumn] == [
        "23:00 EDT",
        "00:00 EDT",
        "01:00 EDT",
        "01:00 EST",
        "02:00 EST",
        "03:00 EST",
    ]
    assert _local_hours(fires, NEW_YORK, date(2026, 11, 1))[1] == 2
    assert sum(_local_hours(fires, NEW_YORK, date(2026, 11, 1)).values()) == 25
    # Spring forward: nothing at 02:xx local (there is no such time); 01:00 EST then 03:00 EDT.
    spring = [f for f in fires if utc(2026, 3, 8, 5) <= f <= utc(2026, 3, 8, 8)]
    assert spring == [utc(2026, 3, 8, h) for h in (5, 6, 7, 8)]
    assert [f.astimezone(NEW_YORK).strftime("%H:%M %Z") for f in spring] == [
        "00:00 EST",
        "01:00 EST",
        "03:00 EDT",
        "04:00 EDT",
    ]
    assert 2 not in _local_hours(fires, NEW_YORK, date(2026, 3, 8))
    assert sum(_local_hours(fires, NEW_YORK, date(2026, 3, 8)).values()) == 23


def _fires_between(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    fires = list(Cron(expression, str(zone)).fire_times(start, end))
    assert all(a < b for a, b in pairwise(fires))
    return fires


def test_every_15_minutes_in_new_york_fires_in_both_passes_of_the_repeated_hour() -> None:
    # Five days around each transition (the year as a whole is covered by @hourly above).
    fires = _fires_between("*/15 * * * *", NEW_YORK, utc(2026, 10, 30), utc(2026, 11, 4))
    assert _steps(fires) == {timedelta(minutes=15)}
    assert len(fires) == 5 * 24 * 4
    # 01:00-01:45 EDT (05:00-05:45 UTC) and then 01:00-01:45 EST (06:00-06:45 UTC).
    repeated = [
        f
        for f in fires
        if f.astimezone(NEW_YORK).date() == date(2026, 11, 1) and f.astimezone(NEW_YORK).hour == 1
    ]
    assert repeated == [utc(2026, 11, 1, 5) + timedelta(minutes=15 * n) for n in range(8)]
    assert [f.astimezone(NEW_YORK).fold for f in repeated] == [0] * 4 + [1] * 4
    assert [f.astimezone(NEW_YORK).strftime("%H:%M") for f in repeated] == [
        "01:00",
        "01:15",
        "01:30",
        "01:45",
    ] * 2
    assert sum(_local_hours(fires, NEW_YORK, date(2026, 11, 1)).values()) == 25 * 4


def test_every_15_minutes_in_new_york_never_fires_inside_the_skipped_hour() -> None:
    fires = _fires_between("*/15 * * * *", NEW_YORK, utc(2026, 3, 6), utc(2026, 3, 11))
    assert _steps(fires) == {timedelta(minutes=15)}
    assert len(fires) == 5 * 24 * 4
    hours = _local_hours(fires, NEW_YORK, date(2026, 3, 8))
    assert 2 not in hours
    assert sum(hours.values()) == 23 * 4
    around = [f for f in fires if utc(2026, 3, 8, 6, 30) <= f <= utc(2026, 3, 8, 7, 15)]
    assert [f.astimezone(NEW_YORK).strftime("%H:%M %Z") for f in around] == [
        "01:30 EST",
        "01:45 EST",
        "03:00 EDT",
        "03:15 EDT",
    ]
    assert around == [
        utc(2026, 3, 8, 6, 30),
        utc(2026, 3, 8, 6, 45),
        utc(2026, 3, 8, 7),
        utc(2026, 3, 8, 7, 15),
    ]


def test_sydney_repeated_hour_fires_a_pinned_time_once_and_every_30_minutes_in_both_passes() -> None:
    # 5 April 2026: 03:00 AEDT (+11) becomes 02:00 AEST (+10) at 16:00 UTC on the 4th.
    daily = _year_of_fires("30 2 * * *", SYDNEY)
    assert len(daily) == 365
    assert [f.astimezone(SYDNEY).date() for f in daily] == _every_day_of_2026()
    april_5 = [f for f in daily if f.astimezone(SYDNEY).date() == date(2026, 4, 5)]
    assert april_5 == [utc(2026, 4, 4, 15, 30)]  # 02:30 AEDT, the first pass only
    assert utc(2026, 4, 4, 16, 30) not in daily
    # 4 October 2026: 02:00 AEST becomes 03:00 AEDT; 02:30 fires at 03:30 AEDT (16:30 UTC).
    october_4 = [f for f in daily if f.astimezone(SYDNEY).date() == date(2026, 10, 4)]
    assert october_4 == [utc(2026, 10, 3, 16, 30)]
    assert october_4[0].astimezone(SYDNEY).strftime("%H:%M %Z") == "03:30 AEDT"

    half_hourly = _fires_between("*/30 * * * *", SYDNEY, utc(2026, 4, 3), utc(2026, 4, 6))
    assert _steps(half_hourly) == {timedelta(minutes=30)}
    night = [f for f in half_hourly if utc(2026, 4, 4, 14, 30) <= f <= utc(2026, 4, 4, 17)]
    assert [f.astimezone(SYDNEY).strftime("%H:%M %Z") for f in night] == [
        "01:30 AEDT",
        "02:00 AEDT",
        "02:30 AEDT",
        "02:00 AEST",
        "02:30 AEST",
        "03:00 AEST",
    ]
    assert night == [utc(2026, 4, 4, 14, 30) + timedelta(minutes=30 * n) for n in range(6)]
    assert sum(_local_hours(half_hourly, SYDNEY, date(2026, 4, 5)).values()) == 25 * 2


@pytest.mark.parametrize("expression", ["15,45 2 * * *", "0 15,45 2 * * *", "15-45/30 2 * * *"])
def test_each_pinned_time_in_the_skipped_hour_fires_once_shifted_forward(expression: str) -> None:
    # 02:15 and 02:45 do not exist on 8 March: each fires once, an hour later in real terms
    # (03:15 and 03:45 EDT), as the module documents for a wall time that does not exist.
    fires = list(Cron(expression, "America/New_York").fire_times(utc(2026, 3, 7, 12), utc(2026, 3, 9, 12)))
    assert [f.astimezone(NEW_YORK).strftime("%m-%d %H:%M %Z") for f in fires] == [
        "03-08 03:15 EDT",
        "03-08 03:45 EDT",
        "03-09 02:15 EDT",
        "03-09 02:45 EDT",
    ]


@pytest.mark.parametrize(
    ("expression", "first_fires"),
    [
        # A range of one value is that value.
        ("5-5 * * * *", ["01-01 00:05", "01-01 01:05", "01-01 02:05"]),
        ("0 9-9 * * *", ["01-01 09:00", "01-02 09:00", "01-03 09:00"]),
        ("0 0 5-5 * *", ["01-05 00:00", "02-05 00:00", "03-05 00:00"]),
        ("0 0 * 3-3 *", ["03-01 00:00", "03-02 00:00", "03-03 00:00"]),
        ("0 0 * * 2-2", ["01-06 00:00", "01-13 00:00", "01-20 00:00"]),  # Tuesdays
        ("0 0 * * 7-7", ["01-04 00:00", "01-11 00:00", "01-18 00:00"]),  # Sundays
        # N/S counts up to the field's highest value; Sunday is 7 as well as 0.
        ("0 0 * * 3/2", ["01-02 00:00", "01-04 00:00", "01-07 00:00"]),  # Wed, Fri, Sun (3 5 7)
        ("0 0 * * 7/2", ["01-04 00:00", "01-11 00:00", "01-18 00:00"]),  # Sunday only (7)
        ("0 0 * * 3-7/2", ["01-02 00:00", "01-04 00:00", "01-07 00:00"]),
        ("10/20 * * * *", ["01-01 00:10", "01-01 00:30", "01-01 00:50"]),
        ("0 0 * FEB/5 *", ["02-01 00:00", "02-02 00:00", "02-03 00:00"]),  # February and July
    ],
)
def test_fires_on_exactly_the_values_the_fields_allow(expression: str, first_fires: list[str]) -> None:
    cron = Cron(expression)
    moment, got = utc(2026, 1, 1), []
    for _ in range(3):
        moment = cron.next_after(moment)
        got.append(moment.strftime("%m-%d %H:%M"))
    assert got == first_fires


def test_a_half_hour_jump_skips_the_wall_times_it_removes_for_a_schedule_following_real_time() -> None:
    # Lord Howe Island moves its clocks by 30 minutes: on 4 October 2026 02:00 (+10:30)
    # becomes 02:30 (+11). 02:10 does not exist that day; "10 * * * *" follows real time,
    # so it fires at 01:10 and then 03:10, and never at a minute other than 10.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    fires = _fires_between("10 * * * *", lord_howe, utc(2026, 10, 3, 13), utc(2026, 10, 3, 18))
    assert [f.astimezone(lord_howe).strftime("%H:%M %Z") for f in fires] == [
        "00:10 +1030",
        "01:10 +1030",
        "03:10 +11",
        "04:10 +11",
    ]
    # On 5 April 2026 02:00 (+11) becomes 01:30 (+10:30): 01:45 happens twice and fires twice.
    back = _fires_between("45 * * * *", lord_howe, utc(2026, 4, 4, 13), utc(2026, 4, 4, 17))
    assert back == [
        utc(2026, 4, 4, 13, 45),
        utc(2026, 4, 4, 14, 45),
        utc(2026, 4, 4, 15, 15),
        utc(2026, 4, 4, 16, 15),
    ]


# -- properties --------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "America/New_York",
    "Australia/Sydney",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
]
YEAR_START = utc(2026, 1, 1)


def _transitions(zone: ZoneInfo) -> list[datetime]:
    """The instants of 2026 at which the zone's offset changes (to the half hour)."""
    found = []
    moment = YEAR_START
    while moment.year == 2026:
        later = moment + timedelta(minutes=30)
        if moment.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
            found.append(later)
        moment = later
    return found


TRANSITIONS = {name: _transitions(ZoneInfo(name)) for name in ZONES}


def _field(
    low: int, high: int, *, day: bool = False, numbers_to: int | None = None
) -> st.SearchStrategy[tuple[str, frozenset[int]]]:
    """A cron field as (text, the values it allows), drawn from a small grammar. Numbers go
    up to ``numbers_to`` (to keep days of the month firing every month), but ``*`` and
    ``N/S`` still reach ``high``. Day fields get no ``*/S``: whether ``*/1`` counts as
    restricting the day (for the either-day rule) differs between crons."""
    number = st.integers(low, numbers_to or high)
    single = number.map(lambda n: (str(n), frozenset({n})))
    span = st.tuples(number, number).map(lambda p: (min(p), max(p)))
    ranged = span.map(lambda r: (f"{r[0]}-{r[1]}", frozenset(range(r[0], r[1] + 1))))
    every = st.integers(1, high - low + 1).map(lambda s: (f"*/{s}", frozenset(range(low, high + 1, s))))
    from_on = st.tuples(number, st.integers(1, 12)).map(
        lambda p: (f"{p[0]}/{p[1]}", frozenset(range(p[0], high + 1, p[1])))
    )
    stepped = st.tuples(span, st.integers(1, 12)).map(
        lambda p: (f"{p[0][0]}-{p[0][1]}/{p[1]}", frozenset(range(p[0][0], p[0][1] + 1, p[1])))
    )
    forms = [single, ranged, from_on, stepped] if day else [single, ranged, every, from_on, stepped]
    listed = st.lists(st.one_of(forms), min_size=1, max_size=3).map(
        lambda items: (",".join(t for t, _ in items), frozenset().union(*(v for _, v in items)))
    )
    return st.one_of(st.just(("*", frozenset(range(low, high + 1)))), listed)


@dataclass(frozen=True)
class Drawn:
    """A drawn 5-field expression and, worked out while drawing it, what each field allows."""

    text: str
    minutes: frozenset[int] = field(repr=False)
    hours: frozenset[int] = field(repr=False)
    days: frozenset[int] = field(repr=False)
    months: frozenset[int] = field(repr=False)
    weekdays: frozenset[int] = field(repr=False)  # Sunday as 0
    days_restricted: bool = field(repr=False)
    weekdays_restricted: bool = field(repr=False)


@st.composite
def expressions(draw: st.DrawFn) -> Drawn:
    minute, hour = draw(_field(0, 59)), draw(_field(0, 23))
    day, month, weekday = (
        draw(_field(1, 31, day=True, numbers_to=28)),
        draw(_field(1, 12)),
        draw(_field(0, 7, day=True)),
    )
    return Drawn(
        text=" ".join(t for t, _ in (minute, hour, day, month, weekday)),
        minutes=minute[1],
        hours=hour[1],
        days=day[1],
        months=month[1],
        weekdays=frozenset(d % 7 for d in weekday[1]),
        days_restricted=day[0] != "*",
        weekdays_restricted=weekday[0] != "*",
    )


@st.composite
def moments(draw: st.DrawFn, zone: str) -> datetime:
    """An instant of 2026: anywhere, or within a day of one of the zone's transitions."""
    near = TRANSITIONS[zone]
    if near and draw(st.booleans()):
        base = draw(st.sampled_from(near))
        return base + timedelta(seconds=draw(st.integers(-86_400, 86_400)))
    return YEAR_START + timedelta(seconds=draw(st.integers(0, 365 * 86_400)))


# No shrinking: a failure is reported as drawn, and the run stays short either way.
PROPERTIES = settings(
    max_examples=100,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTIES
@given(st.data())
def test_next_after_is_strictly_later_and_monotonic(data: st.DataObject) -> None:
    drawn = data.draw(expressions(), label="expression")
    zone = data.draw(st.sampled_from(ZONES), label="zone")
    cron = Cron(drawn.text, zone)
    t1 = data.draw(moments(zone), label="t1")
    t2 = t1 + timedelta(seconds=data.draw(st.integers(0, 3 * 86_400), label="later by"))
    n1, n2 = cron.next_after(t1), cron.next_after(t2)
    assert n1 > t1
    assert n2 > t2
    assert n1 <= n2
    assert n1.tzinfo is UTC


@PROPERTIES
@given(st.data())
def test_next_after_does_not_move_before_the_fire_it_found(data: st.DataObject) -> None:
    """Asked again from any moment up to the fire it found, it finds the same fire: no fire
    time is skipped by asking later, and the fire found is one (asked just before it)."""
    drawn = data.draw(expressions(), label="expression")
    zone = data.draw(st.sampled_from(ZONES), label="zone")
    cron = Cron(drawn.text, zone)
    t = data.draw(moments(zone), label="t")
    found = cron.next_after(t)
    fraction = data.draw(st.floats(0, 1), label="fraction")
    between = t + (found - t) * fraction
    if between < found:
        assert cron.next_after(between) == found
    assert cron.next_after(found - MICRO) == found


def _reference_next(after: datetime, drawn: Drawn) -> datetime:
    """The next matching minute in UTC, worked out day by day from the calendar."""
    day = after.date()
    while True:
        by_day = day.day in drawn.days
        by_weekday = (day.isoweekday() % 7) in drawn.weekdays
        if drawn.days_restricted and drawn.weekdays_restricted:
            matches = by_day or by_weekday  # either, as in every cron
        else:
            matches = by_day and by_weekday
        if day.month in drawn.months and matches:
            for hour in sorted(drawn.hours):
                for minute in sorted(drawn.minutes):
                    candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if candidate > after:
                        return candidate
        day += timedelta(days=1)


@PROPERTIES
@given(st.data())
def test_in_utc_the_fire_time_is_the_next_wall_time_the_fields_allow(data: st.DataObject) -> None:
    drawn = data.draw(expressions(), label="expression")
    cron = Cron(drawn.text, "UTC")
    t = data.draw(moments("UTC"), label="t")
    found = cron.next_after(t)
    assert (found.second, found.microsecond) == (0, 0)
    assert found.minute in drawn.minutes
    assert found.hour in drawn.hours
    assert found.month in drawn.months
    assert found == _reference_next(t, drawn)


@PROPERTIES
@given(st.data())
def test_fire_times_agree_with_next_after(data: st.DataObject) -> None:
    """A walk of fire times strictly increases, and next_after from any moment inside it is
    the walk's next fire (within a day of a transition, where the rules above bite)."""
    drawn = data.draw(expressions(), label="expression")
    zone = data.draw(st.sampled_from(ZONES), label="zone")
    cron = Cron(drawn.text, zone)
    start = data.draw(moments(zone), label="start")
    walk = [cron.next_after(start)]
    while len(walk) < 20 and walk[-1] < start + timedelta(hours=12):
        walk.append(cron.next_after(walk[-1]))
    assert all(a < b for a, b in pairwise(walk))
    offset = data.draw(st.integers(0, int((walk[-1] - start).total_seconds()) - 1), label="offset")
    moment = start + timedelta(seconds=offset)
    assert cron.next_after(moment) == walk[bisect.bisect_right(walk, moment)]
