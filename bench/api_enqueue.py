"""Enqueue requests per second through the HTTP API, next to raw SQL enqueues, in one run.

    python bench/api_enqueue.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Each round, at the same client concurrency (``--concurrency``, one connection each):

- ``api``: ``POST /api/v1/jobs`` (an operator's API key, a task the API imports) to
  ``conveyor api --workers N`` (uvicorn, N processes, access log off), from a load generator
  in a process of its own: raw HTTP/1.1 on keep-alive connections (asyncio streams, no HTTP
  library, so that the generator is not what is measured), each connection sending its next
  request when the answer to the last one has come;
- ``sql``: Conveyor's SQL function, ``SELECT <schema>.enqueue(task, args)``, one transaction
  per job on psycopg connections (what an application in any language can do);
- ``raw``: ``INSERT`` + ``NOTIFY`` into a plain table, one transaction per job: the simplest
  queue psycopg allows (bench/peers/raw).

Then ``api`` again, paced at half its measured rate: the request latency percentiles there.
Systems alternate within each round, rounds repeat (``--rounds``); medians are printed as one
JSON object, with the machine's core count. The API's requests each authenticate (one
statement: a key is read on every request, so a revoke holds at once) and enqueue (one
statement, committed), where the SQL rows do only the second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TASK = "bench_api_noop"  # bench/api_enqueue_task.py
BODY = json.dumps({"task": TASK, "args": {"n": 1}}).encode()


# -- the load generator (run as a process: `api_enqueue.py load HOST PORT TOKEN ...`) --------


async def _connection(
    host: str,
    port: int,
    request: bytes,
    end: float,
    interval: float,
    offset: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    """Requests one after another on one keep-alive connection; paced (``interval``), the
    first is sent ``offset`` seconds late, so that paced connections spread their sends
    evenly instead of sending them all at once."""
    reader, writer = await asyncio.open_connection(host, port)
    next_at = time.monotonic() + offset
    try:
        while time.monotonic() < end:
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            started = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 201"):
                errors.append(head.split(b"\r\n", 1)[0].decode())
            latencies.append(time.monotonic() - started)
    finally:
        writer.close()


async def _load(
    host: str, port: int, token: str, concurrency: int, seconds: float, rate: float
) -> dict[str, Any]:
    request = (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    latencies: list[float] = []
    errors: list[str] = []
    interval = concurrency / rate if rate else 0.0
    end = time.monotonic() + seconds
    await asyncio.gather(
        *(
            _connection(host, port, request, end, interval, i * interval / concurrency, latencies, errors)
            for i in range(concurrency)
        )
    )
    latencies.sort()

    def percentile(p: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

    return {
        "per_second": round(len(latencies) / seconds, 1),
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


# -- the SQL sides ---------------------------------------------------------------------------


async def _sql(url: str, statement: sql.Composed, concurrency: int, seconds: float) -> dict[str, Any]:
    done = 0
    end = time.monotonic() + seconds

    async def one() -> None:
        nonlocal done
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            while time.monotonic() < end:
                await conn.execute(statement, ['{"n": 1}'])
                done += 1

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return {"per_second": round(done / seconds, 1)}


# -- a run -----------------------------------------------------------------------------------


def _setup(url: str, schema: str) -> str:
    from conveyor.db import migrations

    migrations.upgrade(url, schema)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SELECT {}.create_queue('bench')").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("CREATE TABLE {}.raw_jobs (id bigserial PRIMARY KEY, payload jsonb)").format(
                sql.Identifier(schema)
            )
        )

    async def key() -> str:
        from conveyor import Conveyor
        from conveyor.ops.keys import create_key
        from conveyor.ops.roles import LOCAL_ADMIN

        async with Conveyor(url, schema=schema) as client:
            return (await create_key(client.db, LOCAL_ADMIN, "bench", "operator"))[1]

    return asyncio.run(key())


def start_api(url: str, schema: str, workers: int, pool_size: int) -> tuple[subprocess.Popen[str], int]:
    """``conveyor api`` with ``workers`` processes, once every one has said its app is up."""
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": url,
        "CONVEYOR_SCHEMA": schema,
        "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "api", "--port", "0", "--workers", str(workers),
         "--pool-size", str(pool_size), "--no-access-log", "--tasks", "api_enqueue_task"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stderr is not None
    found = re.search(r"http://[^:]+:(\d+)/api/v1", process.stdout.readline())
    ready = threading.Semaphore(0)

    def read_log(stream: Any) -> None:  # and keep reading, so that the pipe never fills
        for line in stream:
            if "Application startup complete" in line:
                ready.release()

    threading.Thread(target=read_log, args=(process.stderr,), daemon=True).start()
    if found is None or not all(ready.acquire(timeout=60) for _ in range(workers)):
        process.kill()
        raise SystemExit("conveyor api did not start")
    return process, int(found[1])


def _run_load(port: int, token: str, concurrency: int, seconds: float, rate: float = 0.0) -> dict[str, Any]:
    args = [
        sys.executable,
        __file__,
        "load",
        "127.0.0.1",
        str(port),
        token,
        str(concurrency),
        str(seconds),
        str(rate),
    ]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool-size", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    url, schema = options.database_url, f"bench_api_{uuid.uuid4().hex[:8]}"
    token = _setup(url, schema)
    api, port = start_api(url, schema, options.workers, options.pool_size)
    ident = sql.Identifier(schema)
    statements = {
        "sql": sql.SQL("SELECT {}.enqueue('" + TASK + "', %s::jsonb, 'bench')").format(ident),
        "raw": sql.SQL(
            "WITH j AS (INSERT INTO {}.raw_jobs (payload) VALUES (%s::jsonb) RETURNING id) "
            "SELECT pg_notify('bench_raw', ''), (SELECT id FROM j)"
        ).format(ident),
    }
    rounds: dict[str, list[dict[str, Any]]] = {"api": [], "sql": [], "raw": [], "api_half": []}
    try:
        _run_load(port, token, options.concurrency, 2.0)  # warm: connections, prepared statements
        for _ in range(options.rounds):
            rounds["api"].append(_run_load(port, token, options.concurrency, options.seconds))
            for name, statement in statements.items():
                rounds[name].append(asyncio.run(_sql(url, statement, options.concurrency, options.seconds)))
        half = statistics.median(r["per_second"] for r in rounds["api"]) / 2
        for _ in range(options.rounds):
            rounds["api_half"].append(_run_load(port, token, options.concurrency, options.seconds, rate=half))
    finally:
        api.terminate()
        api.wait(timeout=60)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))
    median = {name: statistics.median(r["per_second"] for r in runs) for name, runs in rounds.items()}
    print(
        json.dumps(
            {
                "cores": os.cpu_count(),
                "workers": options.workers,
                "concurrency": options.concurrency,
                "per_second": median,
                "api_vs_raw": round(median["api"] / median["raw"], 3),
                "api_vs_sql": round(median["api"] / median["sql"], 3),
                "half_rate_p50_ms": statistics.median(r["p50_ms"] for r in rounds["api_half"]),
                "half_rate_p99_ms": statistics.median(r["p99_ms"] for r in rounds["api_half"]),
                "errors": sum(r.get("errors", 0) for r in rounds["api"] + rounds["api_half"]),
                "rounds": rounds,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        host, port, token, concurrency, seconds, rate = sys.argv[2:8]
        print(
            json.dumps(
                asyncio.run(_load(host, int(port), token, int(concurrency), float(seconds), float(rate)))
            )
        )
    else:
        main()
