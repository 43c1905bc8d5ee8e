"""Helpers shared by the tests: direct SQL, waiting on conditions, subprocess environments."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent


class DB:
    """Direct SQL for assertions: ``{schema}`` in the text is the test's schema."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema

    def _compose(self, query: str) -> sql.Composed:
        return sql.SQL(query).format(schema=sql.Identifier(self.schema))  # type: ignore[arg-type]

    def all(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(self._compose(query), params)
            return cur.fetchall() if cur.description else []

    def one(self, query: str, params: Any = None) -> Any:
        rows = self.all(query, params)
        assert len(rows) == 1, rows
        return rows[0][0] if len(rows[0]) == 1 else rows[0]

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, **kwargs)

    def compose(self, query: str) -> sql.Composed:
        return self._compose(query)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``predicate`` until true; the one place tests are allowed to poll."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s: {predicate}")
        await asyncio.sleep(interval)


def wait_until_sync(predicate: Callable[[], bool], *, within: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s: {predicate}")
        time.sleep(interval)


def subprocess_env(database_url: str, schema: str, **extra: str) -> dict[str, str]:
    """Environment for a `conveyor` process run by a test."""
    env = dict(os.environ)
    env.update(
        CONVEYOR_DATABASE_URL=database_url,
        CONVEYOR_SCHEMA=schema,
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    env.update(extra)
    return env


def url_with_driver(database_url: str, scheme: str) -> str:
    """The test database as a URL with another scheme (``postgresql+psycopg``, ``postgres`` ...),
    the forms applications keep in DATABASE_URL."""
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    auth = str(info.get("user", ""))
    if info.get("password"):
        auth += f":{info['password']}"
    host, port = str(info.get("host", "")), info.get("port")
    query = ""
    if host.startswith("/"):  # a Unix socket (the embedded server) goes in the query
        host, query = "", f"?host={host}"
    where = f"{host}:{port}" if port and host else host
    if port and not host:
        query += f"&port={port}" if query else f"?port={port}"
    return f"{scheme}://{auth}{'@' if auth else ''}{where}/{info.get('dbname', '')}{query}"
