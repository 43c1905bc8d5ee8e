"""Hostile text: what every name, filter and free-text field of Conveyor is tried with, and
a census of the schema's tables to prove that none of it reached SQL as code."""

from __future__ import annotations

from ..helpers import DB

# Text PostgreSQL can store: each must round-trip exactly where a field accepts free text,
# and be refused clearly where a field has a grammar (queue names, schema names).
STORABLE = [
    "it's",
    'say "hi"',
    "a; DROP TABLE jobs; --",
    "x'); DELETE FROM {schema}.jobs; --",
    "$$; DROP SCHEMA public CASCADE; $$",
    "back\\slash\\",
    "%s %(name)s {schema} {0}",
    "\u202eevil\u202c",  # right-to-left override
    "\U0001f4a3\U0001f525",  # emoji outside the BMP
    "e\u0301\u0302\u0303",  # combining marks
    "tab\tnew\nline",
    "*",
    "_%",
]
# Text PostgreSQL cannot store: refused with a clear message, never a 500 or a traceback.
UNSTORABLE = ["nul\x00byte", "lone \ud800 surrogate"]
HOSTILE = STORABLE + UNSTORABLE

TABLES = ("jobs", "job_history", "dead_jobs", "queues", "schedules", "tasks", "pauses", "api_keys")


def census(db: DB) -> dict[str, int]:
    """The row count of each of Conveyor's tables, and the tables the schema holds."""
    counts = {table: int(db.one(f"SELECT count(*) FROM {{schema}}.{table}")) for table in TABLES}  # noqa: S608 - names of this module
    counts["relations"] = int(
        db.one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            [db.schema],
        )
    )
    return counts


def ident(value: str) -> str:
    """A short readable id for a parametrized case."""
    return value.encode("unicode_escape").decode()[:24]
