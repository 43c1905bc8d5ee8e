"""The Jobs pages' pure logic: redaction, the redaction setting, the list's filters and the
actions offered per state and role."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from conveyor.dashboard.jobs_view import (
    DEFAULT_REDACT,
    MAX_LIMIT,
    REDACT_ENV,
    REDACTED,
    actions_for,
    list_query,
    redact,
    redact_fields,
    redact_fields_from_env,
)
from conveyor.errors import InvalidOptionError
from conveyor.ops.roles import Role

FIELDS = redact_fields(DEFAULT_REDACT)


def test_named_fields_are_redacted_at_any_depth_whatever_their_case() -> None:
    value = {
        "user": "ada",
        "Password": "pw",
        "nested": {"TOKEN": "t", "list": [{"api_key": "k", "keep": 1}, "token", ["secret"]]},
        "headers": {"Authorization": {"scheme": "Bearer", "value": "x"}},
        "secret_sauce": "kept: only whole names match",
    }
    before = copy.deepcopy(value)
    assert redact(value, FIELDS) == {
        "user": "ada",
        "Password": REDACTED,
        "nested": {"TOKEN": REDACTED, "list": [{"api_key": REDACTED, "keep": 1}, "token", ["secret"]]},
        "headers": {"Authorization": REDACTED},
        "secret_sauce": "kept: only whole names match",
    }
    assert value == before  # a copy: the job itself is unchanged
    assert redact([{"secret": None}], FIELDS) == [{"secret": REDACTED}]
    assert redact("password", FIELDS) == "password"
    assert redact(42, FIELDS) == 42
    assert redact({"password": "pw"}, frozenset()) == {"password": "pw"}


def test_the_setting_reads_names_separated_by_commas() -> None:
    assert redact_fields(" Card_Number, ,CVV ") == frozenset({"card_number", "cvv"})
    assert redact_fields(["PIN", ""]) == frozenset({"pin"})
    assert redact_fields_from_env({}) == FIELDS
    assert redact_fields_from_env({REDACT_ENV: "iban,Pin"}) == frozenset({"iban", "pin"})
    assert redact_fields_from_env({REDACT_ENV: ""}) == frozenset()
    assert redact({"iban": "DE00", "password": "pw"}, redact_fields("iban")) == {
        "iban": REDACTED,
        "password": "pw",
    }


def test_the_lists_filters() -> None:
    query = list_query(
        {
            "queue": "mail",
            "state": "dead",
            "task": " send ",
            "key": "",
            "q": "42",
            "enqueued_after": "2026-12-07T10:30",
            "enqueued_before": "2026-12-07T11:00:15",
            "limit": "5",
            "cursor": "abc",
        }
    )
    assert query.filters == {
        "queue": "mail",
        "state": "dead",
        "task": "send",
        "id_prefix": "42",
        "enqueued_after": datetime(2026, 12, 7, 10, 30, tzinfo=UTC),
        "enqueued_before": datetime(2026, 12, 7, 11, 0, 15, tzinfo=UTC),
    }
    assert query.limit == 5
    assert query.cursor == "abc"
    assert query.link_params(cursor="next")["cursor"] == "next"
    assert "cursor" not in query.link_params()
    assert query.link_params()["limit"] == "5"
    assert list_query({"q": "order-17"}).filters == {"unique_key": "order-17"}
    assert list_query({}).filters == {}
    assert list_query({"limit": "99999"}).limit == MAX_LIMIT
    for bad in ({"state": "sleeping"}, {"enqueued_after": "yesterday"}, {"limit": "0"}, {"limit": "-3"}):
        with pytest.raises(InvalidOptionError):
            list_query(bad)


@pytest.mark.parametrize(
    ("state", "role", "offered"),
    [
        ("scheduled", Role.VIEWER, []),
        ("scheduled", Role.OPERATOR, ["run-now", "cancel"]),
        ("scheduled", Role.ADMIN, ["run-now", "cancel", "delete"]),
        ("available", Role.ADMIN, ["cancel", "delete"]),
        ("blocked", Role.ADMIN, ["cancel"]),
        ("running", Role.OPERATOR, ["abort"]),
        ("dead", Role.OPERATOR, ["retry"]),
        ("dead", Role.VIEWER, []),
        ("completed", Role.ADMIN, []),
        ("cancelled", Role.ADMIN, []),
    ],
)
def test_the_actions_offered(state: str, role: Role, offered: list[str]) -> None:
    assert actions_for({"state": state}, role) == offered


def test_a_batchs_job_is_not_offered_for_deletion() -> None:
    assert actions_for({"state": "available", "batch_id": 3}, Role.ADMIN) == ["cancel"]
