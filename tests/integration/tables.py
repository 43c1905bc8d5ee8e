"""Moving jobs between Conveyor's tables by hand, for tests that need finished and dead jobs
with chosen times: the rows are written as an ack (job_history) or a burial (dead_jobs)
writes them, from the jobs the client enqueued."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..helpers import DB

MOVE_TO_HISTORY = """
WITH gone AS (DELETE FROM {schema}.jobs WHERE id = ANY (%(ids)s) RETURNING *)
INSERT INTO {schema}.job_history
    (id, run_at, enqueued_at, started_at, finished_at, worker_id, attempt, max_attempts, priority, state,
     queue, task, unique_key, args, result, errors, key, meta, after_id, batch_id)
SELECT id, run_at, enqueued_at, coalesce(started_at, %(at)s::timestamptz), %(at)s::timestamptz, NULL, greatest(attempt, 1), max_attempts,
       priority, %(state)s::text, queue, task, unique_key, args, NULL, errors, key, meta, after_id, batch_id
FROM gone
"""

MOVE_TO_DEAD = """
WITH gone AS (DELETE FROM {schema}.jobs WHERE id = ANY (%(ids)s) RETURNING *)
INSERT INTO {schema}.dead_jobs
    (id, run_at, enqueued_at, started_at, died_at, attempt, max_attempts, priority, queue, task, unique_key,
     args, errors, key, meta)
SELECT id, run_at, enqueued_at, coalesce(started_at, %(at)s::timestamptz), %(at)s::timestamptz, max_attempts, max_attempts, priority,
       queue, task, unique_key, args, errors || jsonb_build_array(jsonb_build_object('error', %(error)s::text)), key, meta
FROM gone
"""


def finish(db: DB, ids: list[int], at: datetime, state: str = "completed") -> None:
    db.all(MOVE_TO_HISTORY, {"ids": ids, "at": at, "state": state})


def bury(db: DB, ids: list[int], at: datetime, error: str = "ValueError: boom") -> None:
    db.all(MOVE_TO_DEAD, {"ids": ids, "at": at, "error": error})


def ids_of(rows: list[dict[str, Any]]) -> list[int]:
    return [row["id"] for row in rows]
