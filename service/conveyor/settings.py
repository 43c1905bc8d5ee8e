"""Settings read from the environment, shared by the CLI, the client and the worker."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode

from .errors import ConfigurationError

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
MAX_ARGS_BYTES = 1024 * 1024


def check_schema_name(schema: str) -> str:
    """Schema names are used as identifiers and as the NOTIFY channel: keep them plain."""
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(
            f"schema name {schema!r} is not allowed: use lowercase letters, digits and _ "
            "(at most 63, not starting with a digit)"
        )
    return schema


# The schemes applications already have in DATABASE_URL: libpq's own, Heroku's postgres://,
# and SQLAlchemy's dialect+driver forms (the driver names who connects, not what is spoken).
_URL_SCHEME = re.compile(r"(?i)(?:postgres|postgresql)(?:\+(?P<driver>[a-z0-9_]+))?://")
_SQLALCHEMY_DRIVERS = frozenset({"psycopg", "psycopg2", "psycopg2cffi", "asyncpg", "pg8000"})
# asyncpg's ?ssl= values, as libpq's sslmode.
_SSL_AS_SSLMODE = {"true": "require", "false": "disable"}


def normalize_database_url(url: str) -> str:
    """The URL as libpq (psycopg) takes it: ``postgresql+psycopg://``, ``+psycopg2``,
    ``+asyncpg`` (its ``?ssl=`` becomes ``sslmode``) and ``postgres://`` become
    ``postgresql://``; a libpq ``key=value`` string is returned as it is.

    Every place Conveyor takes a URL goes through this (Settings, and so the clients, the
    worker and the scheduler; migrations), so one DATABASE_URL serves an application's
    SQLAlchemy engine and Conveyor alike.
    """
    match = _URL_SCHEME.match(url.strip())
    if match is None:
        return url
    driver = match["driver"]
    if driver is not None and driver.lower() not in _SQLALCHEMY_DRIVERS:
        raise ConfigurationError(
            f"database URL scheme {url[: match.end() - 3]!r} is not one Conveyor reads: "
            "use postgresql:// (postgresql+psycopg://, +psycopg2:// and +asyncpg:// are read too)"
        )
    rest = url.strip()[match.end() :]
    location, question, query = rest.partition("?")
    if question:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "ssl" for key, _ in pairs):
            has_sslmode = any(key == "sslmode" for key, _ in pairs)
            pairs = [
                ("sslmode", _SSL_AS_SSLMODE.get(value.lower(), value)) if key == "ssl" else (key, value)
                for key, value in pairs
                if key != "ssl" or not has_sslmode
            ]
            query = urlencode(pairs, quote_via=quote)
    return f"postgresql://{location}{question}{query}"


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    schema: str = "conveyor"

    def __post_init__(self) -> None:
        check_schema_name(self.schema)
        if self.database_url is not None:
            object.__setattr__(self, "database_url", normalize_database_url(self.database_url))

    @classmethod
    def from_env(cls, database_url: str | None = None, schema: str | None = None) -> Settings:
        """Explicit values first, then CONVEYOR_DATABASE_URL / DATABASE_URL and CONVEYOR_SCHEMA."""
        url = (
            database_url or os.environ.get("CONVEYOR_DATABASE_URL") or os.environ.get("DATABASE_URL") or None
        )
        return cls(database_url=url, schema=schema or os.environ.get("CONVEYOR_SCHEMA", "conveyor"))
