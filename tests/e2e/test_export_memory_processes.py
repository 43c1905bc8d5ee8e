"""An export's memory stays flat as its rows grow: a `conveyor worker` process exports
100,000 rows of a 1,000,000-row table, another exports all 1,000,000, and the peak resident
memory of each (VmHWM, read from /proc while the process lives) is compared. Rows stream
from COPY to the file in chunks, so ten times the rows must not cost ten times the memory."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.contrib import exports

from ..helpers import DB, REPO, subprocess_env, wait_until_sync

pytestmark = pytest.mark.processes

ROWS = 1_000_000
# What the larger export may add to the peak: far less than its extra 45 MB of rows.
MARGIN = 12 * 1024 * 1024


@pytest.fixture
def big_table(database_url: str, schema: str) -> Iterator[DB]:
    app = DB(database_url, f"{schema}_app")
    app.all("create schema {schema}")
    app.all(
        "create table {schema}.big as"
        " select g as id, 'customer ' || g || ', \"quoted\"' as name, (g %% 1000) / 7.0 as amount,"
        " timestamptz '2026-01-01' + g * interval '1 second' as at"
        " from generate_series(1, %s) g",
        [ROWS],
    )
    yield app
    app.all("drop schema {schema} cascade")


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far, in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def export_in_a_worker(
    database_url: str, schema: str, app_schema: str, folder: Path, upto: int, gzipped: bool
) -> tuple[dict[str, Any], int]:
    """Run one export in a fresh worker process: (the job's result, the worker's peak RSS)."""
    log = (folder / f"worker-{upto}.log").open("w")
    env = subprocess_env(
        database_url,
        schema,
        CONVEYOR_EXPORTS_DIR=str(folder / "exports"),
        CONVEYOR_TEST_EXPORT_SCHEMA=app_schema,
    )
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "conveyor", "worker", "--tasks", "tests.e2e.export_tasks"),
            *("--queues", exports.QUEUE, "--poll-interval", "0.2", "--grace", "5"),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    db = DB(database_url, schema)
    try:
        # The worker creates its queues when it registers: enqueue after that.
        wait_until_sync(
            lambda: process.poll() is not None or db.one("select count(*) from {schema}.workers") > 0,
            within=60,
        )
        job_id = db.one(
            "select {schema}.enqueue(%s, %s::jsonb, queue => %s)",
            [
                exports.EXPORT_TASK,
                json.dumps({"export": "big", "params": {"upto": upto}, "gzip": gzipped}),
                exports.QUEUE,
            ],
        )
        wait_until_sync(
            lambda: (
                process.poll() is not None
                or db.one("select count(*) from {schema}.job_history where id = %s", [job_id]) == 1
            ),
            within=300,
            interval=0.1,
        )
        assert process.poll() is None, (folder / f"worker-{upto}.log").read_text()
        peak = peak_rss(process.pid)
        result = db.one("select result from {schema}.job_history where id = %s", [job_id])
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    return result, peak


def test_peak_memory_of_an_export_is_flat_from_100k_to_1m_rows(
    database_url: str, schema: str, big_table: DB, tmp_path: Path
) -> None:
    small, small_peak = export_in_a_worker(database_url, schema, big_table.schema, tmp_path, 100_000, False)
    large, large_peak = export_in_a_worker(database_url, schema, big_table.schema, tmp_path, ROWS, False)
    print(
        f"\npeak RSS of the worker: {small_peak / 2**20:.1f} MiB for {small['rows']} rows"
        f" ({small['bytes'] / 2**20:.1f} MiB of CSV), {large_peak / 2**20:.1f} MiB for {large['rows']} rows"
        f" ({large['bytes'] / 2**20:.1f} MiB of CSV)"
    )
    assert small["rows"] == 100_000
    assert large["rows"] == ROWS
    assert large["bytes"] > 9 * small["bytes"]
    assert large_peak - small_peak < MARGIN, (small_peak, large_peak)

    path = tmp_path / "exports" / large["file"]
    assert path.stat().st_size == large["bytes"]
    with path.open(newline="") as file:
        reader = csv.reader(file)
        assert next(reader) == ["id", "name", "amount", "at"]
        assert sum(1 for _ in reader) == ROWS  # quoted commas and all


def test_a_gzipped_million_row_export_stays_flat_too(
    database_url: str, schema: str, big_table: DB, tmp_path: Path
) -> None:
    small, small_peak = export_in_a_worker(database_url, schema, big_table.schema, tmp_path, 100_000, True)
    large, large_peak = export_in_a_worker(database_url, schema, big_table.schema, tmp_path, ROWS, True)
    print(
        f"\npeak RSS of the worker, gzip: {small_peak / 2**20:.1f} MiB for {small['rows']} rows,"
        f" {large_peak / 2**20:.1f} MiB for {large['rows']} rows ({large['bytes'] / 2**20:.1f} MiB gzipped)"
    )
    assert large["rows"] == ROWS
    assert large_peak - small_peak < MARGIN, (small_peak, large_peak)
    with gzip.open(tmp_path / "exports" / large["file"], "rt", newline="") as file:
        assert sum(1 for _ in csv.reader(file)) == ROWS + 1
