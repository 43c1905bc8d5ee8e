"""What schema version 5 adds to the write path: the jobs table's args size rule (domain
job_args, constraint args_at_most_1_mib) on a one-row INSERT, a many-row INSERT and a single
enqueue; and the index job_history (queue, finished_at) on the rows an ack writes to history.

Rounds alternate between the rule in place and the rule dropped, on one migrated schema of
its own:

- ``insert``: ``--inserts`` one-row INSERTs into jobs in one PL/pgSQL loop, timed by the
  server (no round trips, no commits: the statement's own cost), rolled back;
- ``rows``: one INSERT of five times as many rows (what a bulk enqueue pays per row);
- ``enqueue``: ``--enqueues`` calls of ``Conveyor.enqueue`` one after another, each its own
  transaction (committed with synchronous_commit off), timed by the client;
- ``history``: one INSERT of ``--inserts`` finished jobs into job_history, with and without the
  index (what an ack's move into history pays per job), by the server's clock.

    python bench/args_check_cost.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "service"))

from conveyor import Conveyor, Registry
from conveyor.db import migrations

INDEX_OFF = "DROP INDEX job_history_queue_finished"
INDEX_ON = "CREATE INDEX job_history_queue_finished ON job_history (queue, finished_at)"
RULE_OFF = "ALTER DOMAIN job_args DROP CONSTRAINT args_at_most_1_mib"
RULE_ON = (
    "ALTER DOMAIN job_args ADD CONSTRAINT args_at_most_1_mib"
    " CHECK (octet_length(VALUE::text) <= 1048576 OR compact_json_octets_v1(VALUE) <= 1048576) NOT VALID"
)
SIZES = {"small": {"to": "a@example.com", "n": 1}, "1 kB": {"blob": "x" * 1000}}


def insert_loop(conn: psycopg.Connection[tuple[object, ...]], args: str, count: int) -> float:
    """Microseconds per one-row INSERT, by the server's clock (the loop is a PL/pgSQL
    function: each INSERT starts its own executor, as a statement from a client does)."""
    row = conn.execute("SELECT insert_jobs(%s::jsonb, %s)", [args, count]).fetchone()
    conn.rollback()
    assert row is not None
    return float(row[0]) * 1e6 / count


def insert_rows(conn: psycopg.Connection[tuple[object, ...]], args: str, count: int) -> float:
    """Microseconds per row of one INSERT of ``count`` rows (as a bulk enqueue's COPY checks
    each row), by the server's clock."""
    row = conn.execute("SELECT insert_many(%s::jsonb, %s)", [args, count]).fetchone()
    conn.rollback()
    assert row is not None
    return float(row[0]) * 1e6 / count


