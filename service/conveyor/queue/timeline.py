"""A job's timeline: what happened to it, in time order, from its times and its errors (for
``conveyor jobs show``, the HTTP API's job detail and the dashboard)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any


def timeline(job: Mapping[str, Any]) -> list[tuple[datetime, str]]:
    """(time, event) pairs, oldest first, for a job as ``Conveyor.get_job`` returns it: enqueued,
    due (when later than enqueued), each failed attempt (from its errors), started, the lease's
    end, and how it ended (finished_at or died_at, with its state). An error written without
    a time zone is left out."""
    events: list[tuple[datetime, str]] = [(job["enqueued_at"], "enqueued")]
    run_at = job.get("run_at")
    if run_at is not None and run_at > job["enqueued_at"]:
        events.append((run_at, "due" if job["state"] != "scheduled" else "due (waiting for its time)"))
    for error in job.get("errors") or []:
        at = _time(error.get("at"))
        if at is not None:
            events.append((at, f"attempt {error.get('attempt')} failed: {error.get('error')}"))
    if job.get("started_at") is not None:
        events.append((job["started_at"], f"attempt {job['attempt']} started"))
    if job.get("lease_expires_at") is not None:
        events.append((job["lease_expires_at"], "lease expires unless renewed"))
    ended = job.get("finished_at") or job.get("died_at")
    if ended is not None:
        events.append((ended, job["state"]))
    return sorted(events, key=lambda event: event[0])


def _time(text: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None  # a hand-written error without a zone: left out
