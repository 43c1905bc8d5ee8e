"""conveyor.cron checked against cronsim, a maintained cron library, as an oracle.

Conveyor computes fire times itself because cronsim does not give the daylight-saving
behaviour docs/scheduling.md documents ("Why Conveyor computes fire times itself"). Where the
two agree by design they must give the same fire times; where they differ, they differ in
exactly the cases that section lists. If a cronsim release changes one of those cases, the
year test below fails and names it: revisit the section and the decision then.

cronsim is a test-only dependency (the ``test`` extra).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import event, given, settings
from hypothesis import strategies as st

from conveyor.cron import Cron

from .test_cron import PROPERTIES, ZONES, expressions, moments

YEAR_START, YEAR_END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)


def _zone(name: str) -> tzinfo:
    """cronsim applies no daylight-saving rule in datetime.UTC, as Conveyor needs none there."""
    return UTC if name == "UTC" else ZoneInfo(name)


def _cronsim_next(expression: str, zone: str, after: datetime) -> datetime:
    """cronsim's first fire strictly after ``after``, in UTC. (Asked during the second pass
    of a repeated hour, cronsim can first yield a pinned time of the first pass, which lies
    before the instant it was asked from: such yields are passed over.)"""
    for fire in CronSim(expression, after.astimezone(_zone(zone))):
        if fire > after:
            return fire.astimezone(UTC)
    raise AssertionError(f"cronsim finds no fire of {expression!r} after {after}")


def _year_of_fires(expression: str, zone: str) -> tuple[list[datetime], list[datetime]]:
    """Every fire of 2026: (Conveyor's, cronsim's)."""
    cron = Cron(expression, zone)
    ours = list(cron.fire_times(YEAR_START, YEAR_END))
    theirs = []
    for fire in CronSim(expression, YEAR_START.astimezone(_zone(zone))):
        if fire.astimezone(UTC) > YEAR_END:
            break
        if fire > YEAR_START:
            theirs.append(fire.astimezone(UTC))
    return ours, theirs


YEAR_ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
]
YEAR_EXPRESSIONS = [
    "0 8 * * *",
    "30 1 * * *",  # in New York's repeated hour: both fire it once, in the first pass
    "30 2 * * *",
    "15,45 2 * * *",
    "10 2 * * *",
    "*/15 2 * * *",
    "0 * * * *",
    "*/15 * * * *",
    "45 * * * *",
    "0 */2 * * *",
    "0 0 13 * 5",
    "0 30 1 * * *",
    "0 30 2 * * *",
    "0 */20 * * * *",
]

# (zone, expression): (fires of 2026 only Conveyor makes, fires only cronsim makes), as local
# wall times. Every other pair of YEAR_ZONES x YEAR_EXPRESSIONS gives the same fires in both.
# The cases are explained in docs/scheduling.md, "Why Conveyor computes fire times itself".
DIFFERENCES: dict[tuple[str, str], tuple[list[str], list[str]]] = {
    # 1. A pinned time in the skipped hour: Conveyor shifts it by the jump (as PostgreSQL reads
    #    such a wall time); cronsim fires at the end of the gap.
    ("Europe/Berlin", "30 2 * * *"): (["03-29 03:30 CEST"], ["03-29 03:00 CEST"]),
    ("Europe/Berlin", "10 2 * * *"): (["03-29 03:10 CEST"], ["03-29 03:00 CEST"]),
    ("America/New_York", "30 2 * * *"): (["03-08 03:30 EDT"], ["03-08 03:00 EDT"]),
    ("America/New_York", "10 2 * * *"): (["03-08 03:10 EDT"], ["03-08 03:00 EDT"]),
    ("Australia/Sydney", "30 2 * * *"): (["10-04 03:30 AEDT"], ["10-04 03:00 AEDT"]),
    ("Australia/Sydney", "10 2 * * *"): (["10-04 03:10 AEDT"], ["10-04 03:00 AEDT"]),
    ("Australia/Lord_Howe", "10 2 * * *"): (["10-04 02:40 +11"], ["10-04 02:30 +11"]),
    # 2. Several pinned times in the skipped hour: cronsim fires once for all of them.
    ("Europe/Berlin", "15,45 2 * * *"): (["03-29 03:15 CEST", "03-29 03:45 CEST"], ["03-29 03:00 CEST"]),
    ("America/New_York", "15,45 2 * * *"): (["03-08 03:15 EDT", "03-08 03:45 EDT"], ["03-08 03:00 EDT"]),
    ("Australia/Sydney", "15,45 2 * * *"): (["10-04 03:15 AEDT", "10-04 03:45 AEDT"], ["10-04 03:00 AEDT"]),
    #    Lord Howe's half-hour jump shifts 02:15 onto the real 02:45: Conveyor fires that
    #    instant once; cronsim fires 02:30 and 02:45.
    ("Australia/Lord_Howe", "15,45 2 * * *"): ([], ["10-04 02:30 +11"]),
    # 3. A minute field starting with * under a pinned hour: Conveyor pins it (the hour field
    #    decides); cronsim follows real time (as Debian cron does).
    ("Europe/Berlin", "*/15 2 * * *"): (
        ["03-29 03:00 CEST", "03-29 03:15 CEST", "03-29 03:30 CEST", "03-29 03:45 CEST"],
        ["10-25 02:00 CET", "10-25 02:15 CET", "10-25 02:30 CET", "10-25 02:45 CET"],
    ),
    ("America/New_York", "*/15 2 * * *"): (
        ["03-08 03:00 EDT", "03-08 03:15 EDT", "03-08 03:30 EDT", "03-08 03:45 EDT"],
        [],
    ),
    ("Australia/Sydney", "*/15 2 * * *"): (
        ["10-04 03:00 AEDT", "10-04 03:15 AEDT", "10-04 03:30 AEDT", "10-04 03:45 AEDT"],
        ["04-05 02:00 AEST", "04-05 02:15 AEST", "04-05 02:30 AEST", "04-05 02:45 AEST"],
    ),
    # 4. Six fields: cronsim applies no daylight-saving rule to them, so a pinned time is
    #    skipped in spring and fired twice in autumn.
    ("Europe/Berlin", "0 30 2 * * *"): (["03-29 03:30 CEST"], ["10-25 02:30 CET"]),
    ("America/New_York", "0 30 2 * * *"): (["03-08 03:30 EDT"], []),
    ("America/New_York", "0 30 1 * * *"): ([], ["11-01 01:30 EST"]),
    ("Australia/Sydney", "0 30 2 * * *"): (["10-04 03:30 AEDT"], ["04-05 02:30 AEST"]),
    # 5. Half-hour jumps: cronsim passes over wall times that exist (once) next to them.
    ("Australia/Lord_Howe", "45 * * * *"): (["04-05 01:45 +1030", "10-04 02:45 +11"], []),
    ("Australia/Lord_Howe", "0 */2 * * *"): (["04-05 02:00 +1030"], []),
    ("Australia/Lord_Howe", "*/15 2 * * *"): (["04-05 02:00 +1030", "04-05 02:15 +1030"], []),
}


@pytest.mark.parametrize("zone", YEAR_ZONES)
@pytest.mark.parametrize("expression", YEAR_EXPRESSIONS)
def test_a_year_of_fires_differs_from_cronsim_only_where_documented(expression: str, zone: str) -> None:
    ours, theirs = _year_of_fires(expression, zone)
    local = ZoneInfo(zone)

    def wall(fires: set[datetime]) -> list[str]:
        return [fire.astimezone(local).strftime("%m-%d %H:%M %Z") for fire in sorted(fires)]

    only_ours, only_theirs = wall(set(ours) - set(theirs)), wall(set(theirs) - set(ours))
    assert (only_ours, only_theirs) == DIFFERENCES.get((zone, expression), ([], [])), (
        "Conveyor and cronsim differ otherwise than docs/scheduling.md says"
    )
    assert ours
    assert len(ours) == len(set(ours))


def test_asked_from_inside_a_daylight_saving_change_cronsim_differs_as_documented() -> None:
    """Asked from an instant in the repeated hour's second pass, cronsim yields a time before
    that instant; asked just after the jump, it passes over the day's shifted fire."""
    new_york = ZoneInfo("America/New_York")
    second_pass = datetime(2026, 11, 1, 6, 20, tzinfo=UTC)  # 01:20 EST
    assert next(CronSim("30 1 * * *", second_pass.astimezone(new_york))) == datetime(
        2026, 11, 1, 1, 30, tzinfo=new_york
    )  # 01:30 EDT, 50 minutes before the instant asked
    assert Cron("30 1 * * *", "America/New_York").next_after(second_pass) == datetime(
        2026, 11, 2, 6, 30, tzinfo=UTC
    )
    after_jump = datetime(2026, 3, 8, 7, 10, tzinfo=UTC)  # 03:10 EDT
    assert next(CronSim("30 2 * * *", after_jump.astimezone(new_york))).astimezone(UTC) == datetime(
        2026, 3, 9, 6, 30, tzinfo=UTC
    )  # the next day's 02:30 EDT
    assert Cron("30 2 * * *", "America/New_York").next_after(after_jump) == datetime(
        2026, 3, 8, 7, 30, tzinfo=UTC
    )  # 03:30 EDT, the day's shifted fire


