"""Which database errors are worth retrying, and what each says in words."""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolTimeout

# Connection lost or refused, server shutting down or starting, too many connections,
# serialization failure, deadlock, lock_timeout: the same statement may well succeed a moment
# later. So may one refused for want of resources (a full disk, memory): they come back
# (space freed, WAL recycled, a big query ended) without anything changing in the statement.
_TRANSIENT_STATES = {"57P01", "57P02", "57P03", "53000", "53100", "53200", "53300", "40001", "40P01", "55P03"}

# A conflict with a concurrent transaction: the server rolled the transaction back, and running
# it again (a new transaction) is how PostgreSQL means it to be handled.
CONFLICT_STATES = frozenset({"40001", "40P01"})

# What the database's refusal means for the one who must act, by SQLSTATE (then by class).
_REASONS = {
    "53100": "the database server is out of disk space",
    "53200": "the database server is out of memory",
    "53300": "the database server has too many connections",
    "40001": "a concurrent transaction conflicted with it (serialization failure)",
    "40P01": "a concurrent transaction deadlocked with it",
    "57014": "the statement was cancelled",  # the server says why: a timeout, or an operator
    "55P03": "it waited for a lock past the lock timeout",
    "57P01": "the database server is shutting down",
    "57P02": "the database server is shutting down",
    "57P03": "the database server is starting up",
    "25P03": "the server ended a transaction left idle past its timeout",
    "25P04": "the server ended a transaction that ran past its timeout",
}
_CLASS_REASONS = {
    "08": "the connection to the database failed",
    "53": "the database server is short of resources",
}

# The server ended the session of a transaction left idle (idle_in_transaction_session_timeout)
# or running too long (transaction_timeout): the process had stopped; the next try, on a new
# connection, may well succeed. (psycopg files them under InternalError.)
_SESSION_ENDED_STATES = {"25P03", "25P04"}


class DeadlineExceeded(psycopg.OperationalError):
    """The database did not answer a worker's or a scheduler's statement within its deadline;
    the connection was dropped (and will be made again). Transient."""


def is_transient(exc: BaseException) -> bool:
    """True for errors that go away by themselves; False for a statement the database refuses
    (bad data, limits, a cancelled query), which would fail the same way again."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, psycopg.Error) and exc.sqlstate in _SESSION_ENDED_STATES:
        return True
    if not isinstance(exc, psycopg.OperationalError | psycopg.errors.TransactionRollback):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _TRANSIENT_STATES


def is_conflict(exc: BaseException) -> bool:
    """True for a serialization failure or a deadlock: the transaction was rolled back by the
    server, so running it again cannot do anything twice."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate in CONFLICT_STATES


def is_short_of_resources(exc: BaseException) -> bool:
    """True for a refusal for want of resources (class 53: disk, memory, connections). It may
    be the server's state (it passes) or the statement's own data (a value too large for what
    the server has left, refused every time): only other statements going through tell."""
    return isinstance(exc, psycopg.Error) and (exc.sqlstate or "").startswith("53")


def is_timeout(exc: BaseException) -> bool:
    """True for a statement that ran past its time: the server's statement_timeout (57014,
    query_canceled) or the client's deadline. It says nothing about the statement being
    wrong: smaller, or at a quieter moment, it may well succeed."""
    if isinstance(exc, DeadlineExceeded):
        return True
    return isinstance(exc, psycopg.errors.QueryCanceled)


def describe(exc: BaseException) -> str:
    """One line saying what went wrong with a database call, for a log line or an error
    message: the reason in words, then the server's own first line and its SQLSTATE
    (e.g. "the database server is out of disk space (53100: could not extend file ...)")."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, DeadlineExceeded):
        return first
    if isinstance(exc, PoolTimeout):
        return f"no database connection became free in time ({first})"
    state = exc.sqlstate if isinstance(exc, psycopg.Error) else None
    if state is None:
        return first
    reason = _REASONS.get(state) or _CLASS_REASONS.get(state[:2])
    return f"{reason} ({state}: {first})" if reason else f"{first} ({state})"
