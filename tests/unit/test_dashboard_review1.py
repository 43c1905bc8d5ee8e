"""The dead letters' filters as a confirmation carries them: closed at the time it was shown,
and read back by the POST exactly as they were counted."""

from __future__ import annotations

from datetime import UTC, datetime

from conveyor.dashboard.dead_pages import DeadFilters, parse_filters, pinned

NOW = datetime(2026, 12, 7, 17, 30, 5, 123456, tzinfo=UTC)


def test_a_confirmation_closes_the_range_at_its_time_to_the_millisecond() -> None:
    closed = pinned(DeadFilters(queue="q"), NOW)
    assert closed.died_before == datetime(2026, 12, 7, 17, 30, 5, 123000, tzinfo=UTC)
    assert closed.text() == {"queue": "q", "died_before": "2026-12-07T17:30:05.123"}
    assert parse_filters(closed.text()) == closed  # the POST acts on what was counted


def test_an_earlier_end_is_kept_and_a_range_starting_later_is_left_open() -> None:
    earlier = DeadFilters(died_before=datetime(2026, 12, 7, 16, 0, tzinfo=UTC))
    assert pinned(earlier, NOW) == earlier
    later = DeadFilters(died_after=datetime(2026, 12, 8, tzinfo=UTC))
    assert pinned(later, NOW) == later
    assert pinned(DeadFilters(died_before=datetime(2030, 1, 1, tzinfo=UTC)), NOW).died_before == NOW.replace(
        microsecond=123000
    )


def test_times_in_the_form_keep_what_they_have() -> None:
    whole = DeadFilters(died_after=datetime(2026, 12, 7, 16, 0, tzinfo=UTC))
    assert whole.text() == {"died_after": "2026-12-07T16:00:00"}
    fine = DeadFilters(died_after=NOW)
    assert fine.text() == {"died_after": "2026-12-07T17:30:05.123456"}
    assert parse_filters(fine.text()) == fine
