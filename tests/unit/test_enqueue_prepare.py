"""Unit tests for conveyor.queue.enqueue.prepare and check_queue_name (no database)."""

from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest

from conveyor.errors import ArgumentsError, InvalidOptionError, UnknownTaskError
from conveyor.queue.enqueue import (
    MAX_UNIQUE_KEY,
    JobRequest,
    PreparedJob,
    prepare,
)
from conveyor.tasks import Registry, check_queue_name

WHEN = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def send_email(to: str, subject: str = "") -> None: ...


def noop() -> None: ...


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.task(queue="emails", priority="high", max_attempts=7)(send_email)
    registry.task(noop)
    return registry


def prepared(registry: Registry, task: Any = "noop", **options: Any) -> PreparedJob:
    args = options.pop("args", {})
    return prepare(registry, JobRequest(task, args, **options))


# -- defaults and overrides ---------------------------------------------------------------


def test_prepare_fills_in_the_task_defaults(registry: Registry) -> None:
    job = prepared(registry, "send_email", args={"to": "a@example.com"})
    assert job == PreparedJob(
        task="send_email",
        args_json='{"to":"a@example.com"}',
        queue="emails",
        declared_queue=True,
        priority=1,
        max_attempts=7,
        run_at=None,
        delay=timedelta(0),
        unique_key=None,
    )


def test_arguments_may_be_left_out_or_given_as_any_mapping(registry: Registry) -> None:
    assert prepare(registry, JobRequest("noop")).args_json == "{}"
    given = MappingProxyType({"to": "a@example.com"})
    assert prepare(registry, JobRequest("send_email", given)).args_json == '{"to":"a@example.com"}'


def test_prepare_applies_every_override(registry: Registry) -> None:
    job = prepared(
        registry,
        "send_email",
        args={"to": "x", "subject": "hi"},
        queue="bulk-mail",
        priority="low",
        run_at=WHEN,
        unique_key="welcome:42",
        max_attempts=2,
    )
    assert job == PreparedJob(
        task="send_email",
        args_json='{"to":"x","subject":"hi"}',
        queue="bulk-mail",
        declared_queue=False,
        priority=3,
        max_attempts=2,
        run_at=WHEN,
        delay=timedelta(0),
        unique_key="welcome:42",
    )


@pytest.mark.parametrize(("priority", "expected"), [("critical", 0), ("HIGH", 1), ("3", 3), (0, 0), (2, 2)])
def test_priority_override(registry: Registry, priority: int | str, expected: int) -> None:
    assert prepared(registry, "send_email", args={"to": "x"}, priority=priority).priority == expected


def test_bad_priority_override(registry: Registry) -> None:
    with pytest.raises(InvalidOptionError, match=r"^unknown priority 'urgent'"):
        prepared(registry, priority="urgent")
    with pytest.raises(InvalidOptionError, match=r"^priority 9 is out of range"):
        prepared(registry, priority=9)


def test_task_may_be_given_by_function_or_task(registry: Registry) -> None:
    by_function = prepared(registry, send_email, args={"to": "x"})
    by_task = prepared(registry, registry.get("send_email"), args={"to": "x"})
    assert by_function == by_task
    assert by_function.task == "send_email"


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        (0, timedelta(0)),
        (1.5, timedelta(seconds=1.5)),
        (90, timedelta(seconds=90)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_delay_becomes_a_timedelta(registry: Registry, delay: Any, expected: timedelta) -> None:
    job = prepared(registry, delay=delay)
    assert job.delay == expected
    assert job.run_at is None


def test_run_at_with_any_time_zone_is_kept(registry: Registry) -> None:
    plus_two = timezone(timedelta(hours=2))
    when = datetime(2030, 1, 1, 12, 0, tzinfo=plus_two)
    job = prepared(registry, run_at=when)
    assert job.run_at == when
    assert job.run_at.tzinfo is plus_two  # type: ignore[union-attr]
    assert job.delay == timedelta(0)


# -- unknown task and bad arguments ----------------------------------------------------------


def test_unknown_task_lists_the_registered_tasks(registry: Registry) -> None:
    with pytest.raises(UnknownTaskError) as info:
        prepared(registry, "send_emial")
    assert str(info.value) == "unknown task 'send_emial'; registered: noop, send_email"


def test_unknown_task_with_an_empty_registry() -> None:
    with pytest.raises(UnknownTaskError) as info:
        prepared(Registry(), "anything")
    assert str(info.value) == "unknown task 'anything'; no tasks are registered (import your task modules)"


def test_unknown_task_listing_is_shortened_after_ten() -> None:
    registry = Registry()
    for i in range(12):

        def f() -> None: ...

        registry.task(name=f"task_{i:02d}")(f)
    with pytest.raises(UnknownTaskError) as info:
        prepared(registry, "missing")
    listing = ", ".join(f"task_{i:02d}" for i in range(10))
    assert str(info.value) == f"unknown task 'missing'; registered: {listing} ..."


def test_unregistered_function_is_named_by_its_name(registry: Registry) -> None:
    def stray() -> None: ...

    with pytest.raises(UnknownTaskError, match=r"^unknown task 'stray'; registered: noop, send_email$"):
        prepared(registry, stray)


def test_arguments_are_checked_against_the_task(registry: Registry) -> None:
    with pytest.raises(ArgumentsError) as info:
        prepared(registry, "send_email", args={"to": 5})
    assert str(info.value) == "task 'send_email': argument 'to' should be str, got int 5"
    with pytest.raises(ArgumentsError, match=r"^task 'send_email': missing required argument 'to'$"):
        prepared(registry, "send_email", args={})


def test_arguments_must_be_json(registry: Registry) -> None:
    def loose(payload) -> None: ...  # type: ignore[no-untyped-def]

    registry.task(loose)
    with pytest.raises(ArgumentsError, match=r"^task 'loose': arguments are not JSON: "):
        prepared(registry, "loose", args={"payload": {1, 2}})


# -- queue names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["default", "a", "7", "emails.v2", "tenant:42", "Q-1_x", "A" * 127, "a" + "_.:-" * 30],
)
def test_good_queue_names(name: str) -> None:
    assert check_queue_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-lead",
        "_lead",
        ".lead",
        ":lead",
        "has space",
        "tab\there",
        "slash/x",
        "ünïcode",
        "semi;colon",
        "a" * 128,
    ],
)
def test_bad_queue_names(name: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        check_queue_name(name)
    assert str(info.value) == (
        f"queue name {name!r} is not allowed: use letters, digits and _ . : - "
        "(at most 127, starting with a letter or digit)"
    )


@pytest.mark.parametrize("name", ["default\n", "emails\n"])
def test_queue_name_with_a_trailing_newline_is_refused(name: str) -> None:
    """``$`` in a Python regex also matches before a final newline."""
    with pytest.raises(InvalidOptionError):
        check_queue_name(name)


@pytest.mark.parametrize("name", [None, 5, b"default"])
def test_queue_name_must_be_a_string(name: Any) -> None:
    with pytest.raises(InvalidOptionError, match=r"is not allowed"):
        check_queue_name(name)


def test_prepare_checks_the_queue_name(registry: Registry) -> None:
    with pytest.raises(InvalidOptionError, match=r"^queue name 'bad queue' is not allowed"):
        prepared(registry, queue="bad queue")


# -- declared_queue ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "args", "queue", "declared"),
    [
        ("noop", {}, None, True),  # the task's own queue, "default"
        ("noop", {}, "default", True),
        ("noop", {}, "emails", True),  # another registered task declares it
        ("send_email", {"to": "x"}, None, True),
        ("send_email", {"to": "x"}, "default", True),
        ("send_email", {"to": "x"}, "reports", False),
        ("noop", {}, "Emails", False),  # names are case-sensitive
        ("noop", {}, "emails.v2", False),
    ],
)
def test_declared_queue(
    registry: Registry, task: str, args: dict[str, Any], queue: str, declared: bool
) -> None:
    assert prepared(registry, task, args=args, queue=queue).declared_queue is declared


