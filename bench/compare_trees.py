"""Before and after: one workload from several source trees, interleaved, each run in a fresh database.

    git archive <before-commit> | tar -x -C /tmp/before     # a tree per version to compare
    python bench/compare_trees.py --rounds 3 \\
        --run raw=.:raw --run before=/tmp/before:conveyor --run after=.:conveyor \\
        -- latency --count 300

Each ``--run LABEL=TREE:SYSTEM`` runs ``TREE/bench/peers/SYSTEM/adapter.py`` with
``TREE/service`` first on the import path (so a tree's own Conveyor is measured); every
round goes through all the runs, each round starting one run later than the last, so the
machine's drift and a run's position fall on all of them alike (compare medians). Prints one JSON line per run, with its label and round.
Python adapters only (raw SQL and Conveyor need nothing but this environment).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from psycopg import sql


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run", action="append", required=True, help="LABEL=TREE:SYSTEM")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("workload", nargs=argparse.REMAINDER, help="the adapter's arguments, after --")
    args = parser.parse_args()
    workload = [a for a in args.workload if a != "--"]
    runs = []
    for spec in args.run:
        label, _, where = spec.partition("=")
        tree, _, system = where.rpartition(":")
        runs.append((label, Path(tree).resolve(), system))
    for round_ in range(args.rounds):
        # Each round starts one run later: a run's position in the round (what ran just
        # before it, how warm the server is) falls on every run alike.
        shift = round_ % len(runs)
        for label, tree, system in runs[shift:] + runs[:shift]:
            result = run_one(args, tree, system, workload)
            result.update(label=label, round=round_)
            print(json.dumps(result), flush=True)


def run_one(args: argparse.Namespace, tree: Path, system: str, workload: list[str]) -> dict[str, object]:
    name = f"bench_compare_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(args.database_url, dbname=name)
    try:
        out = subprocess.run(
            [sys.executable, str(tree / "bench" / "peers" / system / "adapter.py"), *workload, "--url", url],
            env={**os.environ, "PYTHONPATH": str(tree / "service")},
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        result: dict[str, object] = json.loads(lines[-1]) if lines else {"error": out.stderr[-2000:]}
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return result


if __name__ == "__main__":
    main()
