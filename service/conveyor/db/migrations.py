"""Schema migrations: Alembic revisions that apply the versioned SQL in ``sql/migrations``.

Alembic keeps its version table inside the Conveyor schema (not ``public``), so Conveyor
never collides with an application's own Alembic history. Migrations take an advisory
lock, so processes that start together (workers, the dev server) migrate once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from psycopg import sql
from sqlalchemy.pool import NullPool

from ..paths import alembic_dir, sql_dir
from ..settings import check_schema_name, normalize_database_url

VERSION_TABLE = "alembic_version"


@contextmanager
def _connection(conninfo: str) -> Iterator[sqlalchemy.Connection]:
    conninfo = normalize_database_url(conninfo)
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo), poolclass=NullPool
    )
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _config(conn: sqlalchemy.Connection, schema: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    config.attributes["connection"] = conn
    config.attributes["schema"] = check_schema_name(schema)
    return config


# Alembic keeps its running context in module globals: one migration per process at a time.
# (Processes are serialized by an advisory lock in prepare_schema.)
_alembic_lock = threading.Lock()


def upgrade(conninfo: str, schema: str, revision: str = "head") -> None:
    with _alembic_lock, _connection(conninfo) as conn:
        command.upgrade(_config(conn, schema), revision)
        conn.commit()


def downgrade(conninfo: str, schema: str, revision: str) -> None:
    with _alembic_lock, _connection(conninfo) as conn:
        command.downgrade(_config(conn, schema), revision)
        conn.commit()


def current(conninfo: str, schema: str) -> str | None:
    """The revision the schema is at, or None if Conveyor was never installed there."""
    with _connection(conninfo) as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table_schema": schema, "version_table": VERSION_TABLE}
        )
        return context.get_current_revision()


def head() -> str | None:
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    return ScriptDirectory.from_config(config).get_current_head()


def revisions() -> tuple[str, ...]:
    """Every revision this Conveyor ships, oldest first (the last is the head)."""
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    walked = ScriptDirectory.from_config(config).walk_revisions()
    return tuple(reversed([script.revision for script in walked]))


def apply_sql_file(conn: sqlalchemy.Connection, schema: str, filename: str) -> None:
    """Run one file of sql/migrations with search_path set to the schema alone."""
    text = (sql_dir() / "migrations" / filename).read_text()
    raw: Any = conn.connection.driver_connection
    raw.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
    raw.execute(text.encode())
    raw.execute("SET LOCAL search_path TO DEFAULT")


def prepare_schema(conn: sqlalchemy.Connection, schema: str) -> None:
    """Serialize migrators and make sure the schema exists (Alembic's table lives there)."""
    raw: Any = conn.connection.driver_connection
    raw.execute("SELECT pg_advisory_xact_lock(hashtext('conveyor migrate ' || %s))", (schema,))
    raw.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
