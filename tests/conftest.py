"""Test fixtures.

Every test that touches PostgreSQL gets its own migrated schema (so its NOTIFY channel is
its own too) in a database made for this run. The server is the embedded PostgreSQL 18 by
default, or the one named by CONVEYOR_TEST_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conveyor import Conveyor, Registry, Worker, WorkerConfig
from conveyor.clock import Clock
from conveyor.db import embedded, migrations

from .helpers import DB

REPO = Path(__file__).resolve().parent.parent


def _with_database(url: str, database: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = database
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """An admin URL for the server the tests use."""
    configured = os.environ.get("CONVEYOR_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="conveyor-pg-") as folder:
        url = embedded.start(Path(folder) / "pgdata", database="postgres")
        yield url


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A database made for this test run, dropped at its end."""
    name = f"conveyor_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _pg_dump() -> str | None:
    """pg_dump 18 from the embedded PostgreSQL (it dumps 14 to 18), else the system's, else None."""
    for folder in (Path(embedded._module().__file__).parent / "pginstall" / "bin", None):
        found = shutil.which("pg_dump", path=str(folder) if folder else None)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def migrated_schema(database_url: str) -> tuple[str, str] | None:
    """(template name, SQL that recreates it): a schema migrated once by Alembic, dumped.

    Each test's schema is this dump replayed under the test's own name: the same tables,
    functions and rows as a migration makes, in one round trip instead of every revision
    (tests/integration/test_migrations.py proves the migrations themselves). None when no
    pg_dump is at hand: each test then migrates its schema."""
    dump = _pg_dump()
    if dump is None:
        return None
    template = f"t_template_{uuid.uuid4().hex[:12]}"
    migrations.upgrade(database_url, template)
    try:
        script = subprocess.run(
            [
                dump,
                "--dbname",
                database_url,
                "--schema",
                template,
                "--inserts",
                "--no-owner",
                "--no-privileges",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(template)))
    # pg_dump's own meta-commands (\restrict) are for psql, not the server; pg_dump 18 sets
    # transaction_timeout, which servers before 17 do not know.
    kept = (line for line in script.splitlines() if not line.startswith(("\\", "SET transaction_timeout")))
    return template, "\n".join(kept)


@pytest.fixture
def schema(
    request: pytest.FixtureRequest, database_url: str, migrated_schema: tuple[str, str] | None
) -> Iterator[str]:
    """A freshly migrated Conveyor schema for this test.

    Torn down last (everything of the test depends on it): a session the test left inside a
    transaction or a statement (a connection dropped by the client while the server still
    runs its statement, a link frozen mid-statement) is ended, since the metrics' counting
    step, and so retention and clean_history, wait for every open transaction of the
    database, which later tests share."""
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]
    yield make_schema(database_url, migrated_schema, f"t_{digest}")
    end_open_sessions(database_url)


def make_schema(database_url: str, migrated_schema: tuple[str, str] | None, name: str) -> str:
    """A freshly migrated Conveyor schema named ``name`` (dropped first if it exists)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    if migrated_schema is None:
        migrations.upgrade(database_url, name)
    else:
        template, script = migrated_schema
        with psycopg.connect(database_url) as conn:
            conn.execute(script.replace(template, name).encode())
    return name


def end_open_sessions(database_url: str) -> None:
    """End the sessions of the database still inside a transaction (see ``schema``)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND xact_start IS NOT NULL"
        )


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
async def client(database_url: str, schema: str, registry: Registry) -> AsyncIterator[Conveyor]:
    async with Conveyor(database_url, schema=schema, registry=registry) as conveyor:
        yield conveyor


@pytest.fixture
def db(database_url: str, schema: str) -> DB:
    return DB(database_url, schema)


@pytest.fixture
def start_worker(database_url: str, schema: str, registry: Registry) -> Callable[..., Any]:
    """``async with start_worker(concurrency=2, clock=...) as worker:`` runs an in-process worker."""

    @asynccontextmanager
    async def start(clock: Clock | None = None, **config: Any) -> AsyncIterator[Worker]:
        config.setdefault("poll_interval", 0.2)
        config.setdefault("grace", 5.0)
        worker = Worker(
            database_url, schema=schema, registry=registry, config=WorkerConfig(**config), clock=clock
        )
        running = asyncio.create_task(worker.run())
        started = asyncio.create_task(worker.started.wait())
        done, _ = await asyncio.wait({running, started}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if running in done:
            started.cancel()
            running.result()  # raises why it stopped
        assert started in done, "worker did not start in 10s"
        await asyncio.wait_for(worker.notifier.listening.wait(), 10)
        try:
            yield worker
        finally:
            worker.stop()
            try:
                await asyncio.wait_for(asyncio.shield(running), 20)
            except TimeoutError:
                # Say where it is stuck before failing: a stop must never take this long.
                for task in asyncio.all_tasks():
                    task.print_stack(file=sys.stderr)
                await asyncio.wait_for(running, 10)

    return start


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Captured output may hold lone surrogates (tests of bad input log them, escaped by
    nothing); pytest-xdist sends reports as UTF-8, so escape them before it does."""
    report.sections = [
        (title, text.encode("utf-8", "backslashreplace").decode("utf-8")) for title, text in report.sections
    ]
