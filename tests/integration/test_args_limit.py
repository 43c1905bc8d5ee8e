"""The jobs table itself holds args to the 1 MiB limit that the Python client applies (as
compact JSON), so a row written to it directly is checked as enqueue checks it."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.types.json import Jsonb

from ..helpers import DB

MIB = 1024 * 1024


def compact(value: object) -> int:
    """Bytes as compact JSON, as the Python client measures args."""
    return len(json.dumps(value, separators=(",", ":")).encode())


def args_of_size(size: int) -> dict[str, str]:
    """An object that takes exactly ``size`` bytes as compact JSON."""
    value = {"blob": "x" * (size - compact({"blob": ""}))}
    assert compact(value) == size
    return value


def insert(db: DB, args: dict[str, object]) -> int:
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
    assert db.one("select octet_length(args::text) from {schema}.jobs where id = %s", [job_id]) == MIB - 63
    job_id = insert(db, args_of_size(MIB))  # 1 MiB + 1 as jsonb writes it (the space after ':')
    assert db.one("select octet_length(args::text) from {schema}.jobs where id = %s", [job_id]) == MIB + 1


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


def test_the_limit_is_on_compact_json_as_the_python_client_measures_it(db: DB) -> None:
    """jsonb's text puts a space after every ':' and ',': args at the client's limit as
    compact JSON take more as jsonb text, and still pass; one byte more does not."""
    members = {f"k{n:04}": [n, "v"] for n in range(2000)}
    filler = MIB - compact({**members, "z": ""})
    at_limit = {**members, "z": "x" * filler}
    assert compact(at_limit) == MIB
    assert len(json.dumps(at_limit).encode()) > MIB + 5000  # as jsonb writes it
    job_id = insert(db, at_limit)
    assert (
        db.one("select {schema}.compact_json_octets_v1(args) from {schema}.jobs where id = %s", [job_id])
        == MIB
    )
    with pytest.raises(psycopg.errors.CheckViolation, match="args_at_most_1_mib"):
        insert(db, {**members, "z": "x" * (filler + 1)})
    nested = {"a": [{"b": [1, 2, {}], "c": []}, "d"], "e": {"f": None}, "g": "a: b, c"}
    assert db.one("select {schema}.compact_json_octets_v1(%s)", [Jsonb(nested)]) == compact(nested)
