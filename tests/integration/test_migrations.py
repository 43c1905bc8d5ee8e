"""Alembic migrations into a schema of their own: upgrade, downgrade, upgrade again gives the
same catalog; concurrent migrators migrate once; nothing lands in ``public``."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conveyor.db import migrations

from ..helpers import DB, subprocess_env, wait_until_sync

HEAD = "0015_database_roles"

TABLES = {
    "alembic_version",
    "api_keys",
    "attempt_ends",
    "batches",
    "dead_jobs",
    "finished_counts",
    "finished_counts_mark",
    "imported_jobs",
    "job_history",
    "job_history_default",
    "job_runs",
    "job_runs_default",
    "jobs",
    "leaders",
    "metric_buckets",
    "metric_mark",
    "metric_totals",
    "partition_copies",
    "pauses",
    "queues",
    "rate_windows",
    "retention",
    "schedule_fires",
    "schedules",
    "tasks",
    "workers",
}
FUNCTIONS = {
    "api_keys_changed_v1",
    "abort_job",
    "abort_job_v1",
    "settle_v1",
    "seal_batch_v1",
    "seal_batch",
    "link_jobs_v1",
    "finish_batch_v1",
    "enqueue_flow_v1",
    "enqueue_flow",
    "create_batch_v1",
    "create_batch",
    "append_error_v1",
    "apply_retention",
    "cancel_job",
    "cancel_job_v1",
    "cancel_jobs_v1",
    "check_cron",
    "check_timezone",
    "claim_limited_v1",
    "compact_json_octets_v1",
    "count_finished_v1",
    "count_metrics_v1",
    "create_queue",
    "create_schedule",
    "create_schedule_v1",
    "cron_field_value",
    "delete_job",
    "delete_job_v1",
    "drop_partition",
    "drop_partition_v1",
    "drop_partition_v2",
    "enqueue",
    "enqueue_v1",
    "enqueue_v2",
    "ensure_daily_partitions",
    "ensure_history_partitions",
    "ensure_history_partitions_v1",
    "expired_partitions",
    "expired_partitions_v1",
    "expired_partitions_v2",
    "find_schedule",
    "grant_access_v1",
    "finished_state_v1",
    "fire_schedule",
    "fire_schedule_v1",
    "insert_job_v1",
    "insert_job_v2",
    "job_due_v1",
    "job_state_v1",
    "metric_bounds_v1",
    "metric_mark_lock_v1",
    "pause_all",
    "pause_all_v1",
    "pause_queue",
    "pause_queue_v1",
    "pause_schedule",
    "pause_schedule_v1",
    "pause_task",
    "pause_task_v1",
    "purge_dead",
    "purge_dead_v1",
    "purge_dead_v2",
    "queue_stats_v1",
    "queue_stats_v2",
    "refuse_not_live_v1",
    "remove_schedule",
    "remove_schedule_v1",
    "set_queue_limits",
    "set_queue_limits_v1",
    "window_push_v1",
    "window_reopens_v1",
    "window_used_v1",
    "resume_all",
    "resume_all_v1",
    "resume_queue",
    "resume_queue_v1",
    "resume_schedule",
    "resume_schedule_v1",
    "resume_task",
    "resume_task_v1",
    "retention_batch_v1",
    "retention_batch_v2",
    "retention_rows",
    "retention_take_v1",
    "retention_take_v2",
    "retry_dead",
    "retry_dead_v1",
    "retry_dead_v2",
    "retry_dead_v3",
    "run_job_now",
    "run_job_now_v1",
    "set_retention",
    "set_retention_v1",
    "stop_job_v1",
    "trigger_schedule",
    "trigger_schedule_v1",
    "wake_released_v1",
}
VIEWS = {"job_list", "queue_stats", "retention_by_queue"}

# Each query describes one kind of object in the schema %(schema)s, in a stable order.
CATALOG: dict[str, str] = {
    "relations": """
        select c.relname, c.relkind, c.relpersistence, c.relispartition,
               coalesce(pg_get_expr(c.relpartbound, c.oid), ''), coalesce(array_to_string(c.reloptions, ','), ''),
               coalesce(obj_description(c.oid, 'pg_class'), '')
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %(schema)s order by c.relname""",
    # Positions counted among the live columns: a column dropped by a downgrade keeps its
    # number in PostgreSQL, so the same columns in the same order compare equal.
    "columns": """
        select table_name, row_number() over (partition by table_name order by ordinal_position),
               column_name, data_type, is_nullable,
               coalesce(column_default, ''), is_identity, coalesce(identity_generation, '')
        from information_schema.columns where table_schema = %(schema)s order by 1, 2""",
    "constraints": """
        select cl.relname, co.conname, pg_get_constraintdef(co.oid)
        from pg_constraint co join pg_namespace n on n.oid = co.connamespace
        join pg_class cl on cl.oid = co.conrelid
        where n.nspname = %(schema)s order by 1, 2""",
    "indexes": """
        select tablename, indexname, indexdef from pg_indexes where schemaname = %(schema)s order by 1, 2""",
    "functions": """
        select p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid),
               coalesce(obj_description(p.oid, 'pg_proc'), '')
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = %(schema)s order by 1, 2""",
    "views": """
        select viewname, definition from pg_views where schemaname = %(schema)s order by 1""",
    "types": """
        select t.typname, t.typtype from pg_type t join pg_namespace n on n.oid = t.typnamespace
        where n.nspname = %(schema)s order by 1""",
}


# Daily partitions carry their day in their names and bounds: the catalog names it <day>, so
# that schemas migrated on either side of midnight (UTC) compare equal.
DAY_IN_NAME = re.compile(r"(?<=_)\d{8}\b")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}(\+00)?)?")


def describe(
    database_url: str, schema: str, *, as_name: str | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """The schema's catalog, days of partitions left out; with ``as_name``, its own name is
    replaced so two schemas compare."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        found = {kind: conn.execute(query, {"schema": schema}).fetchall() for kind, query in CATALOG.items()}

    def plain(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = DATE.sub("<date>", DAY_IN_NAME.sub("<day>", value))
        return value if as_name is None else value.replace(schema, as_name)

    return {
        kind: sorted((tuple(plain(v) for v in row) for row in rows), key=str) for kind, rows in found.items()
    }


def daily_partitions(database_url: str, schema: str) -> list[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = %s and c.relkind = 'r' and c.relname ~ '_[0-9]{8}$' order by 1",
            [schema],
        ).fetchall()
    return [name for (name,) in rows]


def names(
    catalog: dict[str, list[tuple[Any, ...]]], kind: str, where: Callable[[tuple[Any, ...]], bool]
) -> set[str]:
    return {row[0] for row in catalog[kind] if where(row)}


@pytest.fixture
def fresh(database_url: str, schema: str) -> Iterator[Callable[[str], str]]:
    """``fresh("suffix")``: a schema name of this test's own, dropped at the end."""
    made: list[str] = []

    def drop(name: str) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))

    def make(suffix: str) -> str:
        name = f"{schema}_{suffix}"
        drop(name)
        made.append(name)
        return name

    yield make
    for name in made:
        drop(name)


