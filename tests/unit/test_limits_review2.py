"""parse_rate refuses a count int() cannot read (the dashboard's limits form and the CLI's
``--rate`` both give it what a person typed): an InvalidOptionError, never a ValueError."""

from __future__ import annotations

import pytest

from conveyor.errors import InvalidOptionError
from conveyor.limits import parse_rate


@pytest.mark.parametrize("text", ["²/1s", "¹²/1m", "9" * 5000 + "/1s", "1" + "0" * 18 + "/1s"])
def test_a_count_that_is_no_small_whole_number_is_refused(text: str) -> None:
    with pytest.raises(InvalidOptionError):
        parse_rate(text)


def test_leading_zeros_are_still_a_count() -> None:
    assert parse_rate("0" * 30 + "20/1m") == parse_rate("20/1m")
