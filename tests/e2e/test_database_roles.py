"""Least-privilege database roles (docs/security.md, "Database roles"): `conveyor grant`
gives a worker role and an API role what they need, and real `conveyor worker`, `conveyor
scheduler` and `conveyor api` processes connected as those roles do all their work, while
PostgreSQL refuses what the roles must not do.

The roles are cluster-wide: each test makes its own (unique names, LOGIN, no password: the
test servers trust local connections) and drops them at its end, whatever happened."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import errors, sql

from conveyor import Conveyor
from conveyor.db import migrations
from conveyor.ops.keys import create_key
from conveyor.ops.roles import LOCAL_ADMIN

from ..helpers import DB, REPO, subprocess_env, wait_until_sync
from .api.test_api_commands import conveyor, serving

pytestmark = pytest.mark.processes

TASKS = "tests.e2e.database_roles_tasks"


def as_role(database_url: str, role: str) -> str:
    """The test database's URL, logging in as ``role``."""
    return psycopg.conninfo.make_conninfo(database_url, user=role, password="")


@pytest.fixture
def roles(database_url: str) -> Iterator[dict[str, str]]:
    """An owner role (no superuser: it may create schemas in the test database, nothing
    more), a worker role and an API role, all of this test's own, dropped at its end."""
    suffix = uuid.uuid4().hex[:10]
    made = {kind: f"cvr_{kind}_{suffix}" for kind in ("owner", "worker", "api")}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in made.values():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(made["owner"])
            )
        )
    try:
        yield made
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for name in made.values():
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name]
                )
                role = sql.Identifier(name)
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO current_user").format(role))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
                conn.execute(sql.SQL("DROP ROLE {}").format(role))


@pytest.fixture
def migrated(database_url: str, schema: str, roles: dict[str, str]) -> Iterator[str]:
    """A schema migrated by Alembic itself as the owner role, dropped at the end (the test
    schemas replay a dump taken without privileges, which would leave the migration's
    REVOKEs out, and belong to a superuser)."""
    name = f"{schema}_roles"
    drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(drop)
    migrations.upgrade(as_role(database_url, roles["owner"]), name)
    try:
        yield name
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(drop)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(
    url: str,
    schema: str,
    statement: str,
    params: list[object] | None = None,
    error: type[psycopg.Error] = errors.InsufficientPrivilege,
) -> str:
    """Run ``statement`` (``{schema}`` in it is the schema) on a connection of its own; it must
    fail with ``error``."""
    composed = sql.SQL(statement).format(schema=sql.Identifier(schema))
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(error) as caught:
        conn.execute(composed, params)
    return str(caught.value)


def day(offset: int) -> str:
    return f"{datetime.now(UTC).date() + timedelta(days=offset):%Y%m%d}"


async def admin_key(database_url: str, schema: str) -> str:
    async with Conveyor(database_url, schema=schema) as client:
        return (await create_key(client.db, LOCAL_ADMIN, "roles-admin", "admin"))[1]


