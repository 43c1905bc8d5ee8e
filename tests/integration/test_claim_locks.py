"""A claim across several queues locks only the rows it takes, in priority order across them.

A row a claim locks and does not take is skipped (FOR UPDATE SKIP LOCKED) by every other
worker asking its queue while the claim runs: that worker comes back short and waits for a
notification or its poll. The claims here are held open in a transaction, so what they lock
can be counted from another connection; each runs with the generic plan a worker's
connections use, and with custom plans.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import tuple_row

from conveyor.db.queries import for_schema

from ..helpers import DB

LEASE = timedelta(seconds=60)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PLANS = pytest.mark.parametrize("generic", [False, True], ids=["custom plan", "generic plan"])


def add_jobs(db: DB, queue: str, n: int, *, priority: int = 2, first_second: int = 0) -> list[int]:
    """n due jobs in ``queue``, one second apart from T0 + first_second; their ids in order."""
    db.all("INSERT INTO {schema}.queues (name) VALUES (%s) ON CONFLICT DO NOTHING", [queue])
    rows = db.all(
        "INSERT INTO {schema}.jobs (queue, task, state, priority, run_at, enqueued_at, max_attempts)"
        " SELECT %s, 'noop', 'available', %s, %s::timestamptz + make_interval(secs => s), %s, 1"
        " FROM generate_series(%s::integer, %s::integer) AS s ORDER BY s RETURNING id",
        [queue, priority, T0, T0, first_second, first_second + n - 1],
    )
    return [row[0] for row in rows]


@contextmanager
def claimer(database_url: str, *, generic: bool) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url) as conn:
        if generic:
            conn.execute("SET plan_cache_mode = force_generic_plan")
            conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()


def claim(
    conn: psycopg.Connection[Any], schema: str, queues: Sequence[str], limit: int
) -> list[tuple[int, str, int]]:
    """Run the claim in the connection's open transaction: (id, queue, priority) of what it took."""
    params = {
        "now": None,
        "queues": list(queues),
        "limits": [limit] * len(queues),
        "limit": limit,
        "worker_id": uuid.uuid4(),
        "lease": LEASE,
        "after_queues": [],
        "after_priorities": [],
        "after_run_ats": [],
        "after_ids": [],
    }
    with conn.cursor(row_factory=tuple_row) as cur:
        # Prepared, as a worker's statements are: the generic plan is a prepared statement's.
        name = "claim_jobs" if len(queues) == 1 else "claim_jobs_across_queues"  # as Database does
        cur.execute(for_schema(schema)[name], params, prepare=True)
        return [(row[0], row[2], row[7]) for row in cur.fetchall()]


def unlocked_available(database_url: str, schema: str) -> set[int]:
    """The available jobs another connection can lock now (it sees the open claim's rows as
    available, and locked)."""
    db = DB(database_url, schema)
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            db.compose("SELECT id FROM {schema}.jobs WHERE state = 'available' FOR UPDATE SKIP LOCKED")
        ).fetchall()
    return {row[0] for row in rows}


@PLANS
def test_a_claim_across_queues_takes_the_first_jobs_in_priority_order(
    database_url: str, schema: str, db: DB, generic: bool
) -> None:
    # Interleaved across three queues and four levels: (priority, run_at, id) decides.
    add_jobs(db, "a", 6, priority=2, first_second=0)
    add_jobs(db, "b", 6, priority=1, first_second=3)
    add_jobs(db, "c", 6, priority=2, first_second=1)
    add_jobs(db, "a", 2, priority=0, first_second=50)
    add_jobs(db, "c", 2, priority=3, first_second=-10)
    expected = db.all(
        "SELECT id FROM {schema}.jobs WHERE queue IN ('a', 'b', 'c') ORDER BY priority, run_at, id LIMIT 11"
    )
    with claimer(database_url, generic=generic) as conn:
        for _ in range(6):  # the generic plan comes after five custom ones
            taken = claim(conn, schema, ["a", "b", "c"], 11)
            assert len(taken) == 11
            assert {job_id for job_id, _, _ in taken} == {row[0] for row in expected}
            conn.rollback()


