"""The named runtime queries in ``sql/queries/*.sql``.

Each block starts with ``-- name: NAME`` and a comment line saying what it does. The text
is typed ``LiteralString``: queries come from these files only, never from f-strings. The
schema name enters through ``psycopg.sql.Identifier`` when a :class:`Queries` is made for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import LiteralString, cast

from psycopg import sql

from ..paths import sql_dir

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a .sql file into {name: statement}; comments before the first name are dropped."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        statement = "\n".join(lines).strip().rstrip(";")
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = statement
    return queries


@cache
def load(directory: Path | None = None) -> Mapping[str, LiteralString]:
    """Every named query in the directory (by default the packaged sql/queries)."""
    folder = directory or sql_dir() / "queries"
    queries: dict[str, LiteralString] = {}
    for path in sorted(folder.glob("*.sql")):
        for name, statement in parse(path.read_text()).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined in two files")
            # The text is read from files shipped with Conveyor, never built from input. (mypy
            # treats LiteralString as str; the cast is for pyright and for readers.)
            queries[name] = cast(LiteralString, statement)  # type: ignore[redundant-cast]
    return queries


_FIELDS = re.compile(r"\{(\w+)\}")


class Queries:
    """The queries for one schema, composed once, ready to execute.

    A query may name identifiers besides ``{schema}`` (such as ``{view}``): those are
    composed at each use by :meth:`compose`, again only through ``psycopg.sql.Identifier``.
    """

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.channel = schema
        self._identifier = sql.Identifier(schema)
        self._composed = {
            name: sql.SQL(text).format(schema=self._identifier).as_bytes(None)
            for name, text in load().items()
            if set(_FIELDS.findall(text)) <= {"schema"}
        }
        self.jobs_table = sql.SQL("{}.jobs").format(self._identifier).as_string(None)

    def __getitem__(self, name: str) -> bytes:
        return self._composed[name]

    def __contains__(self, name: object) -> bool:
        return name in load()

    def compose(self, name: str, **identifiers: tuple[str, ...]) -> bytes:
        """A query with identifiers of its own, e.g. ``view=("public", "daily_sales")``."""
        parts = {key: sql.Identifier(*names) for key, names in identifiers.items()}
        return sql.SQL(load()[name]).format(schema=self._identifier, **parts).as_bytes(None)

    def compose_around(self, name: str, query: sql.Composable, /, **identifiers: tuple[str, ...]) -> bytes:
        """A query whose ``{query}`` field is a whole statement, already composed by the caller:
        the SELECT an export wraps in ``COPY``, an application's own SQL declared in its code
        (never text from a job). It is followed by a line break: a statement that ends in a
        ``--`` comment ends there, not with what the named query puts after it."""
        parts = {key: sql.Identifier(*names) for key, names in identifiers.items()}
        ended = sql.Composed([query, sql.SQL("\n")])
        return sql.SQL(load()[name]).format(schema=self._identifier, query=ended, **parts).as_bytes(None)


@cache
def for_schema(schema: str) -> Queries:
    return Queries(schema)
