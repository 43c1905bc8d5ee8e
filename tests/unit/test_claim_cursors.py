"""Unit tests for conveyor.queue.cursors: where a claim starts, and when it reads from the start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.jobs import ClaimedJob
from conveyor.queue.cursors import FACTOR, MAX_INTERVAL, MIN_INTERVAL, ClaimCursors

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job(job_id: int, *, queue: str = "q", priority: int = 2, seconds: float = 0.0) -> ClaimedJob:
    run_at = T0 + timedelta(seconds=seconds)
    return ClaimedJob(job_id, 1, queue, "t", {}, 1, 5, priority, run_at, run_at)


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


def test_the_first_claim_reads_from_the_start(clock: FakeMonotonic) -> None:
    assert ClaimCursors(clock).for_next_claim() == {}


def test_each_level_of_each_queue_moves_to_the_last_job_claimed_there(clock: FakeMonotonic) -> None:
    cursors = ClaimCursors(clock)
    jobs = [job(3, seconds=1), job(1, seconds=2), job(2, seconds=2), job(9, priority=0), job(5, queue="r")]
    cursors.claimed(jobs, full_scan=True, started=clock.now)
    clock.now += 0.001  # a full scan just ran: the next claim reads from the cursors
    assert cursors.for_next_claim() == {
        ("q", 2): (T0 + timedelta(seconds=2), 2),  # run_at first, then id
        ("q", 0): (T0, 9),
        ("r", 2): (T0, 5),
    }


def test_a_cursor_never_moves_back(clock: FakeMonotonic) -> None:
    """A job found behind a cursor (by a full scan) does not pull the cursor back over the
    dead entries it skips."""
    cursors = ClaimCursors(clock)
    cursors.claimed([job(10, seconds=5)], full_scan=True, started=clock.now)
    cursors.claimed([job(4, seconds=1)], full_scan=False, started=clock.now)
    assert cursors.for_next_claim() == {("q", 2): (T0 + timedelta(seconds=5), 10)}


def test_full_scans_come_at_an_interval_of_twenty_times_what_they_cost_beyond_a_cursor_claim(
    clock: FakeMonotonic,
) -> None:
    cursors = ClaimCursors(clock)
    started = clock.now
    clock.now += 0.002  # a claim from cursors taking 2 ms
    cursors.claimed([job(1)], full_scan=False, started=started)
    started = clock.now
    clock.now += 0.006  # a full scan taking 6 ms: 4 ms walking dead entries
    cursors.claimed([job(2)], full_scan=True, started=started)
    assert cursors.interval == pytest.approx(FACTOR * 0.004)
    clock.now += FACTOR * 0.004 - 0.001
    assert cursors.for_next_claim() != {}
    assert cursors.full_scan_due_in() == pytest.approx(0.001)
    clock.now += 0.002
    assert cursors.for_next_claim() == {}  # due: the next claim reads from the start


def test_the_interval_stays_within_its_bounds(clock: FakeMonotonic) -> None:
    cursors = ClaimCursors(clock)
    cursors.claimed([], full_scan=True, started=clock.now)  # instant
    assert cursors.interval == MIN_INTERVAL
    started = clock.now
    clock.now += 60.0  # a full scan walking millions of dead entries
    cursors.claimed([], full_scan=True, started=started)
    assert cursors.interval == MAX_INTERVAL


def test_full_scans_costing_what_cursor_claims_cost_come_at_the_shortest_interval(
    clock: FakeMonotonic,
) -> None:
    cursors = ClaimCursors(clock)
    for full_scan in (False, True):
        started = clock.now
        clock.now += 0.010  # a large claim, the same from the start as from the cursors
        cursors.claimed([job(1)], full_scan=full_scan, started=started)
    assert cursors.interval == MIN_INTERVAL


def test_rescan_makes_the_next_claim_a_full_scan(clock: FakeMonotonic) -> None:
    cursors = ClaimCursors(clock)
    cursors.claimed([job(1)], full_scan=True, started=clock.now)
    assert cursors.for_next_claim() != {}
    cursors.rescan()
    assert cursors.for_next_claim() == {}
