"""What settle_v1 adds to an ack of plain jobs: complete_jobs as another tree has it (before)
against this tree's (after), alternating, on one migrated schema of this tree.

Each round inserts ``--jobs`` running jobs that use no chain, batch or waiter, then acks them
with one complete_jobs (prepared, generic plan, as a worker runs it), timed by the client;
rounds alternate which statement goes first. Prints the medians and their ratio.

    git archive main | tar -x -C /tmp/before
    python bench/settle_cost.py --before /tmp/before --rounds 300
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "service"))

from conveyor.db import migrations
from conveyor.db.queries import parse

INSERT = (
    "insert into jobs (queue, task, args, state, run_at, enqueued_at, max_attempts, worker_id,"
    " lease_expires_at, claims, attempt, started_at)"
    " select 'q', 't', '{}', 'running', now(), now(), 5, %s, now() + interval '1 hour', 1, 1, now()"
    " from generate_series(1, %s) returning id"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--before", type=Path, required=True, help="the tree to compare with")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=500)
    args = parser.parse_args()

    schema = f"bench_settle_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(args.database_url, schema)
    texts = {
        "before": parse((args.before / "sql" / "queries" / "execute.sql").read_text())["complete_jobs"],
        "after": parse((HERE / "sql" / "queries" / "execute.sql").read_text())["complete_jobs"],
    }
    statements = {label: sql.SQL(text).format(schema=sql.Identifier(schema)) for label, text in texts.items()}  # type: ignore[arg-type]
    times: dict[str, list[float]] = {"before": [], "after": []}
    worker = uuid.uuid4()
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            conn.execute("SET plan_cache_mode = force_generic_plan")
            conn.execute("insert into queues (name) values ('q') on conflict do nothing")
            for round_ in range(args.rounds):
                for label in ("before", "after") if round_ % 2 else ("after", "before"):
                    ids = [row[0] for row in conn.execute(INSERT, [worker, args.jobs]).fetchall()]
                    jobs = json.dumps({str(job_id): [1, None] for job_id in ids})
                    started = time.perf_counter()
                    done = conn.execute(
                        statements[label], {"jobs": jobs, "worker_id": worker, "now": None}, prepare=True
                    ).fetchall()
                    times[label].append(time.perf_counter() - started)
                    assert len(done) == args.jobs
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    before, after = statistics.median(times["before"]), statistics.median(times["after"])
    print(
        json.dumps(
            {
                "jobs_per_ack": args.jobs,
                "rounds": args.rounds,
                "before_ms": round(before * 1000, 3),
                "after_ms": round(after * 1000, 3),
                "after_over_before": round(after / before, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
