"""Settings read from the environment, shared by the CLI, the client and the worker."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode

from .durations import parse_duration
from .errors import ConfigurationError, InvalidOptionError

# At most 62 characters: the worker's control channel is "<schema>.control" cut at 63 bytes
# (as PostgreSQL cuts channel names), which for a 63-character name is the schema's own
# channel, where job wake-ups come: they were taken for control messages and lost.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,61}")
MAX_ARGS_BYTES = 1024 * 1024
# The HTTP API's defaults (conveyor.api; `conveyor api` shows them without importing it).
API_BODY_LIMIT = 2 * 1024 * 1024  # bytes: one job at its argument limit, with room
API_POOL_SIZE = 10  # database connections per API process


def check_schema_name(schema: str) -> str:
    """Schema names are used as identifiers and as the NOTIFY channel: keep them plain.
    PostgreSQL reserves the pg_ prefix for its own schemas (pg_temp, pg_catalog ...)."""
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema) or schema.startswith("pg_"):
        raise ConfigurationError(
            f"schema name {schema!r} is not allowed: use lowercase letters, digits and _ "
            "(at most 62, not starting with a digit nor with pg_)"
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


# The largest timeout PostgreSQL takes (its settings are milliseconds in a 32-bit integer).
MAX_TIMEOUT_SECONDS = 2_147_483.0


def _seconds(name: str, default: float) -> float:
    """A timeout from the environment: a duration (``5s``, ``2m``, or a bare number of
    seconds), 0 for none, at least a millisecond otherwise, at most PostgreSQL's limit."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = parse_duration(raw, default_unit="s").total_seconds()
    except InvalidOptionError as exc:
        raise ConfigurationError(f"{name}: {exc}") from None
    if value and not 0.001 <= value <= MAX_TIMEOUT_SECONDS:
        raise ConfigurationError(
            f"{name}={raw.strip()!r}: use 0 (none) or from 1 ms to {MAX_TIMEOUT_SECONDS:g} s"
        )
    return value


def _switch(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in {"1", "on", "true", "yes"}:
        return True
    if value in {"0", "off", "false", "no"}:
        return False
    raise ConfigurationError(f"{name}={raw!r}: use on or off")


@dataclass(frozen=True)
class Timeouts:
    """Deadlines of the database work of workers and schedulers, in seconds (0: none).

    - ``statement``: the server's ``statement_timeout`` on their pooled connections; the same
      work also carries a client-side deadline a little longer, since a connection that stopped
      answering never delivers the server's error. When it passes, the connection is dropped
      and a new one made. It is their ``idle_in_transaction_session_timeout`` too: a process
      paused in the middle of a transaction (SIGSTOP, a frozen VM) loses it, and its locks,
      after that long.
    - ``lock``: the server's ``lock_timeout``: a write blocked on a lock fails (and is retried)
      instead of waiting behind DDL or a long transaction.
    - ``connect``: how long making a connection may take.
    - ``listen_check``: how often the LISTEN connection, when it has heard nothing, is checked
      with a statement (under the statement deadline).
    - ``server_side``: send ``statement`` and ``lock`` to the server as startup options
      (``-c statement_timeout=...``). Poolers that refuse startup options (PgBouncer: "unsupported
      startup parameter: options") need this off; set the timeouts on the role instead.
    """

    statement: float = 10.0
    lock: float = 5.0
    connect: float = 5.0
    listen_check: float = 10.0
    server_side: bool = True

    def __post_init__(self) -> None:
        if min(self.statement, self.lock, self.connect) < 0 or not self.listen_check > 0:
            raise ConfigurationError("timeouts must not be negative (and listen_check must be positive)")

    @classmethod
    def from_env(cls) -> Timeouts:
        """CONVEYOR_STATEMENT_TIMEOUT, CONVEYOR_LOCK_TIMEOUT, CONVEYOR_CONNECT_TIMEOUT,
        CONVEYOR_LISTEN_CHECK (seconds) and CONVEYOR_SERVER_TIMEOUTS (on/off)."""
        default = cls()
        return cls(
            statement=_seconds("CONVEYOR_STATEMENT_TIMEOUT", default.statement),
            lock=_seconds("CONVEYOR_LOCK_TIMEOUT", default.lock),
            connect=_seconds("CONVEYOR_CONNECT_TIMEOUT", default.connect),
            listen_check=_seconds("CONVEYOR_LISTEN_CHECK", default.listen_check) or default.listen_check,
            server_side=_switch("CONVEYOR_SERVER_TIMEOUTS", default.server_side),
        )


def prepared_statements_from_env() -> bool:
    """CONVEYOR_PREPARED_STATEMENTS (on/off, default on): off behind a pooler in transaction
    mode that does not carry prepared statements between server connections (PgBouncer before
    1.21, or 1.21+ without ``max_prepared_statements``)."""
    return _switch("CONVEYOR_PREPARED_STATEMENTS", True)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    schema: str = "conveyor"
    # A direct connection for LISTEN when database_url goes through a pooler in transaction
    # mode (which cannot hold a LISTEN); None: database_url.
    listen_url: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)

    def __post_init__(self) -> None:
        check_schema_name(self.schema)
        if self.database_url is not None:
            object.__setattr__(self, "database_url", normalize_database_url(self.database_url))
        if self.listen_url is not None:
            object.__setattr__(self, "listen_url", normalize_database_url(self.listen_url))

    @classmethod
    def from_env(cls, database_url: str | None = None, schema: str | None = None) -> Settings:
        """Explicit values first, then CONVEYOR_DATABASE_URL / DATABASE_URL and CONVEYOR_SCHEMA."""
        url = (
            database_url or os.environ.get("CONVEYOR_DATABASE_URL") or os.environ.get("DATABASE_URL") or None
        )
        return cls(
            database_url=url,
            # An empty variable is no setting (as click reads it); an explicit "" is refused.
            schema=schema if schema is not None else os.environ.get("CONVEYOR_SCHEMA") or "conveyor",
            listen_url=os.environ.get("CONVEYOR_LISTEN_URL") or None,
            timeouts=Timeouts.from_env(),
        )