async def enqueue_round(url: str, schema: str, count: int) -> float:
    """Microseconds per enqueue, by the client's clock."""
    registry = Registry()

    @registry.task
    async def send(to: str, n: int) -> None:
        pass

    async with Conveyor(url, schema=schema, registry=registry) as client:
        for _ in range(50):  # warm the connection and its prepared statements
            await client.enqueue(send, {"to": "a@example.com", "n": 1})
        started = time.perf_counter()
        for _ in range(count):
            await client.enqueue(send, {"to": "a@example.com", "n": 1})
        return (time.perf_counter() - started) * 1e6 / count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", default="bench_args_check")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--inserts", type=int, default=20_000)
    parser.add_argument("--enqueues", type=int, default=2_000)
    args = parser.parse_args()

    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(args.schema)))
    migrations.upgrade(args.database_url, args.schema)
    results: dict[str, dict[bool, list[float]]] = {}
    # Enqueues commit without waiting for the WAL flush: the flush is the same with the rule
    # or without, and on a shared disk its spread hid everything else.
    no_flush = psycopg.conninfo.make_conninfo(args.database_url, options="-c synchronous_commit=off")
    with psycopg.connect(args.database_url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(args.schema)))
        conn.execute(
            "CREATE FUNCTION insert_jobs(a jsonb, n integer) RETURNS double precision LANGUAGE plpgsql AS $$"
            " DECLARE t0 timestamptz := clock_timestamp();"
            " BEGIN FOR i IN 1..n LOOP INSERT INTO jobs (queue, task, max_attempts, args)"
            " VALUES ('default', 'send', 5, a); END LOOP;"
            " RETURN extract(epoch FROM clock_timestamp() - t0); END $$"
        )
        conn.execute(
            "CREATE FUNCTION insert_many(a jsonb, n integer) RETURNS double precision LANGUAGE plpgsql AS $$"
            " DECLARE t0 timestamptz := clock_timestamp();"
            " BEGIN INSERT INTO jobs (queue, task, max_attempts, args)"
            " SELECT 'default', 'send', 5, a FROM generate_series(1, n);"
            " RETURN extract(epoch FROM clock_timestamp() - t0); END $$"
        )
        conn.execute(
            "CREATE FUNCTION insert_history(n integer) RETURNS double precision LANGUAGE plpgsql AS $$"
            " DECLARE t0 timestamptz := clock_timestamp();"
            " BEGIN INSERT INTO job_history (id, run_at, enqueued_at, started_at, finished_at, worker_id, attempt,"
            " max_attempts, priority, state, queue, task, args, result, errors)"
            " SELECT i, now(), now(), now(), clock_timestamp(), gen_random_uuid(), 1, 5, 2, 'completed',"
            " 'q' || i % 4, 'send', '{\"to\": \"a@example.com\", \"n\": 1}', 'null', '[]'"
            " FROM generate_series(1, n) i;"
            " RETURN extract(epoch FROM clock_timestamp() - t0); END $$"
        )
        conn.commit()
        try:
            for round_number in range(args.rounds):
                for rule in (True, False) if round_number % 2 == 0 else (False, True):
                    if not rule:  # both are in place between phases
                        conn.execute(RULE_OFF)
                        conn.execute(INDEX_OFF)
                        conn.commit()
                    for name, value in SIZES.items():
                        spent = insert_loop(conn, json.dumps(value), args.inserts)
                        results.setdefault(f"one-row INSERT, {name} args", {True: [], False: []})[
                            rule
                        ].append(spent)
                        spent = insert_rows(conn, json.dumps(value), args.inserts * 5)
                        results.setdefault(f"a row of a 100k-row INSERT, {name} args", {True: [], False: []})[
                            rule
                        ].append(spent)
                    spent = asyncio.run(enqueue_round(no_flush, args.schema, args.enqueues))
                    results.setdefault("Conveyor.enqueue, one per transaction", {True: [], False: []})[
                        rule
                    ].append(spent)
                    row = conn.execute("SELECT insert_history(%s)", [args.inserts]).fetchone()
                    conn.rollback()
                    assert row is not None
                    results.setdefault(
                        "a job of a move into job_history (the index, not the rule)", {True: [], False: []}
                    )[rule].append(float(row[0]) * 1e6 / args.inserts)
                    conn.execute("TRUNCATE jobs")
                    conn.commit()
                    if not rule:
                        conn.execute(RULE_ON)
                        conn.execute(INDEX_ON)
                        conn.commit()
        finally:
            conn.rollback()
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(args.schema)))
            conn.commit()

    print("| statement | without the rule (µs) | with it (µs) | difference |\n|---|---|---|---|")
    for name, by_rule in results.items():
        off, on = statistics.median(by_rule[False]), statistics.median(by_rule[True])
        spread = f"{min(by_rule[False]):.2f}-{max(by_rule[False]):.2f} / {min(by_rule[True]):.2f}-{max(by_rule[True]):.2f}"
        print(
            f"| {name} | {off:.2f} | {on:.2f} | {on - off:+.2f} ({(on - off) / off:+.1%}); spread {spread} |"
        )


if __name__ == "__main__":
    main()