def test_workers_schedulers_and_the_api_run_as_least_privilege_roles(
    database_url: str, migrated: str, roles: dict[str, str], tmp_path: Path
) -> None:
    schema, db = migrated, DB(database_url, migrated)
    worker_role, api_role = roles["worker"], roles["api"]
    owner_url = as_role(database_url, roles["owner"])
    owner_env = subprocess_env(owner_url, schema)
    # What a worker makes at start (tomorrow a week ahead), and what retention drops (a day
    # of the run log past its 90 days), both DDL only the schema's owner may run.
    ahead = [f"job_history_{day(7)}", f"job_runs_{day(7)}"]
    for table in ahead:
        db.all(f"DROP TABLE {{schema}}.{table}")
    DB(owner_url, schema).all(
        "SELECT {schema}.ensure_daily_partitions('job_runs', 0, now() - interval '100 days')"
    )
    expired = [f"job_runs_{day(-101)}", f"job_runs_{day(-100)}"]

    granted = run_cli("grant", "--worker", worker_role, "--api", api_role, env=owner_env)
    assert granted.returncode == 0, granted.stderr
    # Membership in pg_read_all_stats is for a superuser to grant: the owner says so, and one does.
    for role in (worker_role, api_role):
        assert f"-- not granted (needs a superuser): GRANT pg_read_all_stats TO {role}" in granted.stdout
        db.all(f"GRANT pg_read_all_stats TO {role}")
    assert f"GRANT SELECT, UPDATE (last_used_at) ON {schema}.api_keys TO {api_role};" in granted.stdout
    assert f"ON {schema}.api_keys TO {worker_role}" not in granted.stdout

    token = asyncio.run(admin_key(database_url, schema))
    worker_env = subprocess_env(as_role(database_url, worker_role), schema, PYTHONUNBUFFERED="1")
    api_env = subprocess_env(as_role(database_url, api_role), schema, PYTHONUNBUFFERED="1")
    worker_args = ["worker", "--tasks", TASKS, "--lease", "1s", "--poll-interval", "0.2s"]
    first_folder, second_folder = tmp_path / "first", tmp_path / "second"
    first_folder.mkdir()
    second_folder.mkdir()
    with (
        conveyor(
            "api", "--port", "0", "--tasks", TASKS, "--no-access-log", env=api_env, folder=tmp_path
        ) as api,
        conveyor(*worker_args, env=worker_env, folder=first_folder) as first,
        conveyor(
            "scheduler", "--tasks", TASKS, "--tick", "0.2s", env=worker_env, folder=tmp_path
        ) as scheduler,
    ):
        url = api.url()
        wait_until_sync(lambda: serving(url), within=60)
        with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:

            def enqueue(task: str, args: dict[str, object] | None = None) -> int:
                response = http.post("/api/v1/jobs", json={"task": task, "args": args or {}})
                assert response.status_code == 201, response.text
                return int(response.json()["id"])

            ok, flaky, doomed, hang = (
                enqueue("roles_ok", {"n": 1}),
                enqueue("roles_flaky"),
                enqueue("roles_doomed"),
                enqueue("roles_hang"),
            )
            created = http.post(
                "/api/v1/schedules",
                json={"name": "every-second", "cron": "* * * * * *", "task": "roles_ok", "args": {"n": 2}},
            )
            assert created.status_code == 201, created.text

            def state(job_id: int) -> tuple[str, int] | None:
                rows = db.all(
                    "SELECT state, attempt FROM {schema}.job_history WHERE id = %(id)s"
                    " UNION ALL SELECT 'dead', attempt FROM {schema}.dead_jobs WHERE id = %(id)s"
                    " UNION ALL SELECT state, attempt FROM {schema}.jobs WHERE id = %(id)s",
                    {"id": job_id},
                )
                return rows[0] if rows else None

            # Claimed, run and acked; retried after a failure (the retry promoted when due); buried.
            wait_until_sync(lambda: state(ok) == ("completed", 1), within=30)
            wait_until_sync(lambda: state(flaky) == ("completed", 2), within=30)
            wait_until_sync(lambda: state(doomed) == ("dead", 1), within=30)
            wait_until_sync(lambda: state(hang) == ("running", 1), within=30)

            # Rescued: the worker dies holding the job; another one takes it back once the lease ran out.
            first.popen.kill()
            first.popen.wait(timeout=10)
            wait_until_sync(
                lambda: db.one("SELECT lease_expires_at < now() FROM {schema}.jobs WHERE id = %s", [hang]),
                within=30,
            )
            with conveyor(*worker_args, env=worker_env, folder=second_folder) as second:
                wait_until_sync(lambda: state(hang) == ("completed", 2), within=30)

                # The schedule fires under the scheduler's leader lease, and its jobs run.
                wait_until_sync(
                    lambda: (
                        db.one(
                            "SELECT count(*) FROM {schema}.job_history h JOIN {schema}.schedule_fires f"
                            " ON f.job_id = h.id WHERE h.state = 'completed'"
                        )
                        >= 2
                    ),
                    within=30,
                )
                assert db.one("SELECT count(*) FROM {schema}.leaders WHERE expires_at > now()") >= 1

                # The API lists, and sends a dead job back; the worker runs (and buries) it again.
                listed = http.get("/api/v1/jobs", params={"task": "roles_ok"})
                assert listed.status_code == 200, listed.text
                assert ok in [job["id"] for job in listed.json()["jobs"]]
                retried = http.post(f"/api/v1/dead-jobs/{doomed}/retry")
                assert retried.status_code in (200, 201), retried.text
                wait_until_sync(
                    lambda: db.all("SELECT claims FROM {schema}.dead_jobs WHERE id = %s", [doomed]) == [(2,)],
                    within=30,
                )
                # Maintenance made the partitions ahead (as the owner, through the SECURITY
                # DEFINER function), and the scheduler's retention dropped the expired days.
                present = {
                    name
                    for (name,) in db.all(
                        "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace", [schema]
                    )
                }
                assert set(ahead) <= present
                wait_until_sync(
                    lambda: (
                        not set(expired)
                        & {
                            name
                            for (name,) in db.all(
                                "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace", [schema]
                            )
                        }
                    ),
                    within=30,
                )
                # The dashboard's pages (a session is the key in its cookie), the metrics and
                # the health check read all they show.
                pages = [
                    "/",
                    "/dashboard/queues",
                    "/dashboard/queues/roles",
                    "/dashboard/throughput",
                    "/dashboard/jobs",
                    f"/dashboard/jobs/{ok}",
                    "/dashboard/dead",
                    "/dashboard/workers",
                    "/dashboard/schedules",
                    "/metrics",
                    "/health",
                ]
                http.cookies.set("conveyor_session", token)
                for page in pages:
                    shown = http.get(page)
                    assert shown.status_code == 200, (page, shown.text)
                # The API wrote the one column of api_keys it may.
                assert db.one("SELECT last_used_at IS NOT NULL FROM {schema}.api_keys") is True
                assert second.stop(signal.SIGTERM) == 0, str(second)
        assert scheduler.stop() == 0, str(scheduler)
        assert api.stop() == 0, str(api)
        logs = (
            "".join(part.stdout() + part.stderr() for part in (api, first, scheduler))
            + second.stdout()
            + second.stderr()
        )
        # Failures of maintenance are logged and retried, not fatal: none may have happened.
        assert "permission denied" not in logs
        assert "must be owner" not in logs

    worker_url, api_url = as_role(database_url, worker_role), as_role(database_url, api_role)
    # Neither role may change the schema, nor empty a table at once.
    for url in (worker_url, api_url):
        assert "must be owner" in refused(url, schema, "DROP TABLE {schema}.jobs")
        refused(url, schema, "TRUNCATE {schema}.jobs")
        refused(url, schema, "CREATE TABLE {schema}.mine (x int)")
        refused(url, schema, "ALTER TABLE {schema}.jobs ADD COLUMN x int")
        refused(url, schema, "UPDATE {schema}.alembic_version SET version_num = 'x'")
        refused(url, schema, "SELECT {schema}.ensure_daily_partitions('job_runs', 30, now())")
        refused(url, schema, "SELECT {schema}.grant_access_v1(current_user, 'api')")
        # The partition function running with the owner's rights drops past days of the
        # history tables only.
        refused(
            url, schema, "SELECT {schema}.drop_partition_v1('jobs', 10)", None, errors.InvalidParameterValue
        )
        today = f"job_runs_{day(0)}"
        refused(
            url, schema, "SELECT {schema}.drop_partition_v1(%s, 10)", [today], errors.InvalidParameterValue
        )
    # The worker role cannot read or change API keys; the API role can only touch last_used_at.
    refused(worker_url, schema, "SELECT * FROM {schema}.api_keys")
    refused(worker_url, schema, "UPDATE {schema}.api_keys SET role = 'admin'")
    refused(api_url, schema, "UPDATE {schema}.api_keys SET role = 'admin'")
    refused(
        api_url,
        schema,
        "INSERT INTO {schema}.api_keys (name, role, prefix, token_hash) VALUES ('x', 'admin', 'p', 'h')",
    )
    refused(api_url, schema, "DELETE FROM {schema}.api_keys")
    refused(api_url, schema, "SELECT * FROM {schema}.imported_jobs")


