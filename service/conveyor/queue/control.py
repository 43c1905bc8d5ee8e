"""Job control: pause one task everywhere or everything; cancel, abort, run now or delete a job.

Every operation is one call of a SQL function of schema version 9 (its contract is at the
top of sql/migrations/0010_job_control.up.sql; the user's guide is docs/job-control.md), so
Python, the CLI and psql reach the same states with the same checks:

- ``cancel``: a waiting, scheduled or blocked job moves to job_history as 'cancelled' with an
  errors entry saying who and why, and never runs; a running job is aborted.
- ``abort``: a running job gets ``abort_requested_at`` and the worker holding it is notified
  (and learns it at its next heartbeat if the notification is lost); it stops the handler and
  records the job as 'cancelled' ("aborted"). Returns 'aborting' then; a job whose worker
  stopped heartbeating is cancelled at once ('cancelled'). A job that is not running is
  cancelled.
- ``run_now``: a scheduled job (or a retry waiting out its backoff) is available now.
- ``delete_job``: a waiting or scheduled job is removed, leaving no history.

A job that has ended (completed, cancelled, dead) or does not exist is refused: JobStateError
naming the state it ended in, or NotFoundError. Each returns the job's resulting state.

Invariant: a pause is a row in the pauses table; the workers' plain claims read that table in
every statement, so a pause holds from the commit of its call, for every worker at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from ..db.database import Database
from ..errors import ConveyorError, InvalidOptionError, JobStateError, NotFoundError
from ..text import unstorable


@dataclass(frozen=True)
class Pauses:
    """What is paused besides queues."""

    all_paused_at: datetime | None  # everything paused since then; None: not paused
    tasks: Mapping[str, datetime] = field(default_factory=dict)  # paused task -> since when

    @property
    def all_paused(self) -> bool:
        return self.all_paused_at is not None


async def read_pauses(db: Database) -> Pauses:
    rows = await db.fetch("list_pauses")
    everything = next((at for scope, _, at in rows if scope == "all"), None)
    return Pauses(everything, {name: at for scope, name, at in rows if scope == "task"})


MAX_TASK_NAME = 200  # characters (pause_task_v1 refuses longer)
MAX_JOB_ID = 2**63 - 1  # bigint


def check_task_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidOptionError("a task name is required")
    if len(name) > MAX_TASK_NAME:
        raise InvalidOptionError(f"a task name is at most {MAX_TASK_NAME} characters (got {len(name)})")
    if (why := unstorable(name)) is not None:
        raise InvalidOptionError(f"a task name cannot be stored: {why}")
    return name


def check_text(what: str, value: str | None) -> str | None:
    """An optional text argument (reason, by): a str PostgreSQL can store, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidOptionError(f"{what} must be a string, got {type(value).__name__}")
    if (why := unstorable(value)) is not None:
        raise InvalidOptionError(f"{what} cannot be stored: {why}")
    return value


async def call(db: Database, name: str, params: dict[str, Any]) -> str | None:
    """Run a job-control query; its refusals become ConveyorErrors. The single value it returns."""
    try:
        rows = await db.fetch(name, params)
    except psycopg.errors.NoDataFound as exc:
        raise NotFoundError(_message(exc)) from None
    except psycopg.errors.ObjectNotInPrerequisiteState as exc:
        raise JobStateError(_message(exc)) from None
    except psycopg.errors.InvalidParameterValue as exc:
        raise ConveyorError(_message(exc)) from None
    value = rows[0][0] if rows else None
    return None if value is None else str(value)


def check_job_id(job_id: int) -> int:
    if isinstance(job_id, bool) or not isinstance(job_id, int) or not 1 <= job_id <= MAX_JOB_ID:
        raise InvalidOptionError(f"a job id is an integer from 1 to 2**63-1, got {job_id!r}")
    return job_id


def _message(exc: Exception) -> str:
    """The refusal's message without its "conveyor.fn: " prefix."""
    diag = getattr(exc, "diag", None)
    message = str(getattr(diag, "message_primary", None) or exc)
    return _FUNCTION_PREFIX.sub("", message, count=1)


_FUNCTION_PREFIX = re.compile(r"^conveyor\.\w+: ")