def test_upgrade_downgrade_upgrade_gives_the_same_catalog(
    database_url: str, schema: str, fresh: Callable[[str], str]
) -> None:
    name = fresh("mig")
    assert migrations.head() == HEAD
    assert migrations.current(database_url, name) is None  # never installed: no schema at all

    before = datetime.now(UTC).date()
    migrations.upgrade(database_url, name)
    after = datetime.now(UTC).date()
    assert migrations.current(database_url, name) == HEAD
    first = describe(database_url, name)
    assert names(first, "relations", lambda r: r[1] in ("r", "p") and "<day>" not in r[0]) == TABLES
    # Daily history partitions from yesterday to a week ahead (UTC days; the day the upgrade
    # ran, which midnight may have changed during it).
    assert daily_partitions(database_url, name) in [
        [
            f"{table}_{today + timedelta(days=d):%Y%m%d}"
            for table in ("job_history", "job_runs")
            for d in range(-1, 8)
        ]
        for today in (before, after)
    ]
    assert names(first, "functions", lambda r: True) == FUNCTIONS
    assert names(first, "views", lambda r: True) == VIEWS
    # Functions find their tables through their own search_path, whatever the caller's (some
    # also bound their lock waits), or name the schema in their bodies (the wrappers). The one procedure cannot pin a search_path (it commits),
    # so it names the schema in its body instead.
    with psycopg.connect(database_url) as conn:
        configs = conn.execute(
            "select p.prokind, array_to_string(p.proconfig, ','), count(*) from pg_proc p"
            " join pg_namespace n on n.oid = p.pronamespace where n.nspname = %s group by 1, 2 order by 1, 2",
            [name],
        ).fetchall()
        procedure = conn.execute(
            "select pg_get_functiondef(p.oid) from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname = %s and p.prokind = 'p'",
            [name],
        ).fetchone()
        assert conn.execute("select to_regclass('public.alembic_version')").fetchone() == (None,)
    assert [(kind, config) for kind, config, _ in configs] == [
        ("f", f"search_path={name}"),
        # The partition upkeep, run with the owner's rights: pg_temp searched last (0015).
        ("f", f"search_path={name}, pg_temp"),
        ("f", f"search_path={name}, pg_temp,lock_timeout=500ms"),
        ("f", f"search_path={name},jit=off"),
        # The metrics' counting step: planned for the values of each call, without JIT or parallel workers.
        (
            "f",
            f"search_path={name},jit=off,max_parallel_workers_per_gather=0,plan_cache_mode=force_custom_plan",
        ),
        ("f", f"search_path={name},lock_timeout=500ms"),
        ("f", None),  # the wrappers over a version and the pure decisions: inlined, so no SET
        ("p", None),
    ]
    assert procedure is not None
    assert f"{name}.retention_batch_v2" in procedure[0]
    assert f"{name}.count_metrics_v1" in procedure[0]
    # Only the partition upkeep runs with its owner's rights (SECURITY DEFINER); it, and the
    # grant function, are not for PUBLIC to call (docs/security.md, "Database roles").
    with psycopg.connect(database_url) as conn:
        rights = conn.execute(
            "select p.proname, p.prosecdef, has_function_privilege('public', p.oid, 'EXECUTE') from pg_proc p"
            " join pg_namespace n on n.oid = p.pronamespace where n.nspname = %s"
            " and (p.prosecdef or not has_function_privilege('public', p.oid, 'EXECUTE')) order by 1",
            [name],
        ).fetchall()
    assert rights == [
        ("drop_partition_v1", True, False),
        ("ensure_history_partitions_v1", True, False),
        ("grant_access_v1", False, False),
    ]
    # It is what the test fixture's migration made, name aside.
    assert describe(database_url, name, as_name="S") == describe(database_url, schema, as_name="S")

    migrations.upgrade(database_url, name)  # already at head: nothing changes
    assert describe(database_url, name) == first

    migrations.downgrade(database_url, name, "base")
    assert migrations.current(database_url, name) is None
    emptied = describe(database_url, name)
    assert [row[:2] for row in emptied["relations"]] == [
        ("alembic_version", "r"),
        ("alembic_version_pkc", "i"),
    ]
    assert emptied["functions"] == []
    assert emptied["views"] == []
    assert names(emptied, "types", lambda r: True) == {"alembic_version", "_alembic_version"}
    with psycopg.connect(database_url) as conn:
        left = conn.execute(
            sql.SQL("select count(*) from {}.alembic_version").format(sql.Identifier(name))
        ).fetchone()
    assert left == (0,)

    migrations.upgrade(database_url, name)
    assert migrations.current(database_url, name) == HEAD
    again = describe(database_url, name)
    for kind in CATALOG:
        assert again[kind] == first[kind], kind


