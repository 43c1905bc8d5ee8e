"""One unique key enqueued at once from several processes: one live job, and every caller
is given its id, whether it enqueues through the Python client or the SQL function."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..helpers import DB, REPO, subprocess_env, wait_until_sync

pytestmark = pytest.mark.processes

KEYS = 40
PRODUCER = """
import asyncio, json, os, sys, time
from pathlib import Path

import psycopg
from psycopg import sql

from conveyor import Conveyor, Registry

mode, go, keys = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
url, schema = os.environ["CONVEYOR_DATABASE_URL"], os.environ["CONVEYOR_SCHEMA"]
registry = Registry()


@registry.task
async def report(key: int) -> None: ...


def wait_for_go() -> None:
    (go.parent / f"ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.001)


async def by_client() -> dict[str, int]:
    async with Conveyor(url, schema=schema, registry=registry) as client:
        await client.enqueue(report, {"key": -1})  # connected and warm before the start
        wait_for_go()
        return {f"key-{k}": await client.enqueue(report, {"key": k}, unique_key=f"key-{k}") for k in range(keys)}


def by_sql() -> dict[str, int]:
    statement = sql.SQL("SELECT {}.enqueue('report', %s::jsonb, unique_key => %s)").format(sql.Identifier(schema))
    with psycopg.connect(url, autocommit=True) as conn:
        wait_for_go()
        return {
            f"key-{k}": conn.execute(statement, [json.dumps({"key": k}), f"key-{k}"]).fetchone()[0]
            for k in range(keys)
        }


ids = asyncio.run(by_client()) if mode == "client" else by_sql()
print(json.dumps(ids))
"""


def test_one_unique_key_from_several_processes_at_once_gives_one_job_and_its_id_to_every_caller(
    database_url: str, schema: str, db: DB, tmp_path: Path
) -> None:
    db.all("select {schema}.create_queue('default')")
    go = tmp_path / "go"
    modes = ["client", "sql", "client", "sql", "client", "sql"]
    producers = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, mode, str(go), str(KEYS)],
            cwd=REPO,
            env=subprocess_env(database_url, schema),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in modes
    ]
    try:
        wait_until_sync(lambda: len(list(tmp_path.glob("ready-*"))) == len(modes), within=30)
        go.touch()  # all at once, each connected
        results = [process.communicate(timeout=60) for process in producers]
    finally:
        for process in producers:
            if process.poll() is None:
                process.kill()
    for process, (_, err) in zip(producers, results, strict=True):
        assert process.returncode == 0, err
    seen = [json.loads(out) for out, _ in results]
    rows = dict(db.all("select unique_key, id from {schema}.jobs where unique_key is not null"))
    assert len(rows) == KEYS
    for ids in seen:
        assert ids == rows  # every caller, by either path, was given the one live job's id
    assert db.one("select count(*) from {schema}.jobs where unique_key is not null") == KEYS
