"""The limit on failed authentication attempts, with a clock the tests move."""

from __future__ import annotations

import sys
import threading

import pytest

from conveyor.ops.failed_attempts import FailedAttempts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_client_is_refused_after_the_limit_until_its_oldest_failure_leaves_the_window(clock: Clock) -> None:
    limiter = FailedAttempts(limit=3, window=60, clock=clock)
    assert limiter.check("a") is None
    for _ in range(3):
        assert limiter.check("a") is None
        limiter.failed("a")
        clock.now += 10  # failures at 1000, 1010, 1020
    # now 1030: three failures in the window; the oldest leaves it at 1060
    assert limiter.check("a") == pytest.approx(30)
    assert limiter.check("b") is None  # others are not affected
    clock.now = 1059.5
    assert limiter.check("a") == pytest.approx(0.5)
    clock.now = 1060
    assert limiter.check("a") is None  # one slot free again
    limiter.failed("a")  # failures at 1010, 1020, 1060
    assert limiter.check("a") == pytest.approx(10)  # until 1070, when 1010 leaves
    clock.now = 1070
    assert limiter.check("a") is None


def test_failures_spread_wider_than_the_window_never_refuse(clock: Clock) -> None:
    limiter = FailedAttempts(limit=2, window=60, clock=clock)
    for _ in range(20):
        assert limiter.check("a") is None
        limiter.failed("a")
        clock.now += 30.001


def test_a_refused_client_that_keeps_failing_stays_refused(clock: Clock) -> None:
    # A caller may count failures even while refusing (it should not, but nothing breaks):
    # the window holds the latest `limit` failures.
    limiter = FailedAttempts(limit=2, window=60, clock=clock)
    limiter.failed("a")
    limiter.failed("a")
    clock.now += 50
    limiter.failed("a")
    assert limiter.check("a") == pytest.approx(10)  # the second failure, at 1000, leaves at 1060
    clock.now += 10
    assert limiter.check("a") is None  # one failure in the window: the latest


def test_memory_is_bounded_the_least_recent_client_is_forgotten(clock: Clock) -> None:
    limiter = FailedAttempts(limit=1, window=60, max_clients=3, clock=clock)
    for client in ("a", "b", "c"):
        limiter.failed(client)
        clock.now += 1
    limiter.failed("a")  # a is now the most recent; b the least
    limiter.failed("d")
    assert len(limiter) == 3
    assert limiter.check("b") is None  # forgotten
    assert limiter.check("a") is not None
    assert limiter.check("c") is not None
    assert limiter.check("d") is not None


def test_clients_whose_failures_expired_are_forgotten(clock: Clock) -> None:
    limiter = FailedAttempts(limit=5, window=60, clock=clock)
    for number in range(100):
        limiter.failed(f"client {number}")
    assert len(limiter) == 100
    clock.now += 61
    limiter.failed("late")
    assert len(limiter) == 1
    assert limiter.check("late") is None


def test_a_check_forgets_a_client_whose_failures_expired(clock: Clock) -> None:
    limiter = FailedAttempts(limit=1, window=60, clock=clock)
    limiter.failed("a")
    assert limiter.check("a") == pytest.approx(60)
    clock.now += 60
    assert limiter.check("a") is None
    assert len(limiter) == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        FailedAttempts(limit=0)
    with pytest.raises(ValueError, match="window"):
        FailedAttempts(window=0)
    with pytest.raises(ValueError, match="max_clients"):
        FailedAttempts(max_clients=0)


def test_threads_counting_at_once_lose_no_failure(clock: Clock) -> None:
    # Threads switch every microsecond, so that unlocked updates would interleave (this test
    # fails with the lock taken out).
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    # Refused at exactly 8,000 failures: one lost to a race would leave it allowed.
    limiter = FailedAttempts(limit=8000, window=60, clock=clock)
    start = threading.Barrier(8)

    def fail() -> None:
        start.wait(10)
        for _ in range(1000):
            limiter.failed("a")
            limiter.check("a")

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join(30)
    finally:
        sys.setswitchinterval(previous)
    assert limiter.check("a") == pytest.approx(60)


def test_count_is_the_failures_within_the_window(clock: Clock) -> None:
    limiter = FailedAttempts(limit=3, window=60, clock=clock)
    assert limiter.count("a") == 0
    limiter.failed("a")
    clock.now += 30
    limiter.failed("a")
    assert (limiter.count("a"), limiter.count("b")) == (2, 0)
    clock.now += 30  # the first leaves the window
    assert limiter.count("a") == 1
    for _ in range(5):
        limiter.failed("a")
    assert limiter.count("a") == 3  # never more than the limit is kept