def test_a_grant_makes_the_privileges_exactly_so_and_refuses_an_owner(
    database_url: str, migrated: str, roles: dict[str, str]
) -> None:
    schema, db = migrated, DB(database_url, migrated)
    worker_role = roles["worker"]
    env = subprocess_env(as_role(database_url, roles["owner"]), schema)
    db.all(f"GRANT TRUNCATE ON {{schema}}.jobs TO {worker_role}")
    db.all(f"GRANT SELECT ON {{schema}}.api_keys TO {worker_role}")
    db.all(f"GRANT CREATE ON SCHEMA {{schema}} TO {worker_role}")
    granted = run_cli("grant", "--worker", worker_role, env=env)
    assert granted.returncode == 0, granted.stderr

    def has(check: str, target: str, privilege: str) -> bool:
        return bool(db.one(f"SELECT has_{check}_privilege(%s, %s, %s)", [worker_role, target, privilege]))

    assert not has("table", f"{schema}.jobs", "TRUNCATE")
    assert not has("table", f"{schema}.api_keys", "SELECT")
    assert not has("schema", schema, "CREATE")
    assert has("table", f"{schema}.jobs", "INSERT")
    assert has("schema", schema, "USAGE")
    # A partition is reached through its parent only.
    assert not has("table", f"{schema}.job_history_{day(0)}", "SELECT")

    # The owner and a superuser are refused: revoking would strip their own rights.
    for owner in (roles["owner"], db.one("SELECT current_user")):
        refusal = run_cli("grant", "--api", owner, env=env)
        assert refusal.returncode == 1
        assert "superuser or owns" in refusal.stderr
    assert has("table", f"{schema}.jobs", "INSERT")
    missing = run_cli("grant", "--api", f"{worker_role}_missing", env=env)
    assert missing.returncode == 1
    assert "there is no role" in missing.stderr
    # A predefined role would hand Conveyor's rows to every member of it (pg_monitor's ...).
    predefined = run_cli("grant", "--worker", "pg_monitor", env=env)
    assert predefined.returncode == 1
    assert "a role PostgreSQL predefines" in predefined.stderr
    assert run_cli("grant", env=env).returncode != 0
