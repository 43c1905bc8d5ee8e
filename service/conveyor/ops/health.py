"""Is Conveyor working: one short read of the database, judged ``ok``, ``degraded`` or ``down``.

Contract
--------
- **down**: nothing can work. The database did not answer within the deadline (unreachable,
  refusing connections, or stuck), or Conveyor is not installed in the schema. ``/health``
  answers 503, so an orchestrator takes the service out of rotation.
- **degraded**: Conveyor works, but something needs a person: the schema is not at this
  Conveyor's revision (behind: run ``conveyor migrate``; ahead: a newer Conveyor migrated
  it); a queue has due jobs and no live worker serves it; no scheduler has ticked within its
  lease while schedules are active; a schedule cannot fire, or is overdue beyond
  ``max_schedule_lag`` with a scheduler running; the oldest due job of a queue has waited
  beyond ``max_wait``. Paused queues, paused tasks and everything paused are not problems.
  ``/health`` answers 200: restarting the service would fix none of these.
- **ok**: none of the above.

Each reason is one sentence that says what is wrong and, where there is one, what to do.
A report never holds the database URL, host, user or password: a failure to connect is
reported by its kind only (the driver's own message names host, port and user).

How it reads: on a connection of its own, made for the check and closed after it, not one
of the client's pool, so a pool busy with API calls never reads as a database that is down;
the whole check (connecting included) has a deadline (``HealthLimits.deadline``, 2 s by
default), after which the connection is cut (see ``ops.deadlines``). Every statement is
small (the version row, the due jobs through their index, workers, the scheduler's lease,
schedules); a check that meets a schema at another revision reads what it can and says what
it could not read. :class:`HealthProbe` (what ``/health`` calls) lets one check run at a time
per client and reuses its report for a second, so a burst of probes costs one connection,
and logs one line whenever the status changes.

Live workers, by the engine's rule: a heartbeat within ``worker_silence`` (30 s: a worker
beats every third of its lease, 30 s by default), or a running job whose lease has not run
out (the engine rescues a job only then).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..db import migrations
from ..db.connections import DroppingConnection, connect_kwargs
from ..queue.client import Conveyor, SchedulerStatus
from .deadlines import Deadline, DeadlinePassed

log = logging.getLogger("conveyor.health")

OK = "ok"
DEGRADED = "degraded"
DOWN = "down"

# The schema's version table is missing (or the schema itself): Conveyor is not installed.
_NOT_INSTALLED = (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)


@dataclass(frozen=True)
class HealthLimits:
    deadline: float = 2.0  # seconds for the whole check, connecting included
    worker_silence: timedelta = timedelta(seconds=30)
    max_wait: timedelta = timedelta(minutes=5)
    max_schedule_lag: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class QueueHealth:
    queue: str
    paused: bool  # the queue, or everything
    waiting: int  # due jobs that no paused task holds
    oldest_waiting: timedelta | None
    workers: int  # live workers serving it


@dataclass(frozen=True)
class HealthReport:
    status: str
    reasons: tuple[str, ...]
    checked_at: datetime
    elapsed: float  # seconds the check took
    reachable: bool = True  # the database answered (Conveyor may still be missing from it)
    revision: str | None = None
    expected_revision: str | None = None
    workers: int | None = None
    worker_slots: int | None = None
    scheduler: SchedulerStatus | None = None
    queues: tuple[QueueHealth, ...] = ()

    @property
    def http_status(self) -> int:
        return 503 if self.status == DOWN else 200

    def to_json(self) -> dict[str, Any]:
        scheduler = self.scheduler
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "checked_at": self.checked_at.isoformat(),
            "database": {"reachable": self.reachable, "elapsed_ms": round(self.elapsed * 1000, 1)},
            "schema": {
                "revision": self.revision,
                "expected_revision": self.expected_revision,
                "current": self.revision is not None and self.revision == self.expected_revision,
            },
            "workers": None if self.workers is None else {"alive": self.workers, "slots": self.worker_slots},
            "scheduler": None
            if scheduler is None
            else {
                "leader": scheduler.running,
                "last_tick_age_seconds": _seconds(scheduler.last_tick_age),
                "active_schedules": scheduler.active_schedules,
            },
            "queues": [
                {
                    "queue": q.queue,
                    "paused": q.paused,
                    "waiting": q.waiting,
                    "oldest_waiting_seconds": _seconds(q.oldest_waiting),
                    "workers": q.workers,
                }
                for q in self.queues
            ],
        }


@dataclass
class _Reading:
    revision: str | None = None
    queues: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] | None = None
    scheduler: SchedulerStatus | None = None
    schedules: list[dict[str, Any]] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # what could not be read, and why


class _NotInstalled(Exception):
    pass


async def check_health(client: Conveyor, limits: HealthLimits | None = None) -> HealthReport:
    """Read and judge (see the module's contract). Never raises for the database's sake: a
    database that fails is the answer ``down``."""
    limits = limits or HealthLimits()
    expected, known = await _revisions()
    checked_at = datetime.now(UTC)
    started = time.monotonic()

    def down(reason: str, *, reachable: bool = False) -> HealthReport:
        elapsed = time.monotonic() - started
        return HealthReport(
            DOWN, (reason,), checked_at, elapsed, reachable=reachable, expected_revision=expected
        )

    try:
        reading = await _read(client, limits)
    except DeadlinePassed as exc:
        return down(str(exc))
    except psycopg.errors.QueryCanceled:  # its statement_timeout: the deadline too
        return down(str(DeadlinePassed(limits.deadline)))
    except _NotInstalled:
        schema = client.db.schema
        return down(
            f"Conveyor is not installed in the schema {schema!r}: run `conveyor migrate`", reachable=True
        )
    except psycopg.Error as exc:
        return down(f"the database is unreachable or refused the check ({_kind(exc)})")
    elapsed = time.monotonic() - started
    return _judge(reading, limits, checked_at, elapsed, expected, known)


async def _revisions() -> tuple[str | None, tuple[str, ...]]:
    global _known_revisions
    if _known_revisions is None:
        _known_revisions = await asyncio.to_thread(migrations.revisions)
    return (_known_revisions[-1] if _known_revisions else None), _known_revisions


_known_revisions: tuple[str, ...] | None = None


async def _read(client: Conveyor, limits: HealthLimits) -> _Reading:
    db = client.db
    queries = db.queries
    now = client.clock.now()
    reading = _Reading()
    kwargs = connect_kwargs(None, conninfo=db.conninfo)
    kwargs["connect_timeout"] = max(2, math.ceil(limits.deadline))  # libpq: whole seconds, at least 2
    async with Deadline(limits.deadline) as deadline:
        conn = await DroppingConnection.connect(db.conninfo, **kwargs)
        deadline.watch(conn)
        try:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                timeout = str(max(1, round(limits.deadline * 1000)))
                await cur.execute(queries["read_limits"], {"statement_timeout": timeout})
                try:
                    async with conn.transaction():
                        await cur.execute(queries["schema_revision"])
                        row = await cur.fetchone()
                except _NOT_INSTALLED:
                    raise _NotInstalled from None
                if row is None:
                    raise _NotInstalled
                reading.revision = row["version_num"]

                async def part(what: str, name: str, params: dict[str, Any]) -> list[dict[str, Any]] | None:
                    """One read in a savepoint: a schema at another revision may lack what it reads."""
                    try:
                        async with conn.transaction():
                            await cur.execute(queries[name], params)
                            return await cur.fetchall()
                    except (psycopg.ProgrammingError, psycopg.DataError) as exc:
                        reading.unread.append(f"could not read {what} ({_kind(exc)})")
                        return None

                reading.queues = await part("the queues", "health_queues", {"now": now}) or []
                reading.workers = await part(
                    "the workers", "live_workers", {"now": now, "silence": limits.worker_silence}
                )
                status = await part("the scheduler", "scheduler_status", {"now": now})
                if status:
                    reading.scheduler = SchedulerStatus(**status[0])
                reading.schedules = await part("the schedules", "schedule_lags", {"now": now}) or []
        finally:
            await conn.close()
    return reading


def _judge(
    reading: _Reading,
    limits: HealthLimits,
    checked_at: datetime,
    elapsed: float,
    expected: str | None,
    known: tuple[str, ...],
) -> HealthReport:
    reasons: list[str] = []
    revision = reading.revision
    if revision != expected:
        if revision in known:
            reasons.append(
                f"the schema is at revision {revision}, behind this Conveyor's {expected}: run `conveyor migrate`"
            )
        else:
            reasons.append(
                f"the schema is at revision {revision}, which this Conveyor does not know "
                f"(a newer Conveyor migrated it; this one expects {expected}): upgrade this service"
            )
    reasons.extend(reading.unread)

    workers = reading.workers
    serving: dict[str, int] = {}
    for worker in workers or ():
        for queue in worker["queues"]:
            serving[queue] = serving.get(queue, 0) + 1
    queues = tuple(
        QueueHealth(
            queue=row["queue"],
            paused=bool(row["paused"]),
            waiting=int(row["waiting"]),
            oldest_waiting=row["oldest_waiting_age"],
            workers=serving.get(row["queue"], 0),
        )
        for row in reading.queues
    )
    for q in queues:
        if q.paused or not q.waiting:
            continue
        if workers is not None and not q.workers:
            reasons.append(f"queue {q.queue!r}: {q.waiting} due job(s) wait and no live worker serves it")
        elif q.oldest_waiting is not None and q.oldest_waiting > limits.max_wait:
            reasons.append(
                f"queue {q.queue!r}: its oldest due job has waited {_span(q.oldest_waiting)} "
                f"(more than {_span(limits.max_wait)}): add workers or look at what holds them"
            )

    scheduler = reading.scheduler
    warning = scheduler.warning() if scheduler is not None else None
    if warning:
        reasons.append(warning)
    for schedule in reading.schedules:
        if schedule["error"]:
            reasons.append(f"schedule {schedule['name']!r} cannot fire: {schedule['error']}")
        elif (
            scheduler is not None
            and scheduler.running
            and schedule["lag"] is not None
            and schedule["lag"] > limits.max_schedule_lag
        ):
            reasons.append(f"schedule {schedule['name']!r} is {_span(schedule['lag'])} overdue")

    return HealthReport(
        status=DEGRADED if reasons else OK,
        reasons=tuple(reasons),
        checked_at=checked_at,
        elapsed=elapsed,
        revision=revision,
        expected_revision=expected,
        workers=None if workers is None else len(workers),
        worker_slots=None if workers is None else sum(int(w["concurrency"]) for w in workers),
        scheduler=scheduler,
        queues=queues,
    )


def _kind(exc: psycopg.Error) -> str:
    """What went wrong without the driver's message, which may name host, port and user."""
    return type(exc).__name__ + (f", SQLSTATE {exc.sqlstate}" if exc.sqlstate else "")


def _seconds(span: timedelta | None) -> float | None:
    return None if span is None else round(max(span.total_seconds(), 0.0), 3)


def _span(span: timedelta) -> str:
    seconds = max(span.total_seconds(), 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class HealthProbe:
    """What ``/health`` asks: one check at a time, its report reused for ``reuse`` seconds
    (a burst of probes costs one connection), and one log line whenever the status changes
    (WARNING for down and degraded, with the reasons; INFO back to ok). Reasons that change
    while the status stays (an age that grows) are not logged again."""

    def __init__(self, limits: HealthLimits | None = None, *, reuse: float = 1.0) -> None:
        self.limits = limits or HealthLimits()
        self.reuse = reuse
        self.checks: dict[str, int] = {OK: 0, DEGRADED: 0, DOWN: 0}  # checks by status, since start
        self._lock = asyncio.Lock()
        self._last: HealthReport | None = None
        self._last_at = -math.inf

    async def report(self, client: Conveyor) -> HealthReport:
        async with self._lock:
            if self._last is not None and time.monotonic() - self._last_at < self.reuse:
                return self._last
            report = await check_health(client, self.limits)
            self.checks[report.status] += 1
            if self._last is None or report.status != self._last.status:
                _log_change(report, previous=None if self._last is None else self._last.status)
            self._last, self._last_at = report, time.monotonic()
            return report


def _log_change(report: HealthReport, previous: str | None) -> None:
    if report.status == OK and previous in (None, OK):
        return
    level = logging.INFO if report.status == OK else logging.WARNING
    log.log(
        level,
        "health: %s%s",
        report.status,
        (": " + "; ".join(report.reasons)) if report.reasons else "",
        extra={
            "event": "health",
            "status": report.status,
            "previous": previous,
            "reasons": list(report.reasons),
        },
    )


_probes: weakref.WeakKeyDictionary[Conveyor, HealthProbe] = weakref.WeakKeyDictionary()


def probe_for(client: Conveyor) -> HealthProbe:
    """The probe of this client (made on first use, with the default limits)."""
    probe = _probes.get(client)
    if probe is None:
        probe = _probes[client] = HealthProbe()
    return probe
