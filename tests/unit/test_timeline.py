"""Unit tests for conveyor.queue.timeline: a job's events in time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.queue.timeline import timeline

T = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_dead_job_after_two_failed_attempts() -> None:
    job = {
        "state": "dead",
        "attempt": 2,
        "enqueued_at": T,
        "run_at": T + timedelta(minutes=1),
        "started_at": T + timedelta(minutes=3),
        "finished_at": None,
        "died_at": T + timedelta(minutes=4),
        "lease_expires_at": None,
        "errors": [
            {"attempt": 1, "at": (T + timedelta(minutes=2)).isoformat(), "error": "ValueError: a"},
            {"attempt": 2, "at": (T + timedelta(minutes=4)).isoformat(), "error": "ValueError: b"},
            {"attempt": 3, "at": "2026-01-01T00:05:00", "error": "no zone: left out"},
            {"attempt": 4, "at": "not a time", "error": "left out"},
        ],
    }
    assert timeline(job) == [
        (T, "enqueued"),
        (T + timedelta(minutes=1), "due"),
        (T + timedelta(minutes=2), "attempt 1 failed: ValueError: a"),
        (T + timedelta(minutes=3), "attempt 2 started"),
        (T + timedelta(minutes=4), "attempt 2 failed: ValueError: b"),
        (T + timedelta(minutes=4), "dead"),
    ]


def test_a_scheduled_job_is_due_later_and_a_running_one_shows_its_lease() -> None:
    scheduled = {"state": "scheduled", "enqueued_at": T, "run_at": T + timedelta(hours=1), "errors": []}
    assert timeline(scheduled) == [(T, "enqueued"), (T + timedelta(hours=1), "due (waiting for its time)")]
    running = {
        "state": "running",
        "attempt": 1,
        "enqueued_at": T,
        "run_at": T,
        "started_at": T + timedelta(seconds=1),
        "lease_expires_at": T + timedelta(seconds=31),
        "errors": None,
    }
    assert [event for _, event in timeline(running)] == [
        "enqueued",
        "attempt 1 started",
        "lease expires unless renewed",
    ]
