"""Connections: Conveyor's own pool, and the caller's connection for transactional enqueue.

A job enqueued on the caller's connection is written in the caller's transaction: it
commits or rolls back with the caller's own writes, and workers see it only after commit.
Accepted: psycopg connections, and SQLAlchemy sessions and connections on the psycopg
dialect (``postgresql+psycopg://``), whose underlying psycopg connection is used.
"""

from __future__ import annotations

import math
import os
import select
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ..errors import ConfigurationError
from ..settings import Timeouts, prepared_statements_from_env

# TCP keepalives: a server (or network) that vanishes is noticed within about a minute, rather
# than when the kernel gives up on the connection hours later. tcp_user_timeout bounds how long
# data sent may stay unacknowledged before the kernel drops the connection. (Both apply to TCP
# only; a half-open link whose far end still acknowledges defeats them: deadlines cover that.)
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}

# What the client-side deadline of a use of a connection adds to the server's statement_timeout:
# room for the server's own error to arrive first when the server is only slow.
DEADLINE_MARGIN = 2.0


def connect_kwargs(timeouts: Timeouts | None = None, *, conninfo: str = "") -> dict[str, Any]:
    """Keyword arguments for psycopg's connect: autocommit, keepalives, and with ``timeouts`` a
    connect timeout and (if ``server_side``) statement, lock and idle-in-transaction timeouts
    as startup options,
    appended to any ``options`` the URL carries. Startup options hold for the connection's
    whole life and cost no round trip, where a SET would cost one and be lost behind a pooler
    in transaction mode."""
    kwargs: dict[str, Any] = {"autocommit": True, **KEEPALIVES}
    if not prepared_statements_from_env():
        kwargs["prepare_threshold"] = None
    if timeouts is None:
        return kwargs
    if timeouts.connect:
        kwargs["connect_timeout"] = max(2, math.ceil(timeouts.connect))  # libpq: whole seconds, >= 2
    if timeouts.server_side and (timeouts.statement or timeouts.lock):
        given = psycopg.conninfo.conninfo_to_dict(conninfo).get("options") or ""
        statement = round(timeouts.statement * 1000)
        # A transaction of Conveyor's own never waits on anything but its next statement: one
        # idle for longer than a statement may run belongs to a process that stopped (SIGSTOP,
        # a frozen VM, a debugger) and must not keep its locks (a schedule's row, jobs' rows),
        # or it holds up every other process that would take them over.
        ours = (
            f"-c statement_timeout={statement} "
            f"-c lock_timeout={round(timeouts.lock * 1000)} "
            f"-c idle_in_transaction_session_timeout={statement}"
        )
        kwargs["options"] = f"{given} {ours}".strip()
    return kwargs


def deadline_of(timeouts: Timeouts | None) -> float | None:
    """The client-side deadline of one use of a connection, or None."""
    if timeouts is None or not timeouts.statement:
        return None
    return timeouts.statement + DEADLINE_MARGIN


def drop(conn: psycopg.AsyncConnection[Any]) -> None:
    """Cut a connection off at the socket, now: whatever waits on it gets an error at once.

    Closing it would not wake a coroutine waiting on it, and cancelling that coroutine makes
    psycopg ask the server to cancel the statement and wait for the answer, which a server
    that stopped answering never gives."""
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:
        return  # closed already
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def _readable(fd: int) -> bool:
    if fd < 1024:  # select's limit; it costs less than building a poll object
        return bool(select.select((fd,), (), (), 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def quiet(conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> bool:
    """An idle, open connection with nothing to read: fit to use (as far as can be known
    without a round trip).

    An idle connection receives nothing unless the server has something to say, which is
    usually that it is going away (a restart sends an error, then closes; a crashed backend
    closes). So one poll of the socket tells a connection a restart killed. A connection that
    died silently (a link gone half-open) passes, and is caught by the deadline of its next use."""
    pgconn = conn.pgconn
    return (
        pgconn.status == pq.ConnStatus.OK
        and pgconn.transaction_status == pq.TransactionStatus.IDLE
        and not _readable(pgconn.socket)
    )


async def check_idle_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """Raise if a connection leaving the pool is dead (see ``quiet``); only a connection with
    something to read pays the round trip of the pool's own check."""
    if quiet(conn):
        return
    if conn.closed or conn.broken or conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        raise psycopg.OperationalError("connection not usable")
    await AsyncConnectionPool.check_connection(conn)


def check_idle_sync_connection(conn: psycopg.Connection[Any]) -> None:
    """``check_idle_connection`` for a pool of sync connections (``SyncConveyor``)."""
    if quiet(conn):
        return
    if conn.closed or conn.broken or conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        raise psycopg.OperationalError("connection not usable")
    ConnectionPool.check_connection(conn)


def sync_pool(
    conninfo: str, *, min_size: int = 1, max_size: int = 4, name: str = "conveyor"
) -> ConnectionPool[Any]:
    """``pool`` for sync callers: the same connection settings (keepalives, prepared statements
    as configured for a pooler) and the same check on the way out; opened."""
    return ConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs=connect_kwargs(None, conninfo=conninfo),
        check=check_idle_sync_connection,
        open=True,
        name=name,
        timeout=10.0,
    )


class DroppingConnection(psycopg.AsyncConnection[Any]):
    """The connection of a pool with deadlines: a statement interrupted (its task cancelled)
    drops the connection instead of asking the server to cancel the statement and waiting up
    to seconds for that, since the server may be what stopped answering. The pool replaces the
    connection."""

    async def cancel_safe(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - psycopg's signature
        drop(self)


def pool(
    conninfo: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    name: str = "conveyor",
    configure: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]] | None = None,
    timeouts: Timeouts | None = None,
) -> AsyncConnectionPool[Any]:
    """An (unopened) pool of autocommit connections; ``configure`` runs on each new one.

    Connections are checked on the way out (see ``check_idle_connection``), so after a server
    restart the first statement runs on a new connection instead of failing on a dead one."""
    return AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs=connect_kwargs(timeouts, conninfo=conninfo),
        connection_class=DroppingConnection if timeouts is not None else psycopg.AsyncConnection,
        configure=configure,
        check=check_idle_connection,
        open=False,
        name=name,
        # A statement that cannot get a connection in this time fails (and is retried by its
        # caller) instead of stalling its loop silently; with deadlines, waiting for a
        # connection is bounded like using one.
        timeout=deadline_of(timeouts) or 10.0,
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
