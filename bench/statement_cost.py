"""The plain claim and the plain ack of 500 jobs, timed alone, in two source trees.

    git archive 740d124 | tar -x -C /tmp/before
    python bench/statement_cost.py --before /tmp/before --after . --rounds 80

Each tree migrates a schema of its own (its Alembic revisions, run with that tree's
``service`` on the import path); then, round after round on one connection, each tree's
``claim_jobs`` (500 due jobs, one queue, generic plan as workers run it) and
``complete_jobs`` (the 500 claimed) run against its schema, and a third way runs the before
tree's claim and ack against a schema of the after tree's own: what the schema alone
(columns, indexes) costs apart from the statements. Each way has a schema of its own (a
schema claimed from more often holds more dead rows). Prints each way's median and its ratio to before;
the first five rounds are warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

WARM_UP = 5


def named_blocks(tree: Path) -> dict[str, str]:
    """The named queries of a tree's execute.sql, without their comment lines."""
    blocks: dict[str, str] = {}
    for part in (tree / "sql" / "queries" / "execute.sql").read_text().split("-- name: ")[1:]:
        name, body = part.split("\n", 1)
        code = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--"))
        blocks[name.strip()] = code.split(";\n")[0]
    return blocks


def migrate(tree: Path, url: str) -> str:
    name = f"statement_cost_{uuid.uuid4().hex[:8]}"
    code = f"from conveyor.db import migrations; migrations.upgrade({url!r}, {name!r})"
    subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(tree / "service")}, check=True)
    return name


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=80)
    args = parser.parse_args()
    trees = {"before": args.before, "after": args.after}
    queries = {label: named_blocks(tree) for label, tree in trees.items()}
    schemas = {label: migrate(tree, args.database_url) for label, tree in trees.items()}
    # The third way gets a schema of its own: a schema claimed from twice as often as the
    # others holds twice their dead rows, and is slower for that alone.
    schemas["after, for before statements"] = migrate(args.after, args.database_url)
    # way: (whose statements, whose schema)
    ways = {
        "before": ("before", "before"),
        "after": ("after", "after"),
        "before statements, after schema": ("before", "after"),
    }
    times: dict[tuple[str, str], list[float]] = {(what, way): [] for what in ("claim", "ack") for way in ways}
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        try:
            for _ in range(args.rounds):
                for way, (code, schema_of) in ways.items():
                    schema = sql.Identifier(schemas[schema_of])
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {}.jobs (queue, task, args, priority, max_attempts, run_at, enqueued_at)"
                            " SELECT 'default', 't', '{{}}', 2, 5, now(), now() FROM generate_series(1, 500)"
                        ).format(schema)
                    )
                    worker = uuid.uuid4()
                    claim = sql.SQL(queries[code]["claim_jobs"]).format(schema=schema)
                    params = {
                        "queues": ["default"],
                        "limits": [500],
                        "after_queues": [],
                        "after_priorities": [],
                        "after_run_ats": [],
                        "after_ids": [],
                        "worker_id": worker,
                        "lease": timedelta(seconds=30),
                        "now": None,
                        "limit": 500,
                    }
                    started = time.perf_counter()
                    rows = conn.execute(claim, params, prepare=True).fetchall()
                    times["claim", way].append(time.perf_counter() - started)
                    jobs = json.dumps({str(row[0]): [row[1], None] for row in rows})
                    ack = sql.SQL(queries[code]["complete_jobs"]).format(schema=schema)
                    started = time.perf_counter()
                    done = conn.execute(
                        ack, {"jobs": jobs, "worker_id": worker, "now": None}, prepare=True
                    ).fetchall()
                    times["ack", way].append(time.perf_counter() - started)
                    assert len(rows) == len(done) == 500, (len(rows), len(done))
        finally:
            for schema_name in schemas.values():
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema_name)))
    for what in ("claim", "ack"):
        base = statistics.median(times[what, "before"][WARM_UP:])
        for way in ways:
            median = statistics.median(times[what, way][WARM_UP:])
            print(
                json.dumps(
                    {
                        "statement": what,
                        "way": way,
                        "median_ms": round(median * 1000, 3),
                        "ratio_to_before": round(median / base, 3),
                    }
                )
            )


if __name__ == "__main__":
    main()
