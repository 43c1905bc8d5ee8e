"""Connections: Conveyor's own pool, and the caller's connection for transactional enqueue.

A job enqueued on the caller's connection is written in the caller's transaction: it
commits or rolls back with the caller's own writes, and workers see it only after commit.
Accepted: psycopg connections, and SQLAlchemy sessions and connections on the psycopg
dialect (``postgresql+psycopg://``), whose underlying psycopg connection is used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from ..errors import ConfigurationError

# TCP keepalives: a server (or network) that vanishes is noticed within about a minute, rather
# than when the kernel gives up on the connection hours later.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def pool(
    conninfo: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    name: str = "conveyor",
    configure: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]] | None = None,
) -> AsyncConnectionPool[Any]:
    """An (unopened) pool of autocommit connections; ``configure`` runs on each new one."""
    return AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, **KEEPALIVES},
        configure=configure,
        open=False,
        name=name,
        # A statement that cannot get a connection in this time fails (and is retried by its
        # caller) instead of stalling its loop silently.
        timeout=10.0,
    )


async def caller_async_connection(conn: Any) -> psycopg.AsyncConnection[Any]:
    """The psycopg AsyncConnection behind a caller's async connection or session."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    if isinstance(conn, psycopg.Connection):
        raise ConfigurationError(
            "this is a sync psycopg connection: enqueue on it with SyncConveyor, or pass an AsyncConnection"
        )
    try:
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        AsyncConnection = AsyncSession = None  # type: ignore[assignment,misc]
    if AsyncSession is not None and isinstance(conn, AsyncSession):
        conn = await conn.connection()
    if AsyncConnection is not None and isinstance(conn, AsyncConnection):
        _check_dialect(conn.dialect.driver)
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        if isinstance(driver, psycopg.AsyncConnection):
            return driver
    raise ConfigurationError(
        f"cannot enqueue on {type(conn).__name__}: pass a psycopg AsyncConnection, "
        "or a SQLAlchemy AsyncSession/AsyncConnection on the psycopg dialect; " + SQL_PATH
    )


def caller_sync_connection(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg Connection behind a caller's sync connection or session."""
    if isinstance(conn, psycopg.Connection):
        return conn
    if isinstance(conn, psycopg.AsyncConnection):
        raise ConfigurationError(
            "this is an async psycopg connection: enqueue on it with Conveyor (async), not SyncConveyor"
        )
    try:
        from sqlalchemy.engine import Connection
        from sqlalchemy.orm import Session
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        Connection = Session = None  # type: ignore[assignment,misc]
    if Session is not None and isinstance(conn, Session):
        conn = conn.connection()
    if Connection is not None and isinstance(conn, Connection):
        _check_dialect(conn.dialect.driver)
        driver = conn.connection.driver_connection
        if isinstance(driver, psycopg.Connection):
            return driver
    raise ConfigurationError(
        f"cannot enqueue on {type(conn).__name__}: pass a psycopg Connection, "
        "or a SQLAlchemy Session/Connection on the psycopg dialect"
    )


# The way forward on any other driver (asyncpg, psycopg2, ...): the SQL function, in the
# caller's own transaction, does what enqueue(conn=...) does.
SQL_PATH = (
    "on any other driver (asyncpg, psycopg2), enqueue in your own transaction with SQL: "
    "SELECT conveyor.enqueue('task_name', CAST('{\"key\": 1}' AS jsonb)) (see docs/enqueueing.md)"
)


def _check_dialect(driver: str) -> None:
    if driver != "psycopg":
        raise ConfigurationError(
            f"Conveyor enqueues through psycopg 3; this SQLAlchemy engine uses {driver!r}. "
            "Use a postgresql+psycopg:// URL, or " + SQL_PATH
        )