def test_three_migrators_at_once_migrate_the_schema_once(
    database_url: str, schema: str, fresh: Callable[[str], str]
) -> None:
    name = fresh("race")
    # Tagged, so that migrators that deadlock can be cut loose instead of hanging the run.
    app = f"{name}_migrator"
    conninfo = psycopg.conninfo.make_conninfo(database_url, application_name=app)
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            start.wait(10)
            migrations.upgrade(conninfo, name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, name=f"migrator-{i}", daemon=True) for i in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10  # one migration takes well under a second
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [thread.name for thread in threads if thread.is_alive()]
    if hung:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where application_name = %s", [app]
            )
        for thread in threads:
            thread.join(30)
    failures = [f"{type(e).__name__}: {e}" for e in errors]
    assert hung == [], f"migrators still running after 10 s (deadlocked); errors: {failures}"
    assert failures == []

    assert migrations.current(database_url, name) == HEAD
    with psycopg.connect(database_url) as conn:
        ident = sql.Identifier(name)
        versions = conn.execute(
            sql.SQL("select version_num from {}.alembic_version").format(ident)
        ).fetchall()
        queues = conn.execute(sql.SQL("select name from {}.queues").format(ident)).fetchall()
    assert versions == [(HEAD,)]
    assert queues == [("default",)]  # the seed row went in once
    assert describe(database_url, name, as_name="S") == describe(database_url, schema, as_name="S")


