"""The one duration parser."""

from datetime import timedelta

import pytest

from conveyor.durations import parse_duration
from conveyor.errors import InvalidOptionError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        (" 7 d ", timedelta(days=7)),
        ("0s", timedelta(0)),
    ],
)
def test_durations_with_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(text, default_unit="h") == expected  # a unit given wins


def test_a_bare_number_is_in_the_default_unit() -> None:
    assert parse_duration("90", default_unit="s") == timedelta(seconds=90)
    assert parse_duration("2.5", default_unit="h") == timedelta(hours=2.5)


@pytest.mark.parametrize("text", ["", "d", "7x", "-5m", "7 days", "1h30m", "7", "nan"])
def test_bad_durations_are_refused_with_examples(text: str) -> None:
    with pytest.raises(
        InvalidOptionError, match=r"is not valid: use a number and a unit, like 45s, 30m, 12h, 7d"
    ):
        parse_duration(text)


def test_the_refusal_says_what_a_bare_number_means_where_one_is_taken() -> None:
    with pytest.raises(InvalidOptionError, match=r"\(a bare number is in hours\)$"):
        parse_duration("soon", default_unit="h")
