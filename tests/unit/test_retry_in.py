"""RetryIn: a task that says when its next attempt may run, judged by the executor."""

from __future__ import annotations

import math
import pickle
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor import Backoff, FrozenClock, Registry, RetryIn
from conveyor.errors import MAX_RETRY_IN
from conveyor.jobs import ClaimedJob
from conveyor.queue.executor import Bury, Executor, Retry


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def claimed(task: str, attempt: int, max_attempts: int = 5) -> ClaimedJob:
    now = datetime.now(UTC)
    return ClaimedJob(1, 1, "default", task, {}, attempt, max_attempts, 2, now, now)


def executor(registry: Registry, threads: ThreadPoolExecutor) -> Executor:
    return Executor(
        registry, threads, uuid.uuid4(), FrozenClock(), lambda _: lambda p, m: None, rand=lambda: 0.5
    )


@pytest.mark.parametrize("seconds", [-1, math.nan, math.inf, MAX_RETRY_IN + 1, "5", True, None])
def test_refuses_a_wait_that_is_not_a_number_from_zero_to_a_year(seconds: Any) -> None:
    with pytest.raises(ValueError, match="RetryIn takes"):
        RetryIn(seconds)


def test_message_says_the_reason_and_the_wait() -> None:
    assert (
        str(RetryIn(30, "HTTP 429 from the receiver"))
        == "HTTP 429 from the receiver (next attempt in 30 s or later)"
    )
    assert "asked to be tried again later" in str(RetryIn(0))
    assert RetryIn(1.5).seconds == 1.5
    copied = pickle.loads(pickle.dumps(RetryIn(30, "busy")))
    assert (copied.seconds, copied.reason, str(copied)) == (
        30,
        "busy",
        "busy (next attempt in 30 s or later)",
    )


async def test_the_longer_of_the_wait_and_the_backoff_wins(threads: ThreadPoolExecutor) -> None:
    registry = Registry()
    asked: list[float] = []

    @registry.task(backoff=Backoff.fixed(10))
    async def later() -> None:
        raise RetryIn(asked[-1], "rate limited")

    @registry.task(backoff=Backoff.fixed(10))
    def later_in_a_thread() -> None:
        raise RetryIn(asked[-1], "rate limited")

    run = executor(registry, threads)
    for name in ("later", "later_in_a_thread"):
        asked.append(300)
        outcome = await run.execute(claimed(name, 1))
        assert isinstance(outcome, Retry)
        assert outcome.delay == 300
        assert outcome.error == "RetryIn: rate limited (next attempt in 300 s or later)"
        asked.append(3)
        outcome = await run.execute(claimed(name, 2))
        assert isinstance(outcome, Retry)
        assert outcome.delay == 10  # the backoff is longer


async def test_the_last_attempt_goes_to_the_dead_letter_table(threads: ThreadPoolExecutor) -> None:
    registry = Registry()

    @registry.task
    async def later() -> None:
        raise RetryIn(60, "still busy")

    outcome = await executor(registry, threads).execute(claimed("later", 3, max_attempts=3))
    assert isinstance(outcome, Bury)
    assert "still busy" in outcome.error
