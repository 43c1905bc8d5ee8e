"""Running an enqueue again when it met a conflict with a concurrent transaction.

A serialization failure (40001) or a deadlock (40P01) means the server rolled the enqueue's
transaction back: nothing of it was written, and running it again in a new transaction is
how PostgreSQL means such a conflict to be handled. On Conveyor's own connection (never on a
caller's, whose transaction is the caller's to roll back and run again), an enqueue is run
again up to ``ATTEMPTS`` times in all, each retry logged as one line; the last conflict is
raised as it came (``psycopg.errors.SerializationFailure`` ...). Any other error is raised
at once: a full disk or a statement timeout is the caller's (or the operator's) to handle,
and nothing was enqueued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..db.errors import describe, is_conflict

log = logging.getLogger("conveyor.client")

T = TypeVar("T")

ATTEMPTS = 3
PAUSE = 0.02  # seconds before the second attempt, doubled before the third


def _retrying(exc: BaseException, attempt: int, what: str) -> bool:
    if not is_conflict(exc) or attempt >= ATTEMPTS:
        return False
    log.warning(
        "%s met a conflict with a concurrent transaction (%s); nothing was written, running it again (attempt %d of %d)",
        what,
        describe(exc),
        attempt + 1,
        ATTEMPTS,
        extra={
            "event": "enqueue_conflict",
            "attempt": attempt + 1,
            "sqlstate": getattr(exc, "sqlstate", None),
        },
    )
    return True


async def run_again_on_conflict(call: Callable[[], Awaitable[T]], what: str = "enqueue") -> T:
    """``await call()``, made anew for each attempt, run again on a conflict (see above)."""
    attempt = 1
    while True:
        try:
            return await call()
        except Exception as exc:
            if not _retrying(exc, attempt, what):
                raise
        await asyncio.sleep(PAUSE * 2 ** (attempt - 1))
        attempt += 1


def run_again_on_conflict_sync(call: Callable[[], T], what: str = "enqueue") -> T:
    """The same for the sync client."""
    attempt = 1
    while True:
        try:
            return call()
        except Exception as exc:
            if not _retrying(exc, attempt, what):
                raise
        time.sleep(PAUSE * 2 ** (attempt - 1))
        attempt += 1
