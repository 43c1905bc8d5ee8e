"""Database conversations written once, run on async or sync connections.

An operation that needs several statements (enqueue: insert, then on a unique-key clash
look up the holder) is a generator that yields :class:`Query` or :class:`Copy` steps and
receives their rows. :func:`run_async` and :func:`run_sync` drive it on a psycopg
connection; this is the whole of Conveyor's sync layer for talking to the database.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from .queries import Queries

T = TypeVar("T")


@dataclass(frozen=True)
class Query:
    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Copy:
    """COPY ... FROM STDIN of data already in COPY's text format; ``data`` may be a generator,
    whose next chunk is then made while the database takes in the last one."""

    name: str
    data: Iterable[bytes]


Step = Query | Copy
Rows = list[tuple[Any, ...]]
Flow = Generator[Step, Rows, T]


async def run_async(conn: psycopg.AsyncConnection[Any], queries: Queries, flow: Flow[T]) -> T:
    rows: Rows | None = None
    async with conn.cursor(row_factory=tuple_row) as cursor:
        while True:
            try:
                step = flow.send(rows) if rows is not None else next(flow)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Copy):
                async with cursor.copy(queries[step.name]) as copy:
                    for chunk in step.data:
                        await copy.write(chunk)
                rows = []
            else:
                await cursor.execute(queries[step.name], step.params)
                rows = await cursor.fetchall() if _returns_rows(cursor) else []


def run_sync(conn: psycopg.Connection[Any], queries: Queries, flow: Flow[T]) -> T:
    rows: Rows | None = None
    with conn.cursor(row_factory=tuple_row) as cursor:
        while True:
            try:
                step = flow.send(rows) if rows is not None else next(flow)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Copy):
                with cursor.copy(queries[step.name]) as copy:
                    for chunk in step.data:
                        copy.write(chunk)
                rows = []
            else:
                cursor.execute(queries[step.name], step.params)
                rows = cursor.fetchall() if _returns_rows(cursor) else []


def _returns_rows(cursor: psycopg.AsyncCursor[Any] | psycopg.Cursor[Any]) -> bool:
    # Not cursor.description: that builds a Column object per column on every call.
    result = cursor.pgresult
    return result is not None and result.status == pq.ExecStatus.TUPLES_OK