# -- cronsim as an oracle over random expressions and instants -------------------------------


def _offset(zone: ZoneInfo, moment: datetime) -> timedelta:
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _changes(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The instants in [start, end) at which the zone's offset changes (to the half hour)."""
    found, moment = [], start
    while moment < end:
        later = moment + timedelta(minutes=30)
        if _offset(zone, moment) != _offset(zone, later):
            found.append(later)
        moment = later
    return found


# Instants are drawn in 2026; the fire found after one can lie in 2027.
CHANGES_END = datetime(2028, 1, 1, tzinfo=UTC)
CHANGES = {name: _changes(ZoneInfo(name), YEAR_START, CHANGES_END) for name in ZONES}


def _pinned_in_conveyor(hour: str) -> bool:
    return not (hour == "*" or hour.startswith("*/"))


def _pinned_in_cronsim(fields: list[str]) -> bool:
    return len(fields) == 5 and not fields[0].startswith("*") and not fields[1].startswith("*")


def _comparable(expression: str, zone: str, after: datetime, until: datetime) -> str | None:
    """Why Conveyor and cronsim may differ from ``after`` to ``until``, or None when they
    must agree: only a clock change in that stretch (or just before it, for a shifted fire)
    can part them, and only in the documented ways."""
    if until >= CHANGES_END:
        return "a fire beyond the clock changes listed here"
    changes = [t for t in CHANGES[zone] if after - timedelta(hours=3) < t <= until]
    if not changes:
        return None
    fields = expression.split(" ")
    hour = fields[-4]
    pinned = _pinned_in_conveyor(hour)
    if pinned != _pinned_in_cronsim(fields):
        return "the two classify the expression differently (cases 3 and 4)"
    if zone == "Australia/Lord_Howe" and not pinned:
        return "a half-hour jump (case 5)"
    local = ZoneInfo(zone)
    springs = [t for t in changes if _offset(local, t) > _offset(local, t - timedelta(seconds=1))]
    if pinned and springs:
        return "a pinned time may fall into the skipped hour (cases 1 and 2)"
    return None


# A longer run: CONVEYOR_CRON_ORACLE_EXAMPLES=8000 pytest --timeout 0 -k agrees_with_cronsim
ORACLE_EXAMPLES = int(os.environ.get("CONVEYOR_CRON_ORACLE_EXAMPLES", "200"))
# A seconds field to put in front, or none (5 fields).
SECONDS = st.sampled_from(["", "0 ", "30 ", "*/20 ", "5,45 ", "10-50/20 "])


@settings(PROPERTIES, max_examples=ORACLE_EXAMPLES)
@given(st.data())
def test_next_after_agrees_with_cronsim_wherever_the_docs_say_they_agree(data: st.DataObject) -> None:
    drawn = data.draw(expressions(), label="expression")
    expression = data.draw(SECONDS, label="seconds") + drawn.text
    zone = data.draw(st.sampled_from(ZONES), label="zone")
    after = data.draw(moments(zone), label="after")
    if data.draw(st.booleans(), label="with microseconds"):
        after += timedelta(microseconds=data.draw(st.integers(1, 999_999)))
    ours = Cron(expression, zone).next_after(after)
    theirs = _cronsim_next(expression, zone, after)
    reason = _comparable(expression, zone, after, max(ours, theirs))
    event(reason or "compared")
    if reason is None:
        assert ours == theirs
