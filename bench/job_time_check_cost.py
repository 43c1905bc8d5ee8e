"""What the job_time and job_count domain checks (schema version 6) cost a one-row INSERT
into jobs, the statement of a single enqueue and of a claim's write.

Rounds alternate between the checks in place and dropped, on one migrated schema of its
own: ``--inserts`` one-row INSERTs into jobs (run_at given, as an enqueue gives it) in one
PL/pgSQL loop, timed by the server (no round trips, no commits), rolled back; and one
INSERT of five times as many rows (what a bulk enqueue pays per row).

    python bench/job_time_check_cost.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "service"))

from conveyor.db import migrations

CHECKS_OFF = (
    "ALTER DOMAIN job_time DROP CONSTRAINT time_within_years_1_to_9999",
    "ALTER DOMAIN job_count DROP CONSTRAINT count_not_negative",
)
CHECKS_ON = (
    "ALTER DOMAIN job_time ADD CONSTRAINT time_within_years_1_to_9999 CHECK (VALUE >= timestamptz "
    "'0001-01-02 00:00:00+00' AND VALUE < timestamptz '9999-12-31 00:00:00+00') NOT VALID",
    "ALTER DOMAIN job_count ADD CONSTRAINT count_not_negative CHECK (VALUE >= 0) NOT VALID",
)


def timed(conn: psycopg.Connection[tuple[object, ...]], function: str, count: int) -> float:
    """Microseconds per row, by the server's clock."""
    row = conn.execute(sql.SQL("SELECT {}(%s)").format(sql.Identifier(function)), [count]).fetchone()
    conn.rollback()
    assert row is not None
    return float(row[0]) * 1e6 / count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", default="bench_job_time_check")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--inserts", type=int, default=20_000)
    args = parser.parse_args()

    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(args.schema)))
    migrations.upgrade(args.database_url, args.schema)
    results: dict[str, dict[bool, list[float]]] = {}
    with psycopg.connect(args.database_url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(args.schema)))
        conn.execute(
            "CREATE FUNCTION insert_jobs(n integer) RETURNS double precision LANGUAGE plpgsql AS $$"
            " DECLARE t0 timestamptz := clock_timestamp();"
            " BEGIN FOR i IN 1..n LOOP INSERT INTO jobs (queue, task, max_attempts, args, run_at, enqueued_at, state)"
            " VALUES ('default', 'send', 5, '{\"n\": 1}', now(), now(), 'available'); END LOOP;"
            " RETURN extract(epoch FROM clock_timestamp() - t0); END $$"
        )
        conn.execute(
            "CREATE FUNCTION insert_many(n integer) RETURNS double precision LANGUAGE plpgsql AS $$"
            " DECLARE t0 timestamptz := clock_timestamp();"
            " BEGIN INSERT INTO jobs (queue, task, max_attempts, args, run_at, enqueued_at, state)"
            " SELECT 'default', 'send', 5, '{\"n\": 1}', now(), now(), 'available' FROM generate_series(1, n);"
            " RETURN extract(epoch FROM clock_timestamp() - t0); END $$"
        )
        conn.commit()
        try:
            for round_number in range(args.rounds):
                for checks in (True, False) if round_number % 2 == 0 else (False, True):
                    if not checks:
                        for statement in CHECKS_OFF:
                            conn.execute(statement)
                        conn.commit()
                    results.setdefault("one-row INSERT", {True: [], False: []})[checks].append(
                        timed(conn, "insert_jobs", args.inserts)
                    )
                    results.setdefault("a row of a 100k-row INSERT", {True: [], False: []})[checks].append(
                        timed(conn, "insert_many", args.inserts * 5)
                    )
                    if not checks:
                        for statement in CHECKS_ON:
                            conn.execute(statement)
                        conn.commit()
        finally:
            conn.rollback()
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(args.schema)))
            conn.commit()

    print("| statement | without the checks (µs) | with them (µs) | difference |\n|---|---|---|---|")
    for name, by_checks in results.items():
        off, on = statistics.median(by_checks[False]), statistics.median(by_checks[True])
        spread = (
            f"{min(by_checks[False]):.2f}-{max(by_checks[False]):.2f} / "
            f"{min(by_checks[True]):.2f}-{max(by_checks[True]):.2f}"
        )
        print(
            f"| {name} | {off:.2f} | {on:.2f} | {on - off:+.2f} ({(on - off) / off:+.1%}); spread {spread} |"
        )


if __name__ == "__main__":
    main()
