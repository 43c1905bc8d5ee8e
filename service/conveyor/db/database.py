"""The one database seam: every statement Conveyor runs on its own connections.

Methods are named after the queries in ``sql/queries`` they run. Callers above this module
never see SQL; the queue engine speaks in job ids, attempts and outcomes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import pq
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from .. import jsonb
from ..jobs import ClaimedJob, Cursors, Extended, Held, HeldBack, Outcomes, Recorded
from ..limits import QueueLimits
from ..settings import Timeouts
from .connections import (
    DEADLINE_MARGIN,
    check_idle_connection,
    connect_kwargs,
    deadline_of,
    drop,
    pool,
    quiet,
)
from .errors import DeadlineExceeded
from .queries import Queries, for_schema
from .steps import Flow, run_async

T = TypeVar("T")

# How long a connection may stay out of the pool as the spare (see Database.connection).
SPARE_SECONDS = 60.0
# The statement timeout of an ack that writes follow-up jobs: this many times the connection's,
# at most the cap (seconds). Beyond it the ack fails as a timeout, and is retried.
FOLLOW_UPS_TIMEOUT_FACTOR = 6
FOLLOW_UPS_TIMEOUT_CAP = 300.0


def by_id(entries: Iterable[tuple[int, str]]) -> str:
    """A JSON object from (job id, JSON value) pairs: how fenced writes take their jobs.

    The values are JSON already (results and errors are encoded once, by the executor)."""
    return "{" + ",".join(f'"{job_id}":{value}' for job_id, value in entries) + "}"


@dataclass(frozen=True)
class WorkerRow:
    """A worker process as its row in the workers table records it."""

    id: UUID
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: datetime


class Borrowed:
    """``async with``: a connection of a :class:`Database`, borrowed and given back.

    With a deadline (a database with timeouts), the connection is dropped if the block has not
    ended when it passes: whatever waits on it fails at once with :class:`DeadlineExceeded`,
    and the pool makes a new connection in its place."""

    __slots__ = ("_conn", "_db", "_deadline", "_expired", "_timer")

    def __init__(self, db: Database, deadline: float | None = None) -> None:
        self._db = db
        self._deadline = deadline if deadline is not None and db.deadline is not None else db.deadline
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        conn = await self._db._borrow()
        self._conn = conn
        self._db._lent.add(self)
        if self._deadline is not None:
            self._timer = asyncio.get_running_loop().call_later(self._deadline, self._expire)
        return conn

    def _expire(self) -> None:
        self._expired = True
        drop(self._conn)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        self._db._lent.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if not self._expired:
            await self._db._give_back(self._conn, failed=exc_type is not None)
            return
        await self._conn.close()
        await self._db._give_back(self._conn, failed=True)  # the pool discards it
        await self._db._replace_idle_connections()
        if isinstance(exc, Exception) and self._deadline is not None:
            raise DeadlineExceeded(
                f"the database did not answer within {self._deadline:g}s; the connection was dropped"
            ) from exc


class Transaction:
    """Named queries run inside one transaction (see :meth:`Database.transaction`)."""

    def __init__(self, cursor: psycopg.AsyncCursor[tuple[Any, ...]], queries: Queries) -> None:
        self._cursor = cursor
        self._queries = queries

    async def fetch(
        self, name: str, params: dict[str, Any] | None = None, *, prepare: bool | None = None
    ) -> list[tuple[Any, ...]]:
        """``prepare=False``: planned for these values (see :meth:`Database.fetch_planned`)."""
        await self._cursor.execute(self._queries[name], params or {}, prepare=prepare)
        return await self._cursor.fetchall() if self._cursor.description else []


class Database:
    """A pool of connections to one Conveyor schema."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        generic_plans: bool = False,
        timeouts: Timeouts | None = None,
    ) -> None:
        """``generic_plans``: prepared statements always run their generic plan (a worker's
        pool). Left to choose, PostgreSQL re-planned the claim on every call, its custom plans
        looking cheaper, and planning cost more than running (bench/RESULTS.md, "Why the code
        is shaped so"). The hot queries are written so that one plan
        fits every call whatever the statistics say (ids probed through the primary key;
        queues, levels and cursors in lateral joins); tests/integration/test_fenced_write_plans.py
        and test_claim_with_delayed_backlog.py check the generic plans.

        ``timeouts`` (a worker's and a scheduler's pools): server-side statement and lock
        timeouts, a connect timeout, and a client-side deadline on every use of a connection
        (see :class:`Borrowed`). Without them (a client's pool) statements may run as long as
        they need: a bulk enqueue of a million jobs is one COPY."""
        self.conninfo = conninfo
        self.timeouts = timeouts
        self.deadline = deadline_of(timeouts)
        self.schema = schema
        self.queries: Queries = for_schema(schema)
        self._spare: psycopg.AsyncConnection[Any] | None = None
        self._borrowed_at: dict[int, float] = {}  # by id(): when each connection left the pool
        self._lent: set[Borrowed] = set()  # the blocks holding a connection now
        self._waiting = 0  # borrowers waiting for the pool: while any wait, nothing is kept aside
        self._closing = False
        self.pool: AsyncConnectionPool[Any] = pool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            configure=self._configure_generic if generic_plans else self._configure,
            timeouts=timeouts,
        )

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        set_json_loads(jsonb.loads, conn)  # json and jsonb columns: args, results, errors

    async def _configure_generic(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await self._configure(conn)
        # A session setting: behind a pooler in transaction mode it may not stick, which
        # costs speed only.
        await conn.execute(self.queries["use_generic_plans"])

    def connection(self, *, deadline: float | None = None) -> Borrowed:
        """A connection for the length of an ``async with``; ``deadline`` replaces this
        database's client-side deadline for that use (when it has one).

        The connection last given back is kept aside (the spare) for the next borrower, who
        then does not go through the pool: psycopg_pool's getconn and putconn, and its own
        connection() context, are a noticeable share of a serial caller's statement (one
        enqueue after another; bench/RESULTS.md, "Why the code is shaped so"). While another
        borrower waits for the pool, a connection given back goes to the pool (to that
        borrower) instead. Anything else borrows from the pool as usual. A connection that saw
        an error, or is not idle, goes back to the pool, which discards broken ones; the spare
        goes back too after SPARE_SECONDS, so that the pool's lifetime rules still apply to it.
        The spare is checked as the pool checks its connections on the way out
        (``check_idle_connection``: one poll of the socket), so a
        server restart costs no failed statement on either path."""
        return Borrowed(self, deadline)

    def drop_connections_in_use(self) -> None:
        """Drop the connection of every block holding one: whatever waits on it fails at once.
        For a close whose cancelled calls did not end: a cancel request that reaches the server
        before the statement starts is ignored there, and the statement (waiting on a lock, say)
        would hold its call forever."""
        for borrowed in list(self._lent):
            borrowed._expire()

    async def _borrow(self) -> psycopg.AsyncConnection[Any]:
        conn = self._spare
        if conn is not None:
            self._spare = None
            if quiet(conn):
                return conn
            try:
                await check_idle_connection(conn)
            except psycopg.Error:
                self._borrowed_at.pop(id(conn), None)
                await self.pool.putconn(conn)  # dead: the pool discards it
            else:
                return conn
        self._waiting += 1
        try:
            borrowed: psycopg.AsyncConnection[Any] = await self.pool.getconn()
        finally:
            self._waiting -= 1
        self._borrowed_at.setdefault(id(borrowed), time.monotonic())
        return borrowed

    async def _give_back(self, conn: psycopg.AsyncConnection[Any], *, failed: bool) -> None:
        taken = self._borrowed_at.get(id(conn), 0.0)
        if (
            not failed
            and self._spare is None
            and not self._waiting  # a borrower waiting for the pool gets it, not the spare slot
            and not self._closing
            and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
            and time.monotonic() - taken < SPARE_SECONDS
        ):
            self._spare = conn
            return
        self._borrowed_at.pop(id(conn), None)
        await self.pool.putconn(conn)

    async def _replace_idle_connections(self) -> None:
        """A connection stopped answering: the idle ones share its path and most likely did
        too, and each would cost a deadline to find out. Replace them all (the pool closes
        those in use when they come back)."""
        if self._closing:
            return
        spare, self._spare = self._spare, None
        if spare is not None:
            self._borrowed_at.pop(id(spare), None)
            await spare.close()
            await self.pool.putconn(spare)
        await self.pool.drain()

    async def open(self) -> None:
        # One direct connection first: if the database is unreachable this fails at once with
        # the server's reason, where the pool would retry for its whole timeout.
        probe = await psycopg.AsyncConnection.connect(
            self.conninfo, **{"connect_timeout": 10, **connect_kwargs(self.timeouts, conninfo=self.conninfo)}
        )
        await probe.close()
        await self.pool.open(wait=True, timeout=10)

    async def close(self) -> None:
        self._closing = True
        spare, self._spare = self._spare, None
        if spare is not None:
            await self.pool.putconn(spare)
        await self.pool.close()

    # -- generic -----------------------------------------------------------------------

    async def run(self, flow: Flow[T], *, atomic: bool = False) -> T:
        """Run a multi-step conversation on a pooled connection."""
        async with self.connection() as conn:
            if not atomic:
                return await run_async(conn, self.queries, flow)
            async with conn.transaction():
                return await run_async(conn, self.queries, flow)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction on a pooled connection: committed at the end, rolled back on error."""
        async with (
            self.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            yield Transaction(cur, self.queries)

    async def fetch(self, name: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        async with self.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(self.queries[name], params or {})
            return await cur.fetchall() if cur.description else []

    async def fetch_dicts(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        async with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(self.queries[name], params or {})
            return await cur.fetchall() if cur.description else []

    async def fetch_planned(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """A read planned for its own values, each row a dict: never as a prepared statement
        (whose generic plan, made once for all values, can neither drop the filters left
        NULL nor prune the history days a time range excludes), and without JIT (the
        planner's estimates for a large history pass jit_above_cost, and compiling took a
        second where running takes milliseconds). For the listings (sql/queries/browse.sql).
        Costs a transaction around the read: one round trip more than :meth:`fetch_dicts`."""
        async with self.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(self.queries["no_jit"])
            await cur.execute(self.queries[name], params, prepare=False)
            return await cur.fetchall()

    # -- the hot path ------------------------------------------------------------------

    async def enqueue_due_job(
        self,
        *,
        queue: str,
        task: str,
        args_json: str,
        priority: int,
        max_attempts: int,
        now: datetime | None,
        notify: bool = True,
        durable: bool = True,
    ) -> int:
        """Insert one job due now into a queue that exists; its id. (One statement, no
        conversation: the commonest enqueue, kept to the fewest steps.) ``notify`` False:
        the caller wakes the workers after this returns (queue.wake_ups); ``durable`` False:
        the commit does not wait for the disk (docs/enqueueing.md)."""
        params = {
            "notify": notify,
            "durable": durable,
            "queue": queue,
            "task": task,
            "args": args_json,
            "priority": priority,
            "max_attempts": max_attempts,
            "now": now,
            "channel": self.queries.channel,
        }
        async with self.connection() as conn:
            cursor = await conn.execute(self.queries["enqueue_job_due_now"], params)
            row = await cursor.fetchone()
        assert row is not None  # an INSERT ... VALUES returns its row
        return int(row[0])

    async def claim_jobs(
        self,
        *,
        worker_id: UUID,
        queues: Sequence[str],
        limits: Sequence[int],
        limit: int,
        lease: timedelta,
        now: datetime | None,
        after: Cursors | None = None,
    ) -> list[ClaimedJob]:
        """Claim jobs; ``after`` gives levels to read only past a key (see queue.cursors).
        Several queues take a statement of their own, which first reads how the claim falls
        across them (so that it locks only what it takes); one queue needs no such read."""
        after = after or {}
        rows = await self.fetch(
            "claim_jobs" if len(queues) == 1 else "claim_jobs_across_queues",
            {
                "now": now,
                "queues": list(queues),
                "limits": list(limits),
                "limit": limit,
                "worker_id": worker_id,
                "lease": lease,
                "after_queues": [queue for queue, _ in after],
                "after_priorities": [priority for _, priority in after],
                "after_run_ats": [run_at for run_at, _ in after.values()],
                "after_ids": [job_id for _, job_id in after.values()],
            },
        )
        return [ClaimedJob._make(row) for row in rows]

    async def claim_limited(
        self,
        *,
        worker_id: UUID,
        queue: str,
        limit: int,
        lease: timedelta,
        now: datetime | None,
        after: Cursors | None = None,
    ) -> tuple[list[ClaimedJob], HeldBack | None]:
        """Claim from one limited queue within its limits (sql/queries/limits.sql): the jobs,
        and what held others back, if a limit did. ``after``: the worker's cursors (only this
        queue's are read)."""
        levels = [(priority, key) for (name, priority), key in (after or {}).items() if name == queue]
        rows = await self.fetch(
            "claim_limited",
            {
                "queue": queue,
                "limit": limit,
                "worker_id": worker_id,
                "lease": lease,
                "now": now,
                "after_priorities": [priority for priority, _ in levels],
                "after_run_ats": [run_at for _, (run_at, _) in levels],
                "after_ids": [job_id for _, (_, job_id) in levels],
            },
        )
        jobs = [ClaimedJob._make(row[:10]) for row in rows if row[0] is not None]
        held = next(
            (HeldBack(row[2], row[10], row[11], row[12] == "queue") for row in rows if row[0] is None), None
        )
        return jobs, held

    async def limited_queues(self, queues: Sequence[str]) -> frozenset[str]:
        rows = await self.fetch("limited_queues", {"queues": list(queues)})
        return frozenset(row[0] for row in rows)

    async def set_queue_limits(self, queue: str, limits: QueueLimits) -> None:
        await self.fetch("set_queue_limits", {"queue": queue, **limits.params()})

    async def prune_rate_windows(self, *, now: datetime | None) -> None:
        await self.fetch("prune_rate_windows", {"now": now})

    async def record_outcomes(
        self,
        outcomes: Outcomes,
        *,
        worker_id: UUID,
        now: datetime | None,
        children: Callable[[frozenset[int]], Flow[Any] | None] | None = None,
    ) -> Recorded:
        """Write a batch of outcomes in one transaction. Only jobs this worker still holds
        change; ``children(completed_ids)`` may enqueue follow-up jobs in that transaction.

        Follow-up jobs are written under a statement timeout FOLLOW_UPS_TIMEOUT_FACTOR times
        the connection's (at most FOLLOW_UPS_TIMEOUT_CAP), and the client's deadline for this
        use of the connection grows with it: a large fan-out is one COPY, which the normal
        timeout would cancel every time."""
        queries = self.queries
        follow_ups_timeout = self._follow_ups_timeout() if children is not None else None
        completed: frozenset[int] = frozenset()
        retried: frozenset[int] = frozenset()
        buried: frozenset[int] = frozenset()
        aborted: frozenset[int] = frozenset()
        statements = (
            bool(outcomes.completed) + bool(outcomes.retried) + bool(outcomes.buried) + bool(outcomes.aborted)
        )
        # One statement alone is atomic: BEGIN and COMMIT would be two more round trips for
        # every batch of a draining worker.
        atomic = statements > 1 or children is not None
        deadline = follow_ups_timeout + DEADLINE_MARGIN if follow_ups_timeout is not None else None
        async with (
            self.connection(deadline=deadline) as conn,
            conn.transaction() if atomic else nullcontext(),
        ):
            async with conn.cursor(row_factory=tuple_row) as cur:
                if outcomes.completed:
                    jobs = by_id((i, f"[{c},{r or 'null'}]") for i, c, r in outcomes.completed)
                    await cur.execute(
                        queries["complete_jobs"], {"jobs": jobs, "worker_id": worker_id, "now": now}
                    )
                    completed = frozenset(row[0] for row in await cur.fetchall())
                if outcomes.retried:
                    jobs = by_id((i, f"[{c},{d!r},{e}]") for i, c, d, e in outcomes.retried)
                    await cur.execute(
                        queries["retry_jobs"],
                        {"jobs": jobs, "worker_id": worker_id, "now": now, "channel": queries.channel},
                    )
                    retried = frozenset(row[0] for row in await cur.fetchall())
                # A failed attempt of a job whose abort was asked for (the worker had not
                # learned of it yet) is not retried: it ends as aborted, fenced as the rest.
                missed = [(i, c) for i, c, _, _ in outcomes.retried if i not in retried]
                if missed:
                    await cur.execute(
                        queries["record_aborted"],
                        {"jobs": by_id((i, str(c)) for i, c in missed), "worker_id": worker_id, "now": now},
                    )
                    aborted = frozenset(row[0] for row in await cur.fetchall())
                if outcomes.buried:
                    jobs = by_id((i, f"[{c},{e}]") for i, c, e in outcomes.buried)
                    await cur.execute(
                        queries["bury_jobs"], {"jobs": jobs, "worker_id": worker_id, "now": now}
                    )
                    buried = frozenset(row[0] for row in await cur.fetchall())
                if outcomes.aborted:
                    jobs = by_id((i, str(c)) for i, c in outcomes.aborted)
                    await cur.execute(
                        queries["record_aborted"], {"jobs": jobs, "worker_id": worker_id, "now": now}
                    )
                    aborted |= frozenset(row[0] for row in await cur.fetchall())
            follow_up = children(completed) if children is not None and completed else None
            if follow_up is not None:
                if follow_ups_timeout is not None:
                    await conn.execute(
                        queries["allow_follow_ups_time"],
                        {"milliseconds": str(round(follow_ups_timeout * 1000))},
                    )
                await run_async(conn, queries, follow_up)
        return Recorded(completed, retried, buried, aborted)

    def _follow_ups_timeout(self) -> float | None:
        """The statement timeout of an ack's follow-up jobs, or None to keep the connection's."""
        if self.timeouts is None or not self.timeouts.statement:
            return None
        normal = self.timeouts.statement
        return max(normal, min(normal * FOLLOW_UPS_TIMEOUT_FACTOR, FOLLOW_UPS_TIMEOUT_CAP))

    async def release_jobs(
        self, held: Sequence[Held], *, worker_id: UUID, now: datetime | None
    ) -> tuple[set[int], set[int]]:
        """Hand jobs back; returns (ids back in the queue, ids moved to the dead-letter table:
        hand-backs past the free ones count as attempts)."""
        if not held:
            return set(), set()
        rows = await self.fetch(
            "release_jobs",
            {
                "jobs": by_id((h.id, str(h.claim)) for h in held),
                "worker_id": worker_id,
                "now": now,
                "channel": self.queries.channel,
            },
        )
        return {r[1] for r in rows if r[0] == "released"}, {r[1] for r in rows if r[0] == "dead"}

    async def extend_leases(
        self,
        held: Sequence[Held],
        *,
        worker_id: UUID,
        lease: timedelta,
        now: datetime | None,
        unless_locked: bool = False,
    ) -> Extended:
        """``unless_locked``: skip the rows another transaction has locked (for jobs whose
        outcome this worker is writing); a job not returned is then not necessarily lost."""
        if not held:
            return Extended(set(), set())
        rows = await self.fetch(
            "extend_leases_unless_locked" if unless_locked else "extend_leases",
            {
                "jobs": by_id((h.id, str(h.claim)) for h in held),
                "worker_id": worker_id,
                "lease": lease,
                "now": now,
            },
        )
        return Extended({row[0] for row in rows}, {row[0] for row in rows if row[1]})

    async def set_progress(
        self, progress: Mapping[Held, tuple[int | None, str | None]], *, worker_id: UUID
    ) -> None:
        if not progress:
            return
        await self.fetch(
            "set_progress",
            {
                "jobs": by_id(
                    (h.id, json.dumps([h.claim, percent, message]))
                    for h, (percent, message) in progress.items()
                ),
                "worker_id": worker_id,
            },
        )

    # -- housekeeping ------------------------------------------------------------------

    async def promote_due_jobs(self, *, now: datetime | None, limit: int = 5000) -> int:
        rows = await self.fetch(
            "promote_due_jobs", {"now": now, "limit": limit, "channel": self.queries.channel}
        )
        return sum(int(row[1]) for row in rows)

    async def seconds_to_next_scheduled(self, *, now: datetime | None) -> float | None:
        rows = await self.fetch("seconds_to_next_scheduled", {"now": now})
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def rescue_expired_jobs(
        self, *, now: datetime | None, limit: int = 1000
    ) -> tuple[list[ClaimedJob], list[ClaimedJob]]:
        """Returns (jobs put back in the queue, jobs moved to the dead-letter table)."""
        rows = await self.fetch(
            "rescue_expired_jobs", {"now": now, "limit": limit, "channel": self.queries.channel}
        )
        retried = [ClaimedJob._make(r[1:-1]) for r in rows if r[0] == "retried"]
        return retried, [ClaimedJob._make(r[1:-1]) for r in rows if r[0] == "dead"]

    async def cancel_aborted_expired(self, *, now: datetime | None, limit: int = 1000) -> list[int]:
        """Aborted jobs whose worker stopped heartbeating end as cancelled; their ids."""
        rows = await self.fetch("cancel_aborted_expired", {"now": now, "limit": limit})
        return [row[0] for row in rows]

    async def register_worker(
        self,
        *,
        worker_id: UUID,
        hostname: str,
        pid: int,
        queues: Sequence[str],
        concurrency: int,
        now: datetime | None,
    ) -> WorkerRow:
        """Record a worker starting; the row as written (what heartbeats write back if it goes)."""
        rows = await self.fetch(
            "register_worker",
            {
                "id": worker_id,
                "hostname": hostname,
                "pid": pid,
                "queues": list(queues),
                "concurrency": concurrency,
                "now": now,
            },
        )
        return WorkerRow(worker_id, hostname, pid, tuple(queues), concurrency, rows[0][0])

    async def heartbeat_worker(self, worker: WorkerRow, *, now: datetime | None) -> bool:
        """Record that a worker is alive: one UPDATE of its row, and only if that found no row
        (pruned after a long silence) the row written again. True when it was written again."""
        if await self.fetch("heartbeat_worker", {"id": worker.id, "now": now}):
            return False
        await self.fetch(
            "restore_worker",
            {
                "id": worker.id,
                "hostname": worker.hostname,
                "pid": worker.pid,
                "queues": list(worker.queues),
                "concurrency": worker.concurrency,
                "started_at": worker.started_at,
                "now": now,
            },
        )
        return True

    async def unregister_worker(self, worker_id: UUID) -> None:
        await self.fetch("unregister_worker", {"id": worker_id})

    async def prune_workers(self, *, silent_for: timedelta, now: datetime | None) -> None:
        await self.fetch("prune_workers", {"silent_for": silent_for, "now": now})

    async def sync_tasks(self, tasks: Sequence[tuple[str, str, int, int, float | None]]) -> None:
        """Record (name, queue, priority, max_attempts, timeout) for each task."""
        if not tasks:
            return
        names, queues, priorities, attempts, timeouts = zip(*tasks, strict=True)
        await self.fetch(
            "sync_tasks",
            {
                "names": list(names),
                "queues": list(queues),
                "priorities": list(priorities),
                "max_attempts": list(attempts),
                "timeouts": list(timeouts),
            },
        )

    async def create_queues(self, names: Sequence[str]) -> None:
        await self.fetch("create_queues", {"names": list(names)})

    async def ensure_history_partitions(self, *, days_ahead: int = 7, now: datetime | None = None) -> int:
        rows = await self.fetch("ensure_history_partitions", {"days_ahead": days_ahead, "now": now})
        return int(rows[0][0])
