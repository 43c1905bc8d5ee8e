"""Leader election: a lease row, renewed while held.

Why a lease row and not an advisory lock
----------------------------------------
A session advisory lock is held by a connection: it does not survive PgBouncer in
transaction mode, and a leader whose process hangs (or whose connection the server has not
yet noticed is dead) keeps it indefinitely, so nobody fires schedules. A lease row
(``leaders``: role, holder, expires_at) works through any pooler and lapses on its own.

Invariants
----------
1. ``leader_attempt`` is one statement: it takes the row if it is free or expired, renews it
   if this holder has it, and otherwise changes nothing. At most one holder has an
   unexpired lease at any database instant.
2. A process acts as leader only inside its *trust window*: from the local (monotonic) time
   it *sent* a successful attempt, for ``ttl - tick`` seconds. Measuring from the send, not
   the reply, means a slow reply shortens the window instead of stretching it past the
   lease. The leader renews every tick, so the window is always ahead of it.
3. A process that fails to renew (database unreachable, or another holder took the lease
   after it hung) stops acting at the end of its window at the latest.
4. Leadership is an optimisation, not the safety net: a schedule's fire is unique on
   (schedule, fire time) in the database, so two processes that both believe they lead
   (clock skew, a pause longer than the window) still fire it once.

Failure behaviour
-----------------
Leader killed: the lease expires after at most ``ttl``; a follower trying every tick takes
over within ``ttl + tick``; fires missed meanwhile are late, not lost (the new leader fires
every fire time it finds past due, within the on-time window). Leader stopped cleanly: it
deletes its lease, and a follower takes over on its next tick. Database unreachable: nobody
leads; fires resume when it returns. Database not answering (a half-open link): an attempt
fails at the deadline of the scheduler's connections (``settings.Timeouts``) and the connection
is made again; meanwhile the leader stops acting when its trust window ends (invariant 3),
whether or not the attempt has failed by then.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta
from uuid import UUID, uuid4

from ..clock import Clock
from ..db.database import Database

log = logging.getLogger("conveyor.scheduler")


class Elector:
    def __init__(
        self, db: Database, clock: Clock, *, role: str = "scheduler", ttl: float = 15.0, tick: float = 1.0
    ) -> None:
        if ttl <= 2 * tick:
            raise ValueError("the lease must last longer than two ticks")
        self._db = db
        self._clock = clock
        self.role = role
        self.ttl = ttl
        self.tick = tick
        self.holder: UUID = uuid4()
        self._trusted_until = 0.0

    @property
    def is_leader(self) -> bool:
        return time.monotonic() < self._trusted_until

    async def attempt(self) -> bool:
        """Try to become or stay leader; returns whether this process leads now."""
        was_leader = self.is_leader
        sent = time.monotonic()
        try:
            rows = await self._db.fetch(
                "leader_attempt",
                {
                    "now": self._clock.now(),
                    "role": self.role,
                    "holder": self.holder,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "ttl": timedelta(seconds=self.ttl),
                },
            )
        except Exception as exc:
            log.warning("leader election failed: %s", exc)
            rows = None
        if rows:
            self._trusted_until = sent + self.ttl - self.tick
            if not was_leader:
                log.info("this process now leads %r (holder %s)", self.role, self.holder)
        elif rows is not None:
            self._trusted_until = 0.0  # someone else holds an unexpired lease
            if was_leader:
                log.warning("lost the lead of %r to another process", self.role)
        return self.is_leader

    async def resign(self) -> None:
        if self._trusted_until == 0.0:
            return
        self._trusted_until = 0.0
        try:
            await self._db.fetch("leader_resign", {"role": self.role, "holder": self.holder})
        except Exception as exc:
            log.warning("could not resign the lead of %r: %s", self.role, exc)