MIGRATE = "import sys; from conveyor.db import migrations; migrations.upgrade(sys.argv[1], sys.argv[2])"


def test_three_processes_started_together_migrate_the_schema_once(
    database_url: str, schema: str, fresh: Callable[[str], str]
) -> None:
    name = fresh("procs")
    env = subprocess_env(database_url, name)
    lock = "select pg_advisory_lock(hashtext('conveyor migrate ' || %s))"
    waiting = (
        "select count(*) from pg_locks where locktype = 'advisory' and not granted and database = "
        "(select oid from pg_database where datname = current_database())"
    )
    with psycopg.connect(database_url, autocommit=True) as holder:
        # Hold the migrators' lock until all three wait on it, so they really race.
        holder.execute(lock, [name])
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATE, database_url, name],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        try:
            wait_until_sync(lambda: holder.execute(waiting).fetchone() == (3,), within=30)
        finally:
            holder.execute("select pg_advisory_unlock(hashtext('conveyor migrate ' || %s))", [name])
        outcomes = [(proc.wait(60), proc.communicate()[1]) for proc in procs]
    assert [rc for rc, _ in outcomes] == [0, 0, 0], [err for _, err in outcomes]

    assert migrations.current(database_url, name) == HEAD
    with psycopg.connect(database_url) as conn:
        ident = sql.Identifier(name)
        versions = conn.execute(
            sql.SQL("select version_num from {}.alembic_version").format(ident)
        ).fetchall()
        queues = conn.execute(sql.SQL("select name from {}.queues").format(ident)).fetchall()
    assert versions == [(HEAD,)]
    assert queues == [("default",)]
    assert describe(database_url, name, as_name="S") == describe(database_url, schema, as_name="S")


def test_conveyor_keeps_out_of_public_and_of_the_applications_alembic_history(
    database_url: str, fresh: Callable[[str], str]
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create table public.alembic_version (version_num varchar(32) primary key)")
        conn.execute("insert into public.alembic_version values ('app_rev_42')")
    try:
        before = describe(database_url, "public")
        name = fresh("pub")
        migrations.upgrade(database_url, name)
        assert migrations.current(database_url, name) == HEAD
        assert describe(database_url, "public") == before
        migrations.downgrade(database_url, name, "base")
        assert describe(database_url, "public") == before
        with psycopg.connect(database_url) as conn:
            assert conn.execute("select version_num from public.alembic_version").fetchall() == [
                ("app_rev_42",)
            ]
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("drop table if exists public.alembic_version")


def test_a_schema_never_migrated_reports_no_revision(database_url: str, fresh: Callable[[str], str]) -> None:
    name = fresh("empty")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(name)))
    assert migrations.current(database_url, name) is None


def test_each_revision_downgrades_to_exactly_the_one_before(
    database_url: str, fresh: Callable[[str], str]
) -> None:
    name = fresh("steps")
    migrations.upgrade(database_url, name, "0001_initial")
    at_first = describe(database_url, name)
    migrations.upgrade(database_url, name)
    at_head = describe(database_url, name)
    assert at_head != at_first

    migrations.downgrade(database_url, name, "0001_initial")
    assert migrations.current(database_url, name) == "0001_initial"
    back = describe(database_url, name)
    for kind in CATALOG:
        assert back[kind] == at_first[kind], kind

    migrations.upgrade(database_url, name)
    again = describe(database_url, name)
    for kind in CATALOG:
        assert again[kind] == at_head[kind], kind