def test_default_queue_is_declared_even_when_no_task_uses_it() -> None:
    registry = Registry()
    registry.task(queue="only")(noop)
    assert registry.queues() == {"only"}
    assert prepared(registry, queue="default").declared_queue is True
    assert prepared(registry).declared_queue is True  # the task's own queue
    assert prepared(registry, queue="other").declared_queue is False


# -- run_at and delay -------------------------------------------------------------------------


def test_naive_run_at_is_refused(registry: Registry) -> None:
    with pytest.raises(InvalidOptionError) as info:
        prepared(registry, run_at=datetime(2030, 1, 1, 9, 30))
    assert str(info.value) == ("task 'noop': run_at must carry a time zone (got naive 2030-01-01T09:30:00)")


@pytest.mark.parametrize("delay", [0, 10, timedelta(0), timedelta(hours=1)])
def test_run_at_and_delay_together_are_refused(registry: Registry, delay: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        prepared(registry, run_at=WHEN, delay=delay)
    assert str(info.value) == "task 'noop': give run_at or delay, not both"


@pytest.mark.parametrize("delay", [-1, -0.001, timedelta(seconds=-1), timedelta(microseconds=-1)])
def test_negative_delay_is_refused(registry: Registry, delay: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        prepared(registry, delay=delay)
    assert str(info.value) == "task 'noop': delay must not be negative"


@pytest.mark.parametrize("delay", [True, "10", [1]])
def test_delay_of_the_wrong_type_is_refused(registry: Registry, delay: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        prepared(registry, delay=delay)
    assert str(info.value) == f"delay must be seconds or a timedelta, got {delay!r}"


@pytest.mark.parametrize("delay", [float("nan"), float("inf"), 1e20])
def test_unrepresentable_delay_is_refused_cleanly(registry: Registry, delay: float) -> None:
    """Every bad option should be an InvalidOptionError, not a ValueError/OverflowError."""
    with pytest.raises(InvalidOptionError):
        prepared(registry, delay=delay)


# -- max_attempts and unique_key ----------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [0, -1, True, False, 2.5, "3"])
def test_bad_max_attempts_is_refused(registry: Registry, max_attempts: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        prepared(registry, max_attempts=max_attempts)
    assert str(info.value) == "task 'noop': max_attempts must be a whole number >= 1"


@pytest.mark.parametrize("max_attempts", [1, 100])
def test_good_max_attempts(registry: Registry, max_attempts: int) -> None:
    assert prepared(registry, max_attempts=max_attempts).max_attempts == max_attempts


@pytest.mark.parametrize("key", ["", "k" * (MAX_UNIQUE_KEY + 1), "k" * 10_000])
def test_bad_unique_key_is_refused(registry: Registry, key: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        prepared(registry, unique_key=key)
    assert str(info.value) == "task 'noop': unique_key must be 1 to 512 characters"


@pytest.mark.parametrize("key", ["k", "k" * MAX_UNIQUE_KEY, "user:42:welcome", "é" * 512])
def test_good_unique_key(registry: Registry, key: str) -> None:
    assert MAX_UNIQUE_KEY == 512
    assert prepared(registry, unique_key=key).unique_key == key


def test_task_errors_come_before_option_errors(registry: Registry) -> None:
    with pytest.raises(UnknownTaskError):
        prepared(registry, "nope", queue="bad queue", max_attempts=0)
    with pytest.raises(ArgumentsError):
        prepared(registry, "send_email", args={}, queue="bad queue")
