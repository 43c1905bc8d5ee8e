"""WakeUps: every commit handed to it is followed by a wake-up sent after it, one in flight
at a time, the queues committed meanwhile coalesced into the next."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from conveyor.queue.wake_ups import WakeUps


class Sender:
    """Records each send and lets the test decide when it returns."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail = 0  # how many sends from now on fail

    async def __call__(self, queues: Sequence[str]) -> None:
        self.sent.append(list(queues))
        self.started.set()
        await self.release.wait()
        if self.fail:
            self.fail -= 1
            raise ConnectionError("server closed the connection")


async def test_commits_while_a_wake_up_is_in_flight_are_woken_by_the_next() -> None:
    sender = Sender()
    wake_ups = WakeUps(sender)
    wake_ups.after_commit("emails")
    await sender.started.wait()
    # Committed after the first wake-up was sent: it may have been claimed before them.
    wake_ups.after_commit("emails")
    wake_ups.after_commit("exports")
    wake_ups.after_commit("emails")
    assert sender.sent == [["emails"]]
    sender.release.set()
    await wake_ups.flush()
    assert sender.sent == [["emails"], ["emails", "exports"]]


async def test_one_wake_up_per_commit_when_none_is_in_flight() -> None:
    sender = Sender()
    sender.release.set()
    wake_ups = WakeUps(sender)
    for _ in range(3):
        wake_ups.after_commit("default")
        await wake_ups.flush()
    assert sender.sent == [["default"]] * 3


async def test_a_wake_up_that_fails_once_is_sent_again(caplog: pytest.LogCaptureFixture) -> None:
    sender = Sender()
    sender.fail = 1
    sender.release.set()
    wake_ups = WakeUps(sender)
    with caplog.at_level(logging.WARNING, logger="conveyor.client"):
        wake_ups.after_commit("default")
        await wake_ups.flush()
    assert sender.sent == [["default"], ["default"]]  # the second went through
    assert "could not wake" not in caplog.text


async def test_a_wake_up_that_fails_twice_is_logged_and_later_ones_are_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = Sender()
    sender.fail = 2
    sender.release.set()
    wake_ups = WakeUps(sender)
    with caplog.at_level(logging.WARNING, logger="conveyor.client"):
        wake_ups.after_commit("default")
        await wake_ups.flush()
    assert "could not wake the workers of default" in caplog.text
    wake_ups.after_commit("default")
    await wake_ups.flush()
    assert sender.sent == [["default"]] * 3


async def test_a_lone_enqueue_notifies_in_its_transaction_and_concurrent_ones_after_commit() -> None:
    sender = Sender()
    sender.release.set()
    wake_ups = WakeUps(sender)
    async with wake_ups.enqueue("default") as first:
        async with wake_ups.enqueue("default") as second:
            assert sender.sent == []
        await wake_ups.flush()
        assert sender.sent == [["default"]]  # the second's, sent after it committed
    await wake_ups.flush()
    assert (first, second) == (True, False)
    assert sender.sent == [["default"]]
    async with wake_ups.enqueue("default") as alone:
        assert alone


async def test_an_enqueue_that_failed_wakes_nobody() -> None:
    sender = Sender()
    sender.release.set()
    wake_ups = WakeUps(sender)
    async with wake_ups.enqueue("default"):
        with pytest.raises(ValueError, match="refused"):
            async with wake_ups.enqueue("default"):
                raise ValueError("refused")
    await wake_ups.flush()
    assert sender.sent == []
