"""The jobs table itself holds args to the 1 MiB limit that enqueue() and the Python client
apply (as JSON text), so a row written to it directly is checked as enqueue checks it."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.types.json import Jsonb

from ..helpers import DB

MIB = 1024 * 1024


def args_of_size(size: int) -> dict[str, str]:
    """An object whose JSON text (as PostgreSQL writes jsonb) takes exactly ``size`` bytes."""
    padding = size - len('{"blob": ""}')
    value = {"blob": "x" * padding}
    assert len(json.dumps(value, separators=(", ", ": "))) == size
    return value


def insert(db: DB, args: dict[str, str]) -> int:
    return int(
        db.one(
            "insert into {schema}.jobs (queue, task, max_attempts, args) values ('default', 'report', 5, %s) returning id",
            [Jsonb(args)],
        )
    )


def test_a_direct_insert_over_1_mib_of_args_is_refused_naming_the_rule(db: DB) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="args_at_most_1_mib"):
        insert(db, args_of_size(2 * MIB))
    with pytest.raises(psycopg.errors.CheckViolation, match="args_at_most_1_mib"):
        insert(db, args_of_size(MIB + 1))
    assert db.one("select count(*) from {schema}.jobs") == 0


def test_a_direct_insert_just_under_the_limit_passes(db: DB) -> None:
    job_id = insert(db, args_of_size(MIB - 64))
    assert db.one("select octet_length(args::text) from {schema}.jobs where id = %s", [job_id]) == MIB - 64
    job_id = insert(db, args_of_size(MIB))
    assert db.one("select octet_length(args::text) from {schema}.jobs where id = %s", [job_id]) == MIB


def test_a_dead_job_retried_with_oversized_args_is_refused(db: DB) -> None:
    """retry_dead writes jobs too: a dead row put there by hand with 2 MiB of args stays dead."""
    db.all(
        "insert into {schema}.dead_jobs (id, run_at, enqueued_at, died_at, attempt, max_attempts, priority,"
        " queue, task, args, errors) values (9, now(), now(), now(), 3, 3, 2, 'default', 'report', %s, '[]')",
        [Jsonb(args_of_size(2 * MIB))],
    )
    with pytest.raises(psycopg.errors.CheckViolation, match="args_at_most_1_mib"):
        db.all("select {schema}.retry_dead(9)")
    assert db.one("select count(*) from {schema}.dead_jobs") == 1
