"""Queue limits against the plain drain, in one run: ratios of drain rates.

    python bench/limits.py --rounds 3 --n 50000 --out bench/results/limits.jsonl

Each round drains ``--n`` no-op jobs with one Conveyor worker process (bench/peers/conveyor,
as the ``drain`` workload) four ways, in turn, each in a fresh database:

  plain       the bench queue, no limits anywhere (today's drain);
  neighbours  the same while five rate-limited queues with waiting jobs exist, served by the
              same worker (target: within 3% of plain);
  rate        the bench queue limited to 100,000 starts per second, above its natural rate
              (target: at least 0.9 of plain);
  keys        the bench queue's jobs over 100 keys, at most 5 running per key
              (key_concurrency; target: at least 0.5 of plain).

With ``--today TREE`` (a tree of the code before limits, e.g. ``git archive <commit> | tar -x
-C /tmp/today``) a fifth way, ``today``, drains with that tree's Conveyor: the unlimited
queue's speed before and after, in the same run.

Prints one JSON line per drain and, at the end, each way's median rate and its ratios to
plain's and today's; the lines also go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
WAYS = ["plain", "neighbours", "rate", "keys"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--today", type=Path, help="a tree of the code before limits")
    args = parser.parse_args()
    ways = args.ways.split(",") + (["today"] if args.today else [])
    rates: dict[str, list[float]] = {way: [] for way in ways}
    out = args.out.open("a") if args.out else None
    for round_ in range(args.rounds):
        for way in ways:
            result = drain(args, way)
            result.update(way=way, round=round_)
            line = json.dumps(result)
            print(line, flush=True)
            if out:
                out.write(line + "\n")
                out.flush()
            if isinstance(result.get("rate"), float):
                rates[way].append(result["rate"])
    base = statistics.median(rates["plain"]) if rates.get("plain") else None
    today = statistics.median(rates["today"]) if rates.get("today") else None
    summary = {
        way: {
            "median_rate": statistics.median(values) if values else None,
            "rates": values,
            "ratio_to_plain": statistics.median(values) / base if values and base else None,
            "ratio_to_today": statistics.median(values) / today if values and today else None,
        }
        for way, values in rates.items()
    }
    line = json.dumps({"summary": summary, "n": args.n, "rounds": args.rounds})
    print(line)
    if out:
        out.write(line + "\n")
        out.close()


def drain(args: argparse.Namespace, way: str) -> dict[str, object]:
    name = f"bench_limits_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(args.database_url, dbname=name)
    tree = args.today.resolve() if way == "today" else ROOT
    env = {**os.environ, "PYTHONPATH": str(tree / "service")}
    env.pop("CONVEYOR_BENCH_LIMITS", None)
    if way not in ("plain", "today"):
        env["CONVEYOR_BENCH_LIMITS"] = way
    try:
        done = subprocess.run(
            [
                sys.executable,
                str(tree / "bench/peers/conveyor/adapter.py"),
                "drain",
                "--n",
                str(args.n),
                "--url",
                url,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        result: dict[str, object] = json.loads(lines[-1]) if lines else {"error": done.stderr[-2000:]}
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return result


if __name__ == "__main__":
    main()
