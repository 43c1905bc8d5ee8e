"""Unit tests for the listings' cursors (conveyor.queue.pages) and filters (conveyor.queue.filters)."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import InvalidOptionError
from conveyor.queue import pages
from conveyor.queue.filters import JOB_STATES, JobFilters, check_older_than, check_states, id_ranges
from conveyor.queue.pages import DEAD, HISTORY, JOBS, Page, Position, decode, encode, page_of

MAX_ID = 2**63 - 1


def raw(key: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


# -- cursors ----------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=MAX_ID))
def test_an_id_cursor_names_the_same_id_on_the_way_back(job_id: int) -> None:
    cursor = encode(JOBS, Position(job_id))
    assert cursor.isascii()
    assert "=" not in cursor
    assert len(cursor) <= pages.MAX_CURSOR
    assert decode(JOBS, cursor) == Position(job_id)


@given(
    st.integers(min_value=1, max_value=MAX_ID),
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.just(UTC),
    ),
)
def test_a_time_cursor_keeps_the_time_to_the_microsecond(job_id: int, at: datetime) -> None:
    for listing in (HISTORY, DEAD):
        back = decode(listing, encode(listing, Position(job_id, at)))
        assert back == Position(job_id, at)
        assert back is not None
        assert back.at is not None
        assert back.at.utcoffset() == timedelta(0)


def test_a_time_in_another_zone_is_the_same_instant() -> None:
    at = datetime(2026, 12, 7, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5)))
    back = decode(HISTORY, encode(HISTORY, Position(7, at)))
    assert back is not None
    assert back.at == at


def test_no_cursor_is_the_first_page() -> None:
    assert decode(JOBS, None) is None


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "x",
        "!!!!",
        "é",
        "a" * 201,
        raw({"id": 5}),
        raw([1, "jobs"]),
        raw([1, "jobs", "5"]),
        raw([1, "jobs", 5.0]),
        raw([1, "jobs", True]),
        raw([1, "jobs", 0]),
        raw([1, "jobs", -3]),
        raw([1, "jobs", 2**63]),
        raw([1, "jobs", 5, 6]),
        raw([2, "jobs", 5]),
        raw([True, "jobs", 5]),  # true == 1 in Python, but is not version 1
        raw([1.0, "jobs", 5]),
        raw(["1", "jobs", 5]),
        raw([1, "nothing", 5]),
        raw("jobs"),
        raw(None),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b'[1, "jobs", 5').decode(),
    ],
)
def test_a_bad_cursor_is_refused_clearly(cursor: str) -> None:
    with pytest.raises(InvalidOptionError, match=r"the cursor is not valid"):
        decode(JOBS, cursor)


@pytest.mark.parametrize(
    "key",
    [
        [1, "history", 5],
        [1, "history", "t", 5],
        [1, "history", 10**30, 5],  # past the year 9999
        [1, "history", -(10**20), 5],
        [1, "history", 0, 0],
        [True, "history", 0, 5],
        [1.0, "history", 0, 5],
    ],
)
def test_a_bad_time_cursor_is_refused_clearly(key: list[object]) -> None:
    with pytest.raises(InvalidOptionError, match=r"the cursor is not valid"):
        decode(HISTORY, raw(key))


def test_a_cursor_of_another_listing_says_which_it_is() -> None:
    with pytest.raises(InvalidOptionError, match=r"continues the history listing, not the jobs one"):
        decode(JOBS, encode(HISTORY, Position(5, datetime.now(UTC))))
    with pytest.raises(InvalidOptionError, match=r"continues the jobs listing, not the dead one"):
        decode(DEAD, encode(JOBS, Position(5)))
    # Another listing's cursor says so only when its version is one Conveyor writes.
    with pytest.raises(InvalidOptionError, match=r"the cursor is not valid"):
        decode(DEAD, raw([True, "jobs", 5]))


@pytest.mark.parametrize("cursor", [5, b"abc", ["x"], {"id": 1}])
def test_a_cursor_that_is_not_text_is_refused(cursor: object) -> None:
    with pytest.raises(InvalidOptionError, match=r"a cursor is a string"):
        decode(JOBS, cursor)


@given(st.text(max_size=300))
def test_any_text_is_a_cursor_or_a_clear_refusal(text: str) -> None:
    with contextlib.suppress(InvalidOptionError):
        decode(HISTORY, text)


@given(st.binary(max_size=150))
def test_any_bytes_encoded_are_a_cursor_or_a_clear_refusal(data: bytes) -> None:
    with contextlib.suppress(InvalidOptionError):
        decode(JOBS, base64.urlsafe_b64encode(data).decode())


def test_a_page_has_a_next_cursor_only_when_a_row_lies_beyond_it() -> None:
    rows = [{"id": i} for i in (9, 8, 7)]
    assert page_of(JOBS, rows, 3) == Page(rows, None)
    assert page_of(JOBS, rows[:2], 3) == Page(rows[:2], None)
    page = page_of(JOBS, rows, 2)
    assert page.items == rows[:2]
    assert page.next_cursor is not None
    assert decode(JOBS, page.next_cursor) == Position(8)


@pytest.mark.parametrize("limit", [0, -1, 1001, True, 2.0, "5", None])
def test_a_limit_out_of_range_is_refused(limit: object) -> None:
    with pytest.raises(InvalidOptionError, match=r"limit must be 1 to 1000"):
        pages.check_limit(limit)


# -- filters ----------------------------------------------------------------------------------


def test_id_ranges_are_every_span_of_ids_starting_with_the_digits_highest_first() -> None:
    ranges = id_ranges("42")
    assert ranges[-3:] == [(4200, 4299), (420, 429), (42, 42)]
    assert ranges[0][0] <= MAX_ID
    assert ranges[0][1] <= MAX_ID
    assert all(high < low2 for (low2, _), (_, high) in itertools.pairwise(ranges))
    assert id_ranges(" 7 ") == id_ranges("7") == id_ranges(7)
    assert id_ranges(str(MAX_ID)) == [(MAX_ID, MAX_ID)]
    assert id_ranges("9223372036854775808") == []  # above every id
    assert id_ranges("0") == id_ranges("007") == []


@given(st.integers(min_value=1, max_value=MAX_ID), st.integers(min_value=1, max_value=19))
def test_an_id_falls_in_the_ranges_of_exactly_its_prefixes(job_id: int, length: int) -> None:
    digits = str(job_id)[:length]
    assert sum(low <= job_id <= high for low, high in id_ranges(digits)) == 1
    other = str((int(digits[0]) % 9) + 1) + digits[1:]
    if other != digits:
        assert not any(low <= job_id <= high for low, high in id_ranges(other))


@pytest.mark.parametrize("search", ["", " ", "4a", "-1", "1.5", "١٢", "1" * 20, True, 2.5, None, ["1"]])
def test_an_id_search_that_is_not_digits_is_refused(search: object) -> None:
    with pytest.raises(InvalidOptionError, match=r"^id must be"):
        id_ranges(search)


def test_states_are_checked_and_may_be_several() -> None:
    assert check_states(None, JOB_STATES) is None
    assert check_states("dead", JOB_STATES) == ("dead",)
    assert check_states("running, dead,running", JOB_STATES) == ("running", "dead")
    assert check_states(["completed", "cancelled"], JOB_STATES) == ("completed", "cancelled")
    for bad in ["lost", ["dead", "lost"], [], [3], 3, ""]:
        with pytest.raises(InvalidOptionError):
            check_states(bad, JOB_STATES)
    with pytest.raises(
        InvalidOptionError, match=r"unknown state 'running': use one of completed, cancelled, dead"
    ):
        check_states("running", ("completed", "cancelled", "dead"))


def test_filters_are_checked() -> None:
    now = datetime.now(UTC)
    checked = JobFilters.of(queue="emails", task="send", key="tenant-1", enqueued_after=now)
    assert checked.params()["queue"] == "emails"
    assert checked.params()["enqueued_after"] == now
    refusals = {
        "queue name 'bad queue' is not allowed": {"queue": "bad queue"},
        "queue must be a string": {"queue": 5},
        "task must not be empty": {"task": ""},
        "task cannot be stored: it holds a NUL": {"task": "a\x00b"},
        "key cannot be stored: it holds a lone surrogate": {"key": "\ud800"},
        "key is longer than 1000": {"key": "k" * 1001},
        "unique_key must be a string": {"unique_key": ["u"]},
        "enqueued_after must carry a time zone": {"enqueued_after": datetime(2026, 1, 1)},
        "finished_before must be a datetime": {"finished_before": "yesterday"},
        "enqueued_after must be earlier than enqueued_before": {
            "enqueued_after": now,
            "enqueued_before": now,
        },
    }
    for message, given_filters in refusals.items():
        with pytest.raises(InvalidOptionError, match=message):
            JobFilters.of(**given_filters)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match=r"died_after must be earlier than died_before"):
        JobFilters.of(finished_after=now, finished_before=now - timedelta(1), finished="died")


def test_which_tables_the_filters_read() -> None:
    assert JobFilters.of().reads(("available", "running"))
    assert not JobFilters.of(state="dead").reads(("available", "running"))
    assert JobFilters.of(state="dead").reads(("dead",))
    # A bound on the finish time leaves the live jobs out.
    assert not JobFilters.of(finished_after=datetime.now(UTC)).reads(("available",))
    assert JobFilters.of(finished_after=datetime.now(UTC)).reads(("completed", "cancelled"))


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [(timedelta(hours=2), timedelta(hours=2)), (90, timedelta(seconds=90)), (0.5, timedelta(seconds=0.5))],
)
def test_older_than_is_a_timedelta_or_seconds(given_value: object, expected: timedelta) -> None:
    assert check_older_than(given_value) == expected


@pytest.mark.parametrize(
    "bad",
    [timedelta(seconds=-1), -5, True, "1h", None, float("inf"), 1e300, timedelta.max, timedelta(days=36501)],
)
def test_older_than_out_of_range_is_refused(bad: object) -> None:
    with pytest.raises(InvalidOptionError, match=r"older_than"):
        check_older_than(bad)
