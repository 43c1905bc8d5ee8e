"""The dashboard's schedule form: decoding its text, placing the service layer's refusals at
their fields (with the real messages of the code that refuses), writing fire times, and
ops.schedules.preview_fires."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conveyor import Registry
from conveyor.cron import Cron
from conveyor.dashboard.base import Form
from conveyor.dashboard.schedule_forms import ScheduleForm, iso, place, time_zones, utc, zoned
from conveyor.errors import ConflictError, ConveyorError, InvalidOptionError, UnknownTaskError
from conveyor.ops.roles import LOCAL_ADMIN, Principal, Role
from conveyor.ops.schedules import preview_fires
from conveyor.tasks import check_queue_name, parse_priority

VIEWER = Principal(Role.VIEWER, "v")


def form_of(**fields: str) -> ScheduleForm:
    return ScheduleForm.of(Form({name: [value] for name, value in fields.items()}))


def test_the_form_keeps_what_was_typed_and_decodes_it() -> None:
    typed = form_of(
        name=" nightly ", task="add", cron=" 0 9 * * * ", timezone="Europe/Paris", args=' {"a": 1}\n',
        queue="", priority="high", max_attempts="3", catch_up="skip",
    )  # fmt: skip
    assert (typed.name, typed.cron, typed.args) == ("nightly", "0 9 * * *", ' {"a": 1}\n')
    definition, errors = typed.definition()
    assert errors == {}
    assert definition == {
        "task": "add",
        "cron": "0 9 * * *",
        "timezone": "Europe/Paris",
        "args": {"a": 1},
        "queue": None,
        "priority": "high",
        "max_attempts": 3,
        "catch_up": "skip",
    }
    # Nothing typed for the options: the task's own (None), and no arguments.
    bare, errors = form_of(task="add", cron="@daily", args="  ").definition()
    assert errors == {}
    assert (bare["args"], bare["queue"], bare["priority"], bare["max_attempts"]) == ({}, None, None, None)
    assert bare["catch_up"] == "once"


@pytest.mark.parametrize(
    ("args", "max_attempts", "expected"),
    [
        ("{a: 1", "", {"args": "not valid JSON"}),
        ("[1, 2]", "", {"args": "must be a JSON object"}),
        ('"text"', "", {"args": "must be a JSON object"}),
        ("{}", "three", {"max_attempts": "whole number"}),
        ("nope", "2.5", {"args": "not valid JSON", "max_attempts": "whole number"}),
    ],
)
def test_text_that_cannot_be_decoded_is_named_at_its_field(
    args: str, max_attempts: str, expected: dict[str, str]
) -> None:
    _, errors = form_of(args=args, max_attempts=max_attempts).definition()
    assert set(errors) == set(expected)
    for name, words in expected.items():
        assert words in errors[name]


def test_a_refused_form_keeps_its_fields_and_lists_messages_about_none() -> None:
    typed = form_of(name="n", cron="bad")
    refused = typed.refused({"cron": "wrong", "form": "something else"})
    assert (refused.name, refused.cron, refused.errors["cron"]) == ("n", "bad", "wrong")
    assert refused.general_errors == ["something else"]
    assert typed.errors == {}


def test_a_stored_schedule_gives_its_form() -> None:
    row: dict[str, Any] = {
        "name": "nightly", "task": "add", "cron": "0 9 * * *", "timezone": "Asia/Tokyo",
        "args": {"a": 1, "é": "ü"}, "queue": None, "priority": 0, "max_attempts": 5, "catch_up": "skip",
    }  # fmt: skip
    form = ScheduleForm.of_row(row)
    assert (form.priority, form.max_attempts, form.queue, form.catch_up) == ("critical", "5", "", "skip")
    assert form.args == '{\n  "a": 1,\n  "é": "ü"\n}'
    definition, errors = form.definition()
    assert errors == {}
    assert definition["args"] == row["args"]
    # The names the form offers are the ones the service layer reads back.
    for name in ("critical", "high", "normal", "low"):
        assert ScheduleForm.of_row(row | {"priority": parse_priority(name)}).priority == name
    assert ScheduleForm.of_row(row | {"priority": None, "max_attempts": None}).priority == ""


def refusal(call: Any) -> ConveyorError:
    with pytest.raises(ConveyorError) as caught:
        call()
    return caught.value


def declare(**overrides: Any) -> Any:
    registry = Registry()

    @registry.task(queue="q")
    def add(a: int, b: int) -> int:
        return a + b

    options: dict[str, Any] = {"name": "s", "cron": "0 9 * * *", "task": "add", "args": {"a": 1, "b": 2}}
    options |= overrides
    return lambda: registry.schedule(**options)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: Cron("0 25 * * *"), "cron"),
        (lambda: Cron("* * *"), "cron"),
        (lambda: Cron("@sometimes"), "cron"),
        (lambda: Cron("0 9 31 2 *"), "cron"),
        (lambda: Cron("0 9 * * *", "Mars/Olympus"), "timezone"),
        (lambda: Cron("0 9 * * *", "Europe/cron expression"), "timezone"),
        (lambda: check_queue_name("no spaces"), "queue"),
        (lambda: parse_priority("urgent"), "priority"),
        (lambda: parse_priority(9), "priority"),
        (declare(name="a b"), "name"),
        (declare(task=""), "task"),
        (declare(args={"a": 1}), "args"),
        (declare(args={"a": 1, "b": 2, "c": 3}), "args"),
        (declare(max_attempts=0), "max_attempts"),
        (declare(catch_up="always"), "catch_up"),
    ],
)
def test_a_refusal_of_the_service_layer_is_placed_at_its_field(call: Any, field: str) -> None:
    assert place(refusal(call)) == field


def test_refusals_placed_by_their_kind() -> None:
    assert place(UnknownTaskError("no task 'x' is registered")) == "task"
    assert place(ConflictError("a schedule named 'x' exists")) == "name"
    assert place(ConveyorError("the database is gone")) == "form"


def test_fire_times_are_written_in_their_zone_in_utc_and_as_an_instant() -> None:
    at = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)
    assert zoned(at.astimezone(ZoneInfo("Europe/Paris"))) == "2026-12-08 09:00 CET"
    assert (
        zoned(datetime(2026, 7, 1, 9, 0, 5, tzinfo=ZoneInfo("America/New_York"))) == "2026-07-01 09:00:05 EDT"
    )
    assert utc(at.astimezone(ZoneInfo("Asia/Tokyo"))) == "2026-12-08 08:00 UTC"
    assert iso(at.astimezone(ZoneInfo("Asia/Tokyo"))) == "2026-12-08T08:00:00Z"
    assert zoned(None) == utc(None) == "\u2014"


def test_the_zones_offered_are_the_ones_the_service_layer_takes() -> None:
    zones = time_zones()
    assert {"Europe/Paris", "UTC", "America/New_York"} <= set(zones)
    assert "localtime" not in zones
    assert list(zones) == sorted(zones)
    for name in zones[:: max(1, len(zones) // 40)]:
        Cron("0 9 * * *", name)


def test_preview_fires_gives_the_next_five_as_the_scheduler_would() -> None:
    after = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
    fires = preview_fires(VIEWER, "30 2 * * *", "America/New_York", after=after)
    local = [f.astimezone(ZoneInfo("America/New_York")).strftime("%m-%d %H:%M") for f in fires]
    # 02:30 does not exist on 8 March 2026 in New York: it fires shifted forward, at 03:30.
    assert local == ["03-07 02:30", "03-08 03:30", "03-09 02:30", "03-10 02:30", "03-11 02:30"]
    assert all(f.tzinfo == UTC for f in fires)
    assert preview_fires(LOCAL_ADMIN, "@hourly", "UTC", count=2, after=after) == [
        datetime(2026, 3, 6, 13, tzinfo=UTC),
        datetime(2026, 3, 6, 14, tzinfo=UTC),
    ]


def test_preview_fires_checks_the_zone_first_then_the_cron() -> None:
    with pytest.raises(InvalidOptionError, match="unknown time zone 'Mars/Olympus'"):
        preview_fires(VIEWER, "not cron", "Mars/Olympus")
    with pytest.raises(InvalidOptionError, match="cron expression 'not cron' has 2 fields"):
        preview_fires(VIEWER, "not cron", "UTC")
