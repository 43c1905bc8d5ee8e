"""Which database errors are worth retrying."""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolTimeout

# Connection lost or refused, server shutting down or starting, too many connections,
# serialization failure, deadlock, lock_timeout: the same statement may well succeed a moment
# later.
_TRANSIENT_STATES = {"57P01", "57P02", "57P03", "53300", "40001", "40P01", "55P03"}


class DeadlineExceeded(psycopg.OperationalError):
    """The database did not answer a worker's or a scheduler's statement within its deadline;
    the connection was dropped (and will be made again). Transient."""


def is_transient(exc: BaseException) -> bool:
    """True for errors that go away by themselves; False for a statement the database refuses
    (bad data, limits, a cancelled query), which would fail the same way again."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError | psycopg.errors.TransactionRollback):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _TRANSIENT_STATES


def is_timeout(exc: BaseException) -> bool:
    """True for a statement that ran past its time: the server's statement_timeout (57014,
    query_canceled) or the client's deadline. It says nothing about the statement being
    wrong: smaller, or at a quieter moment, it may well succeed."""
    if isinstance(exc, DeadlineExceeded):
        return True
    return isinstance(exc, psycopg.errors.QueryCanceled)