@PLANS
def test_a_claim_across_queues_locks_only_what_it_takes(
    database_url: str, schema: str, db: DB, generic: bool
) -> None:
    add_jobs(db, "a", 10, priority=1)
    add_jobs(db, "b", 10, priority=2)
    add_jobs(db, "c", 10, priority=3)
    every = set(db.all("SELECT array_agg(id) FROM {schema}.jobs")[0][0])
    with claimer(database_url, generic=generic) as conn:
        for _ in range(5):
            claim(conn, schema, ["a", "b", "c"], 5)
            conn.rollback()
        taken = {job_id for job_id, _, _ in claim(conn, schema, ["a", "b", "c"], 5)}
        assert len(taken) == 5
        assert unlocked_available(database_url, schema) == every - taken


@PLANS
def test_a_second_claimer_on_one_of_the_queues_gets_every_job_the_first_did_not_take(
    database_url: str, schema: str, db: DB, generic: bool
) -> None:
    add_jobs(db, "urgent", 6, priority=0)
    bulk = add_jobs(db, "bulk", 6, priority=3)
    with claimer(database_url, generic=generic) as first, claimer(database_url, generic=generic) as second:
        for _ in range(5):
            claim(first, schema, ["urgent", "bulk"], 5)
            first.rollback()
            claim(second, schema, ["bulk"], 6)
            second.rollback()
        taken = claim(first, schema, ["urgent", "bulk"], 5)
        assert {queue for _, queue, _ in taken} == {"urgent"}
        # The first claim took nothing from bulk: all of it is the second's.
        assert sorted(job_id for job_id, _, _ in claim(second, schema, ["bulk"], 6)) == bulk


@PLANS
def test_two_workers_on_overlapping_queues_both_get_full_claims(
    database_url: str, schema: str, db: DB, generic: bool
) -> None:
    own = add_jobs(db, "own", 6, priority=0)
    shared = add_jobs(db, "shared", 6, priority=1)
    with claimer(database_url, generic=generic) as first, claimer(database_url, generic=generic) as second:
        for _ in range(5):
            claim(first, schema, ["shared", "own"], 6)
            first.rollback()
            claim(second, schema, ["shared", "other"], 6)
            second.rollback()
        one = claim(first, schema, ["shared", "own"], 6)
        two = claim(second, schema, ["shared", "other"], 6)
        assert sorted(job_id for job_id, _, _ in one) == own
        assert sorted(job_id for job_id, _, _ in two) == shared


@PLANS
def test_a_claim_short_of_what_others_took_tops_up_from_its_other_queues(
    database_url: str, schema: str, db: DB, generic: bool
) -> None:
    """The preview counts rows other workers hold: when they made the claim short, the
    queues that gave their whole share are read again for what is missing."""
    add_jobs(db, "urgent", 10, priority=0)
    later = add_jobs(db, "later", 20, priority=3)
    with claimer(database_url, generic=generic) as other, claimer(database_url, generic=generic) as conn:
        held = claim(other, schema, ["urgent"], 6)  # in flight: urgent's first 6
        assert len(held) == 6
        for _ in range(5):
            claim(conn, schema, ["urgent", "later"], 10)
            conn.rollback()
        taken = claim(conn, schema, ["urgent", "later"], 10)
        assert sorted(job_id for job_id, queue, _ in taken if queue == "urgent") == sorted(
            set(db.all("SELECT array_agg(id) FROM {schema}.jobs WHERE queue = 'urgent'")[0][0])
            - {job_id for job_id, _, _ in held}
        )
        assert sorted(job_id for job_id, queue, _ in taken if queue == "later") == later[:6]
        # And nothing beyond what it took is locked.
        every = set(db.all("SELECT array_agg(id) FROM {schema}.jobs")[0][0])
        assert unlocked_available(database_url, schema) == every - {job_id for job_id, _, _ in held + taken}