@pytest.mark.parametrize("before", ["0005_retention_bounds"])
def test_the_head_revision_downgrades_to_exactly_the_one_before(
    database_url: str, fresh: Callable[[str], str], before: str
) -> None:
    name = fresh("last")
    migrations.upgrade(database_url, name, before)
    at_before = describe(database_url, name)
    migrations.upgrade(database_url, name)
    assert describe(database_url, name) != at_before

    migrations.downgrade(database_url, name, before)
    assert migrations.current(database_url, name) == before
    back = describe(database_url, name)
    for kind in CATALOG:
        assert back[kind] == at_before[kind], kind


def test_moving_to_domains_keeps_the_jobs_and_their_rules(
    database_url: str, fresh: Callable[[str], str]
) -> None:
    """0003 rewrites the jobs table with domain-typed columns: the jobs waiting in it stay,
    and every rule of the old CHECK constraints still refuses, under the same name."""
    name = fresh("domains")
    migrations.upgrade(database_url, name, "0002_scheduler")
    schema = sql.Identifier(name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("select {}.enqueue('t', '{{\"a\": 1}}', priority => 1)").format(schema))
        before = conn.execute(
            sql.SQL("select id, state, priority, args from {}.jobs").format(schema)
        ).fetchall()
    migrations.upgrade(database_url, name)
    bad_rows = {
        "live_state": "state => 'done'",
        "priority_range": "priority => 7",
        "max_attempts_positive": "max_attempts => 0",
        "progress_range": "progress => 101",
        "task_named": "task => ''",
        "args_object": "args => '[1]'",
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        after = conn.execute(
            sql.SQL("select id, state, priority, args from {}.jobs").format(schema)
        ).fetchall()
        assert after == before
        for rule, row in bad_rows.items():
            column, value = row.split(" => ")
            statement = sql.SQL(
                "insert into {}.jobs (queue, task, args, state, priority, run_at, max_attempts, enqueued_at, progress)"
                " values ('default', {}, {}, {}, {}, now(), {}, now(), {})"
            ).format(
                schema,
                *(
                    sql.SQL(value) if column == field else sql.SQL(default)
                    for field, default in [
                        ("task", "'t'"),
                        ("args", "'{}'"),
                        ("state", "'available'"),
                        ("priority", "2"),
                        ("max_attempts", "5"),
                        ("progress", "null"),
                    ]
                ),
            )
            with pytest.raises(psycopg.errors.CheckViolation, match=rule):
                conn.execute(statement)


WRAPPED = {
    "create_schedule",
    "enqueue",
    "ensure_history_partitions",
    "expired_partitions",
    "fire_schedule",
    "pause_queue",
    "pause_schedule",
    "purge_dead",
    "remove_schedule",
    "resume_queue",
    "resume_schedule",
    "retry_dead",
    "set_retention",
    "trigger_schedule",
}
# The version each wrapper calls, where it is not 1.
CURRENT_VERSION = {"enqueue": 2, "retry_dead": 3, "purge_dead": 2, "expired_partitions": 2}


def test_the_names_without_a_version_are_inlined_wrappers_over_the_current_version(
    db: DB, schema: str
) -> None:
    """psql's API (conveyor.enqueue, ...) calls the current version; PostgreSQL inlines the
    wrapper, so a call plans as a call of the version itself."""
    rows = db.all(
        "select p.proname, pg_get_function_identity_arguments(p.oid), p.prosrc, p.proconfig, l.lanname"
        " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " join pg_language l on l.oid = p.prolang"
        " where n.nspname = %s and p.proname = any(%s) order by 1",
        [schema, sorted(WRAPPED)],
    )
    assert {row[0] for row in rows} == WRAPPED
    for name, arguments, source, config, language in rows:
        assert language == "sql", name
        version = CURRENT_VERSION.get(name, 1)
        assert f"{schema}.{name}_v{version}(" in source, name
        assert config is None, name  # a SET clause would keep it from being inlined
        versioned = db.one(
            "select pg_get_function_identity_arguments(p.oid) from pg_proc p join pg_namespace n"
            " on n.oid = p.pronamespace where n.nspname = %s and p.proname = %s",
            [schema, f"{name}_v{version}"],
        )
        assert versioned == arguments, name
    plan = db.all("explain verbose select {schema}.enqueue('t', '{{}}')")
    assert f"{schema}.enqueue_v2(" in "\n".join(line for (line,) in plan)
